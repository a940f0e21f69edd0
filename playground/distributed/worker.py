"""The actor: `ShardWorker`, one engine on the cluster.

Each loads the Playground once (`EngineSpec.load`: the base model and the job's adapters) and runs one shard at a
time with the job's own code (playground/distributed/shards.py), i.e. in big batches exactly as one process would.
It is threaded, so the driver's `progress` and `stop` calls answer while `run` decodes; `_Counting` counts the
tokens and finished rows of the shard into that progress.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from playground.distributed.shards import SweepShard
from playground.distributed.specs import EngineSpec
from playground.settings.request import SweepSettings


class _Counting:
    """The actor's Playground with `stream` counting tokens and finished rows into the actor's progress."""

    def __init__(self, pg, state: dict) -> None:
        self._pg, self._state = pg, state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pg, name)

    def stream(self, requests, should_stop=lambda: False):
        before_tokens, before_rows = self._state["tokens"], self._state["rows_done"]
        for streams in self._pg.stream(requests, should_stop=should_stop):
            self._state["tokens"] = before_tokens + sum(len(st.tokens) for st in streams)
            self._state["rows_done"] = min(self._state["rows"], before_rows + sum(st.done for st in streams))
            yield streams


class ShardWorker:
    """One engine on the cluster (a Ray actor; threaded, so `progress` and `stop` answer while `run` runs)."""

    def __init__(self, spec: EngineSpec, threads: int = 1) -> None:
        for key, value in spec.env:
            os.environ.setdefault(key, value)
        import playground.lm  # noqa: F401 - sets MKL_CBWR before torch's first matmul (batch invariance)
        import torch

        torch.set_num_threads(max(1, threads))
        self.pg = spec.load()
        self._stop = False
        self._state = {"shard": None, "fraction": 0.0, "tokens": 0, "rows_done": 0, "rows": 0}

    def info(self) -> dict:
        import torch

        return {"pid": os.getpid(), "threads": torch.get_num_threads()}

    def run(self, shard: int, task: Callable, rows: int) -> dict:
        """`task(pg, progress, should_stop)` on this actor's Playground: its result, tokens decoded, wall time."""
        self._stop = False
        state = {"shard": shard, "fraction": 0.0, "tokens": 0, "rows_done": 0, "rows": rows}
        self._state = state
        start = time.perf_counter()

        def progress(fraction: float, message: str) -> None:
            state["fraction"] = max(0.0, min(1.0, fraction))

        result = task(_Counting(self.pg, state), progress, lambda: self._stop)
        state.update(fraction=1.0, rows_done=rows)
        return {"result": result, "tokens": state["tokens"], "wall_s": time.perf_counter() - start, "pid": os.getpid()}

    def decode(self, shard: int, s: SweepSettings, keys: Sequence[tuple]) -> dict:
        """The sample dicts of `keys` (one sweep shard), in order (`run` with a SweepShard; result under "samples")."""
        done = self.run(shard, SweepShard(s, tuple(keys)), len(keys))
        return dict(done, samples=done.pop("result"))

    def progress(self) -> dict:
        return dict(self._state, pid=os.getpid())

    def stop(self) -> None:
        self._stop = True
