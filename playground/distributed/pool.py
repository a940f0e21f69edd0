"""`RayPool`: the engines (actors) of one job on a Ray cluster, and the driver loop that runs shards on them.

An actor asks for `cpus_per_actor` CPUs and, where the cluster has GPUs, a GPU (a share of one when there are more
actors than GPUs). A pool's actors stay up across the rounds of one job (a probe's follow-up stage, the adapter
report's adapters): the model is loaded once per actor per job.

Progress: the driver polls every actor (a threaded actor answers while it decodes) and reports rows done / total,
tokens/s and the ETA over all of them. Cancel (`should_stop()` or Ctrl-C): every actor is killed (`ray.kill`) at
once and the job's cancel error (SweepCancelled, …) or KeyboardInterrupt goes up; nothing is written. Faults: an
actor that dies has its shard retried once on a fresh actor; a second death of that shard raises ShardFailed
naming the shard (prompts and rows). An exception inside the job's code is not retried (it would fail again):
ShardFailed at once. A local cluster (`--ray local`) is started for the run and shut down when it ends, however
it ends.
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from playground.distributed import cluster
from playground.distributed.options import RayOptions
from playground.distributed.shards import Progress, shard_prompts
from playground.distributed.specs import EngineSpec
from playground.distributed.worker import ShardWorker

POLL_S = 0.5  # how often the driver polls the actors (progress, cancel)


class ShardFailed(RuntimeError):
    """A shard could not be decoded: its actor died twice, or the decoding code raised. Names the shard."""


def _cause(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[-1] if lines else type(err).__name__)[:300]


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "…"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass
class Shard:
    """The driver's record of one shard of a map: its prompts and items, its task, and its state (observers see it)."""

    index: int
    prompts: range
    positions: list[int]  # where its items sit in the whole list
    keys: list  # its items (sweep keys, probe rows, calibration answers): what "rows" counts
    task: Callable | None = None  # what its actor runs (SweepShard, ProbeShard, CalibrationShard)
    attempts: int = 0
    state: str = "pending"  # pending | running | done
    pid: int | None = None
    fraction: float = 0.0
    rows_done: int = 0
    tokens: int = 0
    causes: list[str] = field(default_factory=list)

    def label(self) -> str:
        last = self.prompts.stop - 1
        span = f"prompt {self.prompts.start}" if last == self.prompts.start else f"prompts {self.prompts.start}–{last}"
        return f"shard {self.index} ({span}, {len(self.keys)} rows)"


def sweep_cancelled(message: str) -> BaseException:
    from playground.tradeoff.sweep import SweepCancelled

    return SweepCancelled(message)


class RayPool:
    """Engines on a Ray cluster for one job: `with RayPool(spec, options) as pool: pool.map(...)`.

    Entering joins (or, for "local", starts) the cluster; the actors are started by the first `map` and kept for
    the next ones; leaving kills them all and shuts a cluster it started down. `observer(shards)` (tests,
    dashboards) sees every shard's state after each poll: index, attempts, state, pid, fraction, rows_done, tokens."""

    def __init__(self, spec: EngineSpec, options: RayOptions, observer: Callable[[list[Shard]], None] | None = None) -> None:
        self.spec, self.options, self.observer = spec, options, observer
        self.actors_started = 0
        self.pids: list[int] = []  # every actor process seen working (they are all stopped when the pool closes)
        self.shard_attempts: list[int] = []  # per shard of the last map: 1, or 2 where its first actor died
        self.shard_wall_s: list[float] = []  # per shard of the last map: seconds its actor spent on it (load excluded)
        self.decode_wall_s = 0.0  # the driver's wall time of the last map, from starting the actors to the last shard back
        self._depth, self._started, self._worker = 0, False, None
        self._everyone: list[Any] = []
        self._idle: deque = deque()

    def __enter__(self) -> "RayPool":
        if self._depth == 0:
            self._started = cluster.connect(self.options.address)
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            ray = cluster.import_ray()
            self._stop_all(ray, self._everyone)
            self._everyone, self._idle, self._worker = [], deque(), None
            if self._started:
                ray.shutdown()
            self._started = False

    def _actor_options(self, ray, actors: int) -> dict:
        gpus = ray.cluster_resources().get("GPU", 0)
        opts: dict[str, Any] = {"num_cpus": self.options.cpus_per_actor, "max_concurrency": 2, "max_restarts": 0}
        if gpus >= 1:
            opts["num_gpus"] = 1 if gpus >= actors else gpus / actors
        return opts

    def _actors(self, ray, shards: int) -> int:
        """One per shard, at most --ray-actors, and at most what the cluster's CPUs hold: an actor keeps its CPUs while
        it lives, so one that cannot be placed would hold its shard forever."""
        fit = max(1, int(ray.cluster_resources().get("CPU", 1)) // self.options.cpus_per_actor)
        return max(1, min(shards, fit, self.options.actors or fit))

    def shards(self, items: Sequence, prompt_of: Callable[[Any], Hashable], task_of: Callable[[list], Callable]) -> list[Shard]:
        """`items` split by prompt (`prompt_of(item)`, prompts in order of first appearance) into one contiguous run of
        prompts per actor; each shard's task is `task_of(its items)`."""
        with self:
            order: dict[Hashable, int] = {}
            for item in items:
                order.setdefault(prompt_of(item), len(order))
            groups = shard_prompts(len(order), self._actors(cluster.import_ray(), len(order)))
            out = []
            for j, prompts in enumerate(groups):
                positions = [p for p, item in enumerate(items) if order[prompt_of(item)] in prompts]
                keys = [items[p] for p in positions]
                out.append(Shard(j, prompts, positions, keys, task_of(keys)))
            return out

    def map(self, shards: list[Shard], report: Progress, should_stop: Callable[[], bool],
            cancelled: Callable[[str], BaseException] = sweep_cancelled) -> list:
        """Run every shard's task on an actor (retrying a shard once where its actor died); the results in item order
        (each shard's result is a list, one entry per item). Raises `cancelled(message)` when `should_stop()` turns true."""
        with self:
            ray = cluster.import_ray()
            if self._worker is None:
                self._worker = ray.remote(ShardWorker).options(**self._actor_options(ray, len(shards)))

            def new_actor():
                actor = self._worker.remote(self.spec, self.options.cpus_per_actor)
                self._everyone.append(actor)
                self.actors_started += 1
                return actor

            self.shard_attempts, self.shard_wall_s = [0] * len(shards), [0.0] * len(shards)
            idle = self._idle
            while len(idle) < len(shards):
                idle.append(new_actor())
            pending = deque(shards)
            running: dict[Any, tuple[Shard, Any]] = {}
            total = sum(len(x.keys) for x in shards)
            out: list[Any] = [None] * total
            filled = [False] * total
            begin = time.perf_counter()
            try:
                while pending or running:
                    while pending and idle:
                        shard, actor = pending.popleft(), idle.popleft()
                        shard.attempts, shard.state, shard.fraction, shard.rows_done, shard.tokens = shard.attempts + 1, "running", 0.0, 0, 0
                        self.shard_attempts[shard.index] = shard.attempts
                        running[actor.run.remote(shard.index, shard.task, len(shard.keys))] = (shard, actor)
                    ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                    for ref in ready:
                        shard, actor = running.pop(ref)
                        try:
                            done = ray.get(ref)
                        except ray.exceptions.RayActorError as err:  # the actor died (killed, OOM, node lost)
                            shard.causes.append(_cause(err))
                            shard.state = "pending"
                            if shard.attempts >= 2:
                                raise ShardFailed(f"{shard.label()} failed twice: its actors died ({'; '.join(shard.causes)})") from None
                            pending.appendleft(shard)
                            idle.append(new_actor())  # retried on another (fresh) actor
                            continue
                        except ray.exceptions.RayTaskError as err:  # the job's code raised: it would raise again
                            raise ShardFailed(f"{shard.label()} failed: {_cause(err)}") from None
                        results = done["result"]
                        if len(results) != len(shard.keys):
                            raise ShardFailed(f"{shard.label()} came back with {len(results)} results; nothing is reported")
                        for p, value in zip(shard.positions, results):
                            out[p], filled[p] = value, True
                        shard.state, shard.fraction, shard.rows_done, shard.tokens, shard.pid = "done", 1.0, len(shard.keys), done["tokens"], done["pid"]
                        self.shard_wall_s[shard.index] = done["wall_s"]
                        idle.append(actor)
                    if should_stop():
                        raise cancelled(f"cancelled: {sum(x.rows_done for x in shards)} of {total} rows decoded; "
                                        f"stopped all {len(self._everyone)} actors")
                    self._poll(ray, running, shards)
                    done_rows = sum(x.rows_done for x in shards)
                    fraction = sum(x.fraction * len(x.keys) for x in shards) / max(total, 1)
                    tokens, elapsed = sum(x.tokens for x in shards), time.perf_counter() - begin
                    eta = elapsed * (1 - fraction) / fraction if fraction > 0 else math.inf
                    report(fraction, f"{len(running)} actor{'s' if len(running) != 1 else ''}: rows {done_rows}/{total}, "
                                     f"{tokens / max(elapsed, 1e-9):.0f} tok/s, ETA {_eta(eta)}")
            except BaseException:  # cancelled, failed or interrupted: no actor goes on working
                self._stop_all(ray, self._everyone)
                self._everyone, self._idle = [], deque()
                raise
            self.decode_wall_s = time.perf_counter() - begin
            if not all(filled):  # cannot happen: every shard came back; never report a partial result
                raise ShardFailed("a shard came back incomplete; nothing is reported")
            return out

    def _poll(self, ray, running: dict, shards: list[Shard]) -> None:
        """Fresh progress of every running shard (a dead actor's answer is skipped: its failure shows on its task)."""
        asks = {actor.progress.remote(): shard for shard, actor in running.values()}
        if not asks:
            return
        ready, _ = ray.wait(list(asks), num_returns=len(asks), timeout=POLL_S)
        for ref in ready:
            try:
                state = ray.get(ref)
            except ray.exceptions.RayError:
                continue
            shard = asks[ref]
            if state["shard"] == shard.index and shard.state == "running":
                shard.fraction, shard.rows_done, shard.tokens, shard.pid = state["fraction"], state["rows_done"], state["tokens"], state["pid"]
                if state["pid"] not in self.pids:
                    self.pids.append(state["pid"])
        if self.observer:
            self.observer(shards)

    @staticmethod
    def _stop_all(ray, actors: list) -> None:
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead, or the cluster is gone
                pass
