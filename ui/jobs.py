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

from playground.runtime.memory import release_memory
from playground.settings.server import SERVE
from playground.runtime.threads import releases_pool
from playground.settings.validation import InputError


class JobControl:
    """The stop condition handed to the work: an explicit stop, or a handler nobody pulls any more."""

    def __init__(self, limit_s: float | None = None) -> None:
        self.stopped = threading.Event()
        self.pulled = time.monotonic()
        self.deadline = None if limit_s is None else self.pulled + limit_s

    @property
    def late(self) -> bool:
        """Past the job's time limit (the stop was the deadline, not a cancel)."""
        return self.deadline is not None and time.monotonic() > self.deadline

    def __call__(self) -> bool:
        return self.stopped.is_set() or time.monotonic() - self.pulled > SERVE.job_stale_s or self.late


def _finished(future) -> None:
    """A job's worker ended: give its memory back; an error nobody awaits any more (the handler was cancelled, e.g.
    by the no-listener watchdog, playground/runtime/job_owners.py) is read here so asyncio does not log it as lost."""
    if not future.cancelled():
        future.exception()
    release_memory()


async def run_job(work: Callable[[Callable[[], bool]], Any], n_outputs: int,
                  control: JobControl | None = None) -> AsyncIterator[Any]:
    """Yield no-op updates while `work(should_stop)` runs in a thread, then its result (a list of n outputs)."""
    control = control or JobControl()
    # The worker runs in the handler's context: gr.Progress finds its event through context variables, which
    # run_in_executor alone does not carry into the thread (the progress bar would stay empty).
    call = functools.partial(contextvars.copy_context().run, releases_pool(work), control)  # no pool stays behind
    future = asyncio.get_running_loop().run_in_executor(None, call)
    future.add_done_callback(_finished)  # the job's KV cache goes back to the OS, also after a cancel
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


def session_key(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "anonymous"


class SessionJobs:
    """One long job per browser session (`ServeSettings.jobs_per_session`): the running job's control, found
    again by the tab's Cancel button. `what` names the job in the refusal ("a sweep", "a probe")."""

    def __init__(self, what: str, limit_s: float) -> None:
        self.what, self.limit_s = what, limit_s
        self.running: dict[str, JobControl] = {}

    async def run(self, request: gr.Request | None, work: Callable[[JobControl], Any], n_outputs: int) -> AsyncIterator[Any]:
        """`work(control)` in a worker thread (see run_job); `control()` is its stop condition, `control.late`
        says the deadline ended it."""
        key, control = session_key(request), JobControl(self.limit_s)
        if key in self.running:
            raise gr.Error(f"you already have {self.what} running; wait for it or press Cancel")
        self.running[key] = control
        try:
            async for update in run_job(work, n_outputs, control):
                yield update
        finally:
            if self.running.get(key) is control:
                del self.running[key]

    def cancel(self, request: gr.Request | None) -> None:
        if (control := self.running.get(session_key(request))) is not None:
            control.stopped.set()  # the worker sees it at its next token or step and frees the model


CANCELLED = "**Cancelled.** Nothing was computed; the results shown are from before."
_QUIET = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}


def long_job(trigger, run_buttons: list, cancel_btn, status, fn, inputs, outputs, **event):
    """The one long-job pattern of every tab: the estimate is shown before (the tab's own Markdown), the job's
    `gr.Progress` during; while it runs its Run buttons are disabled and `cancel_btn` (built `visible=False`) is
    shown; afterwards both are back. Pressing Cancel hides it at once and writes CANCELLED into `status`; the tab
    still wires the button's own cancel (``cancels=[job]`` and its session's stop flag, an API route). Returns
    the job's event."""
    def running():
        return [gr.Button(interactive=False) for _ in run_buttons] + [gr.Button(visible=True)]

    def idle():
        return [gr.Button(interactive=True) for _ in run_buttons] + [gr.Button(visible=False)]

    job = trigger(running, None, [*run_buttons, cancel_btn], **_QUIET).then(fn, inputs, outputs, **event)
    job.then(idle, None, [*run_buttons, cancel_btn], **_QUIET)
    return job


def show_cancelled(cancel_btn, run_buttons: list, status) -> None:
    """Cancel's visible side (see long_job): Run back, Cancel hidden, "cancelled" in `status`."""
    cancel_btn.click(lambda: [gr.Button(interactive=True) for _ in run_buttons] + [gr.Button(visible=False), CANCELLED],
                     None, [*run_buttons, cancel_btn, status], **_QUIET)
