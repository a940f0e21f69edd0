"""One OpenMP thread pool at a time: the decode loop's.

torch (with MKL and oneDNN) runs its parallel regions on the OpenMP pool of the calling thread. Every
thread that ever ran a parallel op keeps its own pool, and once the pools hold more threads than the
machine has cores, libgomp stops spinning between regions and puts its workers to sleep after ~100
spins: every one of the ~400 parallel regions of a decoding step then pays a futex wake-up. Measured
here (2 cores, realigned decoding, one stream): 25 tok/s with one pool, 14.5 tok/s once the scheduler
thread had its pool next to the main thread's. A thread that hands its work to the scheduler therefore
releases its own pool first (`omp_pause_resource_all`, OpenMP 5.0); it is recreated if it runs torch
ops again.
"""
from __future__ import annotations

import ctypes
import os
from functools import lru_cache


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
