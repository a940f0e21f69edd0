"""Joining or starting the Ray cluster a job runs on (`connect`), and the throwaway local one (`start_local`,
`--ray local`). Ray is imported on use only (`import_ray`): it is an optional extra.
"""
from __future__ import annotations

import os


def import_ray():
    import ray

    return ray


def connect(address: str) -> bool:
    """Join or start a cluster; True when this call started it (then the caller shuts it down).

    Already connected (a test's cluster, a notebook's): that one is used and left running."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address == "local":
        start_local(os.cpu_count() or 1)
        return True
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    return True


def start_local(cpus: int) -> None:
    """A throwaway local cluster of `cpus` CPUs, no dashboard. Ray gives its raylet 30 s to register, which a busy
    machine can miss: one more try after a clean shutdown, then the error."""
    ray = import_ray()
    for attempt in (1, 2):
        try:
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
            return
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
