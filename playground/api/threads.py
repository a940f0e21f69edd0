"""Blocking work off the event loop for the /v1 routes: `in_thread` (a daemon thread per piece of work: tokenizing,
waiting for the model, a decode loop) and `disconnected` (returns when the client closed the connection).
"""
from __future__ import annotations

import asyncio
import threading

from fastapi import Request


def in_thread(fn, *args) -> asyncio.Future:
    """Run blocking work (tokenizing, waiting for the model, a decode loop) in a daemon thread of its own: the gate
    bounds how many there are, and none keeps the interpreter from exiting (nor takes Gradio's worker threads)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result, error) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result)

    def body() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as err:  # noqa: BLE001 - handed to the awaiting request
            result, error = None, err
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the server's loop closed meanwhile (shutdown): nobody waits any more
            pass

    threading.Thread(target=body, daemon=True, name="v1-worker").start()
    return future


async def disconnected(request: Request) -> None:
    """Returns when the client closed the connection (the body was read already, so only a disconnect arrives)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
