"""One OpenMP thread pool at a time: the decode loop's.

torch (with MKL and oneDNN) runs its parallel regions on the OpenMP pool of the calling thread. Every
thread that ever ran a parallel op keeps its own pool, and once the pools hold more threads than the
machine has cores, libgomp stops spinning between regions and puts its workers to sleep after ~100
spins: every one of the ~400 parallel regions of a decoding step then pays a futex wake-up. Measured
here (2 cores, realigned decoding, one stream): 25 tok/s with one pool, 14.5 tok/s once the scheduler
thread had its pool next to the main thread's. A thread that hands its work to the scheduler therefore
releases its own pool first (`omp_pause_resource_all`, OpenMP 5.0); it is recreated if it runs torch
ops again.

Torch work outside the loop (judges, embeddings, diffusion, teacher forcing, loading the model) runs in
Gradio's handler threads, which then sit idle with their pool: the decode loop in the app ran 1.7x slower
than in a bare process, and a 16-token chat turn took 21 s instead of 1 s while an adapter trained beside
it. `releases_pool` frees the calling thread's pool when such work returns.
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

LOOP_THREAD = "playground-scheduler"  # the decode loop keeps its pool
F = TypeVar("F", bound=Callable)


@lru_cache(maxsize=1)
def _pause():
    """omp_pause_resource_all from the OpenMP runtime torch loaded, or None."""
    import torch

    for path in (os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1"), None):
        try:
            fn = ctypes.CDLL(path).omp_pause_resource_all
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        return fn
    return None


def release_openmp_pool() -> bool:
    """Free the calling thread's OpenMP worker threads (omp_pause_soft); True when the runtime did."""
    fn = _pause()
    return fn is not None and fn(1) == 0


def release_unless_loop() -> None:
    """Free the calling thread's pool, unless it is the decode loop's."""
    if threading.current_thread().name != LOOP_THREAD:
        release_openmp_pool()


def releases_pool(fn: F) -> F:
    """Decorator for torch work that may run outside the decode loop: when it returns (or raises), the calling
    thread's OpenMP pool is freed, so an idle handler thread holds none (see the module docstring)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            release_unless_loop()
    return wrapper  # type: ignore[return-value]
