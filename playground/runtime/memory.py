"""Give freed memory back to the operating system after a long job.

A sweep's KV cache and activations are freed by Python when the job ends, but glibc keeps the pages in its
arenas, so the process's RSS stays at its peak (4–5 GB after a few large sweeps). `release_memory` runs the
garbage collector and `malloc_trim(0)`, which returns the free arena pages; a no-op where glibc is absent.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import functools


@functools.lru_cache(maxsize=1)
def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_memory() -> bool:
    """gc.collect() then malloc_trim(0); True when memory was returned to the OS."""
    gc.collect()
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    return bool(trim(0)) if trim is not None else False
