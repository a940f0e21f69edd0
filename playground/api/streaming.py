"""Streaming completions (`stream: true`): server-sent events that stop when the client leaves (`SSEResponse`),
the wait for the first decoding step before the 200 goes out (`started`), and the event stream itself (`events`:
a role chunk, text deltas with their log-probabilities, finish chunks, usage, [DONE]).
"""
from __future__ import annotations

import asyncio
import json
import logging

import anyio
from fastapi import Request
from starlette.responses import StreamingResponse

from playground.api.decoding import Choice, Run
from playground.api.errors import ApiError, from_scheduler, internal
from playground.api.responses import Meta
from playground.api.threads import disconnected, in_thread
from playground.settings.validation import InputError

log = logging.getLogger("playground.api")


class SSEResponse(StreamingResponse):
    """Server-sent events that stop as soon as the client disconnects, whatever the ASGI spec version (Starlette
    listens for the disconnect only below 2.4): the body's `finally` then cancels the decoding."""

    def __init__(self, content, on_close) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            async with anyio.create_task_group() as tg:
                async def body() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:  # the client went away mid-send
                        pass
                    tg.cancel_scope.cancel()

                async def disconnect() -> None:
                    await self.listen_for_disconnect(receive)
                    tg.cancel_scope.cancel()

                tg.start_soon(body)
                tg.start_soon(disconnect)
        finally:
            self.on_close()


def sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


async def started(request: Request, run: Run) -> asyncio.Future:
    """Start decoding and wait for its first step before the stream's 200 goes out, so that a refusal by the
    scheduler (busy) is still a 429 with Retry-After, not an error event; a client that leaves meanwhile cancels."""
    worker = in_thread(run.work)
    watcher = asyncio.ensure_future(disconnected(request))
    begun = asyncio.ensure_future(run.begun.wait())
    try:
        await asyncio.wait([watcher, begun], return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        begun.cancel()
    if not run.begun.is_set():  # the client left first
        run.cancel()
        await asyncio.shield(worker)
        raise ApiError(499, "the client closed the connection", code="client_closed")
    if run.ended and run.error is not None:
        await asyncio.shield(worker)
        err = run.error
        raise (from_scheduler(err) if isinstance(err, InputError) else None) or err
    return worker


async def events(pg, run: Run, meta: Meta, worker: asyncio.Future):
    """The SSE body of `stream: true` (choices decoded by `pg`): a role chunk, text deltas (with their
    log-probabilities), finish chunks, usage, [DONE]."""
    job = meta.job
    choices = [Choice(pg, job.stop) for _ in range(job.n)]
    streams: list = []
    try:
        if job.kind == "chat":
            yield sse(meta.chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                   "finish_reason": None} for i in range(job.n)]))
        done = False  # the chunk that ends the last choice carries the `playground` readouts
        try:
            async for streams in run.updates():
                parts = []
                for i, (c, s) in enumerate(zip(choices, streams)):
                    was = c.finished
                    c.feed(s)
                    text, toks = c.delta()
                    ended = c.finished and not was
                    if text or toks or ended:
                        parts.append(meta.delta(i, text, toks, s, c.finish if ended else None))
                if parts and not done:
                    done = all(c.finished for c in choices)
                    yield sse(meta.chunk(parts, playground=meta.readouts(choices, streams, run) if done else None))
                if done:
                    run.cancel()
        except Exception as err:  # noqa: BLE001 - the status line is sent: the error travels as an event
            e = from_scheduler(err) if isinstance(err, InputError) else None
            if e is None:
                log.exception("/v1 stream failed")
                e = internal(err)
            yield sse(e.body())
            yield sse("[DONE]")
            return
        if not done:  # decoding ended first (the deadline): the open choices end with what they have
            parts = []
            for i, (c, s) in enumerate(zip(choices, streams or [None] * job.n)):
                if not c.finished:
                    c.close()
                    text, toks = c.delta()
                    parts.append(meta.delta(i, text, toks, s, c.finish))
            yield sse(meta.chunk(parts, playground=meta.readouts(choices, streams, run)))
        if job.include_usage:
            yield sse(meta.chunk([], usage=meta.usage(choices)))
        yield sse("[DONE]")
    finally:
        run.cancel()
        await asyncio.shield(worker)
