"""The bounded queue in front of every /v1 route: at most `max_active` requests decode, `max_waiting` wait, and one
client holds at most `per_client` of either; anything beyond is refused at once with 429 and a Retry-After.

It lives in the server's event loop (no locks needed): `enter` either returns a `Ticket` or raises `ApiError`.
Behind it each request is one submission to the engine's scheduler, which has its own bounds (rows, KV cache,
waiting submissions) shared with the UI; its "busy" refusals also become 429 (errors.from_scheduler).
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import Counter

from playground.api.errors import busy


class Ticket:
    """A held slot; `release` is idempotent (a stream's body and its response both release it)."""

    def __init__(self, gate: "Gate", client: str) -> None:
        self.gate, self.client, self.start, self.released = gate, client, time.monotonic(), False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.gate._leave(self)


class Gate:
    def __init__(self, max_active: int, max_waiting: int, per_client: int, wait_s: float) -> None:
        self.max_active, self.max_waiting, self.per_client, self.wait_s = max_active, max_waiting, per_client, wait_s
        self.active = 0
        self.waiting = 0
        self.clients: Counter[str] = Counter()
        self.mean_s = 5.0  # running mean of a request's time in its slot, for Retry-After
        self._slots: asyncio.Semaphore | None = None
        self.refused = 0

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:  # created in the server's loop, on first use
            self._slots = asyncio.Semaphore(self.max_active)
        return self._slots

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead of a newcomer × the mean request time / slots."""
        return max(1, math.ceil(self.mean_s * (self.waiting + 1) / self.max_active))

    async def enter(self, client: str) -> Ticket:
        if self.clients[client] >= self.per_client:
            self.refused += 1
            raise busy(f"too many requests from this client at once (at most {self.per_client} waiting or decoding); "
                       "wait for one to finish", self.retry_after())
        if self.active + self.waiting >= self.max_active + self.max_waiting:
            self.refused += 1
            raise busy(f"busy: {self.active} requests are decoding and {self.waiting} waiting (the limits are "
                       f"{self.max_active} and {self.max_waiting}); try again in {self.retry_after()} s", self.retry_after())
        self.clients[client] += 1
        self.waiting += 1
        try:
            await asyncio.wait_for(self.slots.acquire(), timeout=self.wait_s)
        except asyncio.TimeoutError:
            self._forget(client)
            raise busy(f"busy: no slot was free within {self.wait_s:.0f} s; try again in {self.retry_after()} s",
                       self.retry_after()) from None
        except BaseException:  # the request was cancelled while waiting
            self._forget(client)
            raise
        finally:
            self.waiting -= 1
        self.active += 1
        return Ticket(self, client)

    def _forget(self, client: str) -> None:
        self.clients[client] -= 1
        if self.clients[client] <= 0:
            del self.clients[client]

    def _leave(self, ticket: Ticket) -> None:
        self.active -= 1
        self._forget(ticket.client)
        self.mean_s = 0.8 * self.mean_s + 0.2 * (time.monotonic() - ticket.start)
        self.slots.release()
