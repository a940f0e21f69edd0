"""A local Ray cluster for the distributed tests: 2 CPUs on this machine, started once per module, always shut down.

Ray is an optional extra (requirements-ray.txt, installed by scripts/test.sh); without it these tests skip and say why."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from playground.distributed.options import ray_installed


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state not in "ZX"


def wait_gone(pids, within_s: float = 20.0) -> list[int]:
    """The pids still alive once they are all gone or `within_s` has passed (a bounded wait, not a timing check)."""
    import time

    deadline = time.monotonic() + within_s
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


@pytest.fixture(scope="module")
def cluster():
    """ray.init(num_cpus=2): the runner joins it (and leaves it running); shut down after the module."""
    why = ray_installed()
    if why:
        pytest.skip(why)
    import ray

    os.environ.setdefault("PLAYGROUND_DTYPE", "float32")
    from playground.distributed.cluster import start_local

    start_local(2)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def spec(tiny_model_dir, tiny_adapters):
    """The tiny model and adapters of tests/conftest.py as the actors load them (paths every actor can read)."""
    from playground.distributed.specs import directory_spec

    return directory_spec(tiny_model_dir, tiny_adapters)
