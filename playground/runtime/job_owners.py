"""A long job belongs to a client: it runs only while someone listens, and one client runs a few at a time.

Long jobs are the events named in `LONG_JOBS` (the Trade-off sweep, probes, the DeRa check, the duel). Posted
through `/gradio_api/call/<name>` or `/gradio_api/queue/join`, Gradio runs them whether or not anybody opens
the SSE stream that carries the result, and every POST may name a fresh session hash, so the one-job-per-
session rule (`ServeSettings.jobs_per_session`) binds nobody who does not want it to.

- `Listeners` counts the open result streams of each session (`GET /gradio_api/queue/data?session_hash=…`,
  `GET /gradio_api/call/<name>/<event_id>`); HttpGuard opens and closes them around the stream's response.
- `Watchdog` looks at the queue every `SERVE.job_watch_s`: a long job (queued or running) whose session has
  had no open stream for `SERVE.job_listener_grace_s` (never opened since it was posted, or closed) is
  cancelled as `POST /gradio_api/cancel` would (its task cancelled, its iterator closed: the worker's stop
  flag is set and the model is freed) or dropped from the queue.
- `cap_problem` refuses a new long job (429, before Gradio queues it) from a client that already has
  `SERVE.jobs_per_client` queued or running, counted across sessions. The client is the address Gradio's
  queue sees (`request.client.host`, the ASGI scope's client), not a session hash the caller invents.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from playground.settings.server import SERVE

log = logging.getLogger(__name__)

LONG_JOBS = frozenset({"tradeoff_sweep", "tradeoff_controls", "probe", "dera_check", "duel"})
# The per-client cap counts the heavy ones only: a duel (two answers of at most a chat turn's length) is what
# every visitor does, and visitors behind one proxy or NAT share an address; the scheduler's per-client cap
# (SchedulerSettings.max_per_client) bounds duels like chat turns. Unheard duels are still cancelled.
CAPPED_JOBS = LONG_JOBS - {"duel"}
WHAT = "sweeps, probes, DeRa checks"


def client_host(scope_or_request: Any) -> str:
    """The client's address as Gradio's queue sees it: an ASGI scope's `client`, or a Request's `.client.host`."""
    if isinstance(scope_or_request, dict):
        client = scope_or_request.get("client")
        return str(client[0]) if client else "unknown"
    client = getattr(scope_or_request, "client", None)
    return str(getattr(client, "host", None) or "unknown")


def is_long_job(fn: Any) -> bool:
    return getattr(fn, "api_name", None) in LONG_JOBS


def is_capped_job(fn: Any) -> bool:
    return getattr(fn, "api_name", None) in CAPPED_JOBS


class Listeners:
    """Open result streams per session, and when each session's last one closed (monotonic seconds)."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}
        self.closed_at: dict[str, float] = {}

    def opened(self, session: str) -> None:
        self.open[session] = self.open.get(session, 0) + 1

    def closed(self, session: str) -> None:
        left = self.open.get(session, 0) - 1
        if left > 0:
            self.open[session] = left
        else:
            self.open.pop(session, None)
            self.closed_at[session] = time.monotonic()

    def unheard_for(self, session: str, since: float, now: float | None = None) -> float:
        """Seconds the session has had no open stream, counted from `since` (the job's post) at the earliest."""
        if self.open.get(session, 0) > 0:
            return 0.0
        now = time.monotonic() if now is None else now
        return now - max(since, self.closed_at.get(session, since))

    def forget_older_than(self, age_s: float) -> None:
        cut = time.monotonic() - age_s
        for session in [s for s, t in self.closed_at.items() if t < cut and s not in self.open]:
            del self.closed_at[session]


def long_jobs_of(queue: Any, host: str) -> list[Any]:
    """The long jobs (queued or running) a client has in Gradio's queue, over all its sessions."""
    events = list(getattr(queue, "event_ids_to_events", {}).values())
    return [e for e in events if is_capped_job(e.fn) and getattr(e, "alive", True)
            and client_host(getattr(e, "request", None)) == host]


def cap_problem(queue: Any, host: str, cap: int | None = None) -> str | None:
    """Why a new long job from `host` is refused (it has `jobs_per_client` already), or None."""
    cap = SERVE.jobs_per_client if cap is None else cap
    if cap <= 0:
        return None  # 0: no per-client cap
    held = len(long_jobs_of(queue, host))
    if held < cap:
        return None
    return (f"jobs_per_client: a client runs at most {cap} long job{'s' if cap != 1 else ''} ({WHAT}) at a time, "
            f"over all its sessions; {host} has {held} queued or running. Wait for one to finish or cancel it "
            "(POST /gradio_api/cancel)")


class Watchdog:
    """Cancels long jobs nobody listens to (see the module docstring); one per served app, started lazily."""

    def __init__(self, demo: Any, listeners: Listeners) -> None:
        self.demo, self.listeners = demo, listeners
        self.task: asyncio.Task | None = None
        self.cancelled: list[str] = []  # event ids, newest last (bounded): tests and logs read it

    def ensure_running(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._loop(), name="job-owners-watchdog")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(SERVE.job_watch_s)
            try:
                await self.sweep_once()
            except Exception:  # noqa: BLE001 - the watchdog never dies of one odd event
                log.exception("job watchdog")

    def unheard(self, now: float | None = None) -> list[Any]:
        queue = getattr(self.demo, "_queue", None)
        if queue is None:
            return []
        events = list(queue.event_ids_to_events.values())
        return [e for e in events if is_long_job(e.fn) and getattr(e, "alive", True)
                and self.listeners.unheard_for(e.session_hash, e.enqueue_time, now) > SERVE.job_listener_grace_s]

    async def sweep_once(self) -> int:
        """Cancel every long job unheard for longer than the grace; how many."""
        gone = self.unheard()
        for event in gone:
            await self.cancel(event)
        self.listeners.forget_older_than(3600)
        return len(gone)

    async def cancel(self, event: Any) -> None:
        """What `POST /gradio_api/cancel` does for one event: its task, its place in the queue, its iterator."""
        from gradio.utils import cancel_tasks, safe_aclose_iterator

        queue, app = self.demo._queue, getattr(self.demo, "server_app", None) or getattr(self.demo, "app", None)
        log.warning("cancelling %s (event %s): nobody has listened to its result for %.0f s", event.fn.api_name,
                    event._id, SERVE.job_listener_grace_s)
        self.cancelled = [*self.cancelled[-99:], event._id]
        event.alive = False
        await cancel_tasks({f"{event.session_hash}_{event.fn._id}"})
        await queue.remove_from_queue(event._id)
        iterators = getattr(app, "iterators", None)
        if iterators is not None and event._id in iterators:
            async with app.lock:
                try:
                    await safe_aclose_iterator(iterators[event._id])
                except Exception:  # noqa: BLE001 - already closed
                    pass
                iterators.pop(event._id, None)
                app.iterators_to_reset.add(event._id)
