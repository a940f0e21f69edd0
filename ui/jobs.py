"""Long jobs that stop when their client goes away: a cancel (`job.cancel()`, a Cancel button with `cancels=`,
POST /gradio_api/cancel) or a closed tab.

The blocking work runs in a worker thread with a `should_stop()` it checks every token or step. The event
handler is an async generator that beats every `SERVE.job_heartbeat_s`, yielding "no change" updates:
- a cancel cancels the handler's asyncio task: CancelledError lands in the `await`, `finally` sets the stop flag;
- a disconnect makes Gradio stop pulling the generator: after `SERVE.job_stale_s` without a pull the job stops.
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from typing import Any, AsyncIterator, Callable

import gradio as gr

from playground.memory import release_memory
from playground.settings import SERVE
from playground.validation import InputError


class JobControl:
    """The stop condition handed to the work: an explicit stop, or a handler nobody pulls any more."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.pulled = time.monotonic()

    def __call__(self) -> bool:
        return self.stopped.is_set() or time.monotonic() - self.pulled > SERVE.job_stale_s


async def run_job(work: Callable[[Callable[[], bool]], Any], n_outputs: int,
                  control: JobControl | None = None) -> AsyncIterator[Any]:
    """Yield no-op updates while `work(should_stop)` runs in a thread, then its result (a list of n outputs)."""
    control = control or JobControl()
    # The worker runs in the handler's context: gr.Progress finds its event through context variables, which
    # run_in_executor alone does not carry into the thread (the progress bar would stay empty).
    call = functools.partial(contextvars.copy_context().run, work, control)
    future = asyncio.get_running_loop().run_in_executor(None, call)
    future.add_done_callback(lambda _: release_memory())  # the job's KV cache goes back to the OS, also after a cancel
    skip = [gr.skip()] * n_outputs if n_outputs > 1 else gr.skip()
    try:
        while True:
            done, _ = await asyncio.wait({future}, timeout=SERVE.job_heartbeat_s)
            if done:
                break
            yield skip
            control.pulled = time.monotonic()
        try:
            result = future.result()
        except InputError as err:
            raise gr.Error(str(err)) from None
    finally:
        control.stopped.set()  # a cancel lands here (CancelledError); after a normal end it is harmless
    yield result
