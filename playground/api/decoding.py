"""One /v1 job through the Playground facade: encode the conversation, submit the choices to the scheduler as one
submission (`Playground.request` / `Playground.stream`, as the chat tab does), and turn each choice's token stream
into text deltas, stop sequences and log-probabilities.

The text of a choice comes from `Playground.detokenizer()`, the incremental detokenizer behind `Playground.text`
(the UI's and the CLI's text): an incomplete UTF-8 character is held back until the token that completes it
arrives. While streaming, each delta is the part of that text that can no longer change (a tail that may still
become a stop sequence is held back too), so the deltas add up to exactly the non-streamed text.
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from playground.api.schemas import Job

def prepare(pg, job: Job) -> tuple[tuple[int, ...], list]:
    """(prompt ids, one engine request per choice): the chat tab's encoding (user text plain) and its requests."""
    ids = pg.encode(job.prompt, job.history)
    reqs = [pg.request(ids, job.adapter, job.choice(i)) for i in range(job.n)]
    if job.logprobs is not None:
        reqs = [replace(r, logprobs=job.logprobs) for r in reqs]
    return ids, reqs


class Run:
    """The requests decoding in a worker thread; the event loop reads the latest streams (updates coalesce)."""

    def __init__(self, pg, requests: list, deadline_s: float, loop: asyncio.AbstractEventLoop) -> None:
        self.pg, self.requests, self.loop = pg, requests, loop
        self.deadline = time.monotonic() + deadline_s
        self.cancelled = threading.Event()
        self.latest: list | None = None
        self.ended = False
        self.error: BaseException | None = None
        self.timed_out = False
        self._wake = asyncio.Event()
        self.begun = asyncio.Event()  # the first update arrived, or decoding ended (e.g. refused by the scheduler)

    def should_stop(self) -> bool:
        if time.monotonic() > self.deadline:
            self.timed_out = True
            return True
        return self.cancelled.is_set()

    def cancel(self) -> None:
        """Stop decoding at the next step boundary: the scheduler closes the submission and its rows leave."""
        self.cancelled.set()

    def _set(self) -> None:
        self._wake.set()
        self.begun.set()

    def _notify(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._set)
        except RuntimeError:  # the server's loop closed (shutdown): stop decoding for nobody
            self.cancel()

    def work(self) -> None:
        """The worker thread's body."""
        try:
            for streams in self.pg.stream(self.requests, should_stop=self.should_stop):
                self.latest = [s.copy() for s in streams]
                self._notify()
        except BaseException as err:  # noqa: BLE001 - handed to the event loop, which answers with it
            self.error = err
        finally:
            self.ended = True
            self._notify()

    async def updates(self):
        """Yield the latest streams whenever they changed, until decoding ended (then raise its error, if any)."""
        seen = None
        while True:
            await self._wake.wait()
            self._wake.clear()
            latest, ended = self.latest, self.ended
            if latest is not None and latest is not seen:
                seen = latest
                yield latest
            if ended:
                if self.error is not None:
                    raise self.error
                return


class TokenText:
    """Each token's own text and exact bytes (byte-level BPE tokens may hold part of a UTF-8 character)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._byte_of = None
        try:
            from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

            self._byte_of = {c: b for b, c in bytes_to_unicode().items()}
        except Exception:  # noqa: BLE001 - without it, bytes come from the decoded text
            pass
        self.text = lru_cache(maxsize=8192)(self._text)
        self.bytes = lru_cache(maxsize=8192)(self._bytes)

    def _text(self, token: int) -> str:
        return self.tokenizer.decode([token], skip_special_tokens=False)

    def _bytes(self, token: int) -> tuple[int, ...]:
        piece = self.tokenizer.convert_ids_to_tokens(token)
        if self._byte_of is not None and isinstance(piece, str) and piece and all(c in self._byte_of for c in piece):
            return tuple(self._byte_of[c] for c in piece)
        return tuple(self._text(token).encode("utf-8"))


@dataclass
class Choice:
    """One choice's text as its tokens arrive: stable text, stop sequences, what has been streamed."""

    pg: Any
    stop: tuple[str, ...]
    kept: list[int] = field(default_factory=list)  # answer tokens so far (no stop token)
    ends: list[int] = field(default_factory=list)  # per kept token: length of the stable text once it arrived
    stable: str = ""  # the text so far, without a trailing incomplete character
    consumed: int = 0  # engine tokens taken into account (the stop token included)
    finish: str | None = None  # "stop" | "length" once the choice ended
    stopped_at: int | None = None  # where a stop sequence starts in the text
    final: str | None = None
    sent: int = 0  # characters streamed
    sent_tokens: int = 0  # log-probability entries streamed
    detok: Any = None  # the choice's Playground.detokenizer()

    @property
    def finished(self) -> bool:
        return self.finish is not None

    def feed(self, stream) -> None:
        """Take the stream's new tokens, one at a time (the first stop sequence wins; later tokens are ignored)."""
        while not self.finished and self.consumed < len(stream.tokens):
            token = stream.tokens[self.consumed]
            self.consumed += 1
            if self.pg.is_stop(token):
                self._end("stop")
                return
            self.kept.append(token)
            before = len(self.stable)
            if self.detok is None:
                self.detok = self.pg.detokenizer()
            self.detok.add(token)
            self.stable = self.detok.text
            self.ends.append(len(self.stable))
            if self.stop and self._match(before):
                return
        if not self.finished and stream.done and self.consumed >= len(stream.tokens):
            self._end("length")

    def _match(self, before: int) -> bool:
        start = max(0, before - max(map(len, self.stop)) + 1)
        hits = [i for i in (self.stable.find(s, start) for s in self.stop) if i >= 0]
        if not hits:
            return False
        self.stopped_at = min(hits)
        self._end("stop")
        return True

    def _end(self, reason: str) -> None:
        self.finish = reason
        self.final = self.stable[: self.stopped_at] if self.stopped_at is not None else self.stable

    def close(self) -> None:
        """Decoding ended before the choice did (deadline, cancel): what it has is its answer."""
        if not self.finished:
            self._end("length")

    @property
    def text(self) -> str:
        return self.final if self.final is not None else self.stable

    def _held(self) -> int:
        """Characters at the end of the stable text that may still turn into a stop sequence."""
        for k in range(min(len(self.stable), max(map(len, self.stop), default=0) - 1), 0, -1):
            tail = self.stable[-k:]
            if any(s.startswith(tail) for s in self.stop):
                return k
        return 0

    def delta(self) -> tuple[str, list[int]]:
        """(new text that can be streamed, indices of the kept tokens whose text it completes)."""
        if self.finished:
            upto = len(self.final)
            n = self.token_count
        else:
            upto = len(self.stable) - self._held()
            n = sum(1 for e in self.ends if e <= upto)
        text = self.text[self.sent:upto] if upto > self.sent else ""
        self.sent = max(self.sent, upto)
        tokens = list(range(self.sent_tokens, n))
        self.sent_tokens = max(self.sent_tokens, n)
        return text, tokens

    @property
    def token_count(self) -> int:
        """Kept tokens that belong to the answer: with a stop sequence, those that start before it."""
        if self.stopped_at is None:
            return len(self.kept)
        starts = [0, *self.ends[:-1]]
        return sum(1 for s in starts if s < self.stopped_at) if self.stopped_at > 0 else 0
