"""Trade-off sweeps on a Ray cluster: prompts sharded over actors that each hold one engine.

    result = ray_sweep(registry_spec("upbeat-b0.1"), settings, RayOptions("local"), progress=bar)

What runs where:
- **Actors** (`ShardWorker`, one per engine): each loads the Playground once (`EngineSpec.load`: the base model
  and the sweep's adapter) and decodes one shard at a time with the sweep's own `decode_samples`, i.e. in big
  batches exactly as one process would. An actor asks for `cpus_per_actor` CPUs and, where the cluster has
  GPUs, a GPU (a share of one when there are more actors than GPUs).
- **Shards**: the prompts, split into contiguous runs as even as possible (every (λ, T, sample) of a prompt in
  the same shard), one shard per actor. Seeds come from the settings, `seed + k` for sample k, the same at every
  prompt and (λ, T): nothing depends on the worker, and each row is batch-invariant (playground/lm), so the
  samples are the single-process samples bit for bit, whatever the number of actors.
- **The driver** (this process) puts the samples back in grid order and measures them with the same code as a
  single-process sweep (`run_sweep`: judges, bootstrap over prompts, diversity); it loads no language model.

Progress: the driver polls every actor (a threaded actor answers while it decodes) and reports rows done / total,
tokens/s and the ETA over all of them. Cancel (`should_stop()` or Ctrl-C): every actor is killed (`ray.kill`) at
once and SweepCancelled / KeyboardInterrupt goes up; nothing is written. Faults: an actor that dies has its shard
retried once on a fresh actor; a second death of that shard raises ShardFailed naming the shard (prompts and
rows). An exception inside the decoding code is not retried (it would fail again): ShardFailed at once. A local
cluster (`--ray local`) is started for the run and shut down when it ends, however it ends.
"""
from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playground.distributed.options import RayOptions
from playground.settings.request import SWEEP, SweepSettings

Progress = Callable[[float, str], None]
# Environment the actors take from the driver (a remote node's own environment does not have them).
FORWARDED_ENV = ("PLAYGROUND_DTYPE", "PLAYGROUND_ADAPTER_DIR", "PLAYGROUND_CACHE", "PLAYGROUND_DATA_DIR", "HF_HUB_OFFLINE",
                 "HF_HOME", "MKL_CBWR")
POLL_S = 0.5  # how often the driver polls the actors (progress, cancel)


class ShardFailed(RuntimeError):
    """A shard could not be decoded: its actor died twice, or the decoding code raised. Names the shard."""


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    path: str  # must be readable at the same path on every node (a shared filesystem or the same install)
    beta_train: float
    judge: str
    description: str = ""


@dataclass(frozen=True)
class EngineSpec:
    """What an actor loads: a registry base model (by name) or a local model directory, and LoRA adapters.

    Picklable and small: it travels to every actor, which builds its own Playground from it."""

    base: str  # a registry base model name, or a model directory (source) when `directory` is true
    adapters: tuple[AdapterSpec, ...] = ()
    registry_adapters: tuple[str, ...] = ()  # registry names, loaded through Playground.from_registry
    directory: bool = False
    dtype: str | None = None  # PLAYGROUND_DTYPE for the registry path (None: the driver's setting)
    env: tuple[tuple[str, str], ...] = field(default_factory=lambda: tuple((k, os.environ[k]) for k in FORWARDED_ENV
                                                                           if k in os.environ))

    def load(self):
        """The Playground this spec names (in an actor: once per actor)."""
        from playground.service import AdapterInfo, Playground

        if not self.directory:
            return Playground.from_registry(self.base, adapters=list(self.registry_adapters), dtype=self.dtype)
        from playground.lm.loading import load_base

        return Playground(load_base(self.base), [AdapterInfo(a.name, Path(a.path), a.beta_train, a.judge, a.description)
                                                 for a in self.adapters])


def registry_spec(adapter: str) -> EngineSpec:
    """The spec of `python -m playground sweep --adapter NAME`: the registry's base with that adapter."""
    from playground import registry
    from playground.settings.server import model_dtype_name

    return EngineSpec(registry.get_adapter(adapter).base, registry_adapters=(adapter,), dtype=model_dtype_name())


def directory_spec(model_dir: str | Path, adapters: dict[str, str | Path]) -> EngineSpec:
    """A local model directory and adapter directories (each with its card.json: beta and judge)."""
    import json

    specs = []
    for name, path in adapters.items():
        card = json.loads((Path(path) / "card.json").read_text(encoding="utf-8"))
        specs.append(AdapterSpec(name, str(Path(path).resolve()), float(card["beta"]), str(card["judge"])))
    return EngineSpec(str(Path(model_dir).resolve()), adapters=tuple(specs), directory=True)


def shard_prompts(prompts: int, shards: int) -> list[range]:
    """Prompt indices split into min(shards, prompts) contiguous runs, as even as possible (the first ones longer)."""
    n = max(1, min(shards, prompts))
    size, extra = divmod(prompts, n)
    out, start = [], 0
    for j in range(n):
        stop = start + size + (1 if j < extra else 0)
        out.append(range(start, stop))
        start = stop
    return out


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
            self._state["rows_done"] = before_rows + sum(st.done for st in streams)
            yield streams


class ShardWorker:
    """One engine on the cluster (a Ray actor; threaded, so `progress` and `stop` answer while `decode` runs)."""

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

    def decode(self, shard: int, s: SweepSettings, keys: Sequence[tuple]) -> dict:
        """The sample dicts of `keys` (one shard), in order, decoded by the sweep's own code."""
        from playground.tradeoff.sweep import decode_samples

        self._stop = False
        state = {"shard": shard, "fraction": 0.0, "tokens": 0, "rows_done": 0, "rows": len(keys)}
        self._state = state
        start = time.perf_counter()

        def progress(fraction: float, message: str) -> None:
            state["fraction"] = min(1.0, fraction / SWEEP.decode_share)

        samples = decode_samples(_Counting(self.pg, state), s, list(keys), progress, lambda: self._stop)
        state.update(fraction=1.0, rows_done=len(keys))
        return {"samples": samples, "tokens": state["tokens"], "wall_s": time.perf_counter() - start, "pid": os.getpid()}

    def progress(self) -> dict:
        return dict(self._state, pid=os.getpid())

    def stop(self) -> None:
        self._stop = True


def _ray():
    import ray

    return ray


def connect(address: str) -> bool:
    """Join or start a cluster; True when this call started it (then the caller shuts it down).

    Already connected (a test's cluster, a notebook's): that one is used and left running."""
    ray = _ray()
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
    ray = _ray()
    for attempt in (1, 2):
        try:
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
            return
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise


def _cause(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[-1] if lines else type(err).__name__)[:300]


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "…"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass
class _Shard:
    index: int
    prompts: range
    positions: list[int]  # where its keys sit in the whole grid
    keys: list[tuple]
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


class RayDecoder:
    """`run_sweep(..., decode=RayDecoder(spec, options))`: decodes the grid's shards on a Ray cluster.

    `observer(shards)` (tests, dashboards) sees every shard's state after each poll: index, attempts, state, pid,
    fraction, rows_done, tokens."""

    def __init__(self, spec: EngineSpec, options: RayOptions, observer: Callable[[list[_Shard]], None] | None = None) -> None:
        self.spec, self.options, self.observer = spec, options, observer
        self.actors_started = 0
        self.pids: list[int] = []  # every actor process seen decoding (they are all stopped when a run returns)
        self.shard_attempts: list[int] = []  # per shard, after a run: 1, or 2 where its first actor died
        self.shard_wall_s: list[float] = []  # per shard: seconds its actor spent decoding it (model load excluded)
        self.decode_wall_s = 0.0  # the driver's wall time from starting the actors to the last shard back

    def _actor_options(self, ray, actors: int) -> dict:
        gpus = ray.cluster_resources().get("GPU", 0)
        opts: dict[str, Any] = {"num_cpus": self.options.cpus_per_actor, "max_concurrency": 2, "max_restarts": 0}
        if gpus >= 1:
            opts["num_gpus"] = 1 if gpus >= actors else gpus / actors
        return opts

    def _actors(self, ray, shards: int) -> int:
        if self.options.actors is not None:
            return min(self.options.actors, shards)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        return max(1, min(shards, cpus // self.options.cpus_per_actor))

    def __call__(self, pg, s: SweepSettings, keys: Sequence[tuple], report: Progress, should_stop: Callable[[], bool]) -> list[dict]:
        from playground.tradeoff.sweep import SweepCancelled

        ray = _ray()
        started = connect(self.options.address)
        everyone: list[Any] = []
        try:
            groups = shard_prompts(len(s.prompts), self._actors(ray, len(s.prompts)))
            shards = []
            for j, prompts in enumerate(groups):
                positions = [p for p, k in enumerate(keys) if k[0] in prompts]
                shards.append(_Shard(j, prompts, positions, [keys[p] for p in positions]))
            worker = ray.remote(ShardWorker).options(**self._actor_options(ray, len(shards)))

            def new_actor():
                actor = worker.remote(self.spec, self.options.cpus_per_actor)
                everyone.append(actor)
                self.actors_started += 1
                return actor

            self.shard_attempts, self.shard_wall_s = [0] * len(shards), [0.0] * len(shards)
            idle = deque(new_actor() for _ in shards)
            pending = deque(shards)
            running: dict[Any, tuple[_Shard, Any]] = {}
            out: list[dict | None] = [None] * len(keys)
            total, begin = len(keys), time.perf_counter()
            while pending or running:
                while pending and idle:
                    shard, actor = pending.popleft(), idle.popleft()
                    shard.attempts, shard.state, shard.fraction, shard.rows_done, shard.tokens = shard.attempts + 1, "running", 0.0, 0, 0
                    self.shard_attempts[shard.index] = shard.attempts
                    running[actor.decode.remote(shard.index, s, shard.keys)] = (shard, actor)
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
                    except ray.exceptions.RayTaskError as err:  # the decoding code raised: it would raise again
                        raise ShardFailed(f"{shard.label()} failed: {_cause(err)}") from None
                    for p, sample in zip(shard.positions, done["samples"]):
                        out[p] = sample
                    shard.state, shard.fraction, shard.rows_done, shard.tokens, shard.pid = "done", 1.0, len(shard.keys), done["tokens"], done["pid"]
                    self.shard_wall_s[shard.index] = done["wall_s"]
                    idle.append(actor)
                if should_stop():
                    raise SweepCancelled(f"sweep cancelled: {sum(x.rows_done for x in shards)} of {total} rows decoded; "
                                         f"stopped all {len(everyone)} actors")
                self._poll(ray, running, shards)
                done_rows = sum(x.rows_done for x in shards)
                fraction = sum(x.fraction * len(x.keys) for x in shards) / total
                tokens, elapsed = sum(x.tokens for x in shards), time.perf_counter() - begin
                eta = elapsed * (1 - fraction) / fraction if fraction > 0 else math.inf
                report(SWEEP.decode_share * fraction, f"{len(running)} actor{'s' if len(running) != 1 else ''}: rows {done_rows}/{total}, "
                                                      f"{tokens / max(elapsed, 1e-9):.0f} tok/s, ETA {_eta(eta)}")
            self.decode_wall_s = time.perf_counter() - begin
            if any(x is None for x in out):  # cannot happen: every shard came back; never report a partial grid
                raise ShardFailed("a shard came back incomplete; nothing is reported")
            return out  # type: ignore[return-value]
        finally:
            self._stop_all(ray, everyone)
            if started:
                ray.shutdown()

    def _poll(self, ray, running: dict, shards: list[_Shard]) -> None:
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


def ray_sweep(spec: EngineSpec, s: SweepSettings, options: RayOptions, progress: Progress | None = None,
              should_stop: Callable[[], bool] = lambda: False, observer: Callable[[list[_Shard]], None] | None = None):
    """`run_sweep` with the decoding on a Ray cluster; the driver judges and summarises (no language model here)."""
    from playground.tradeoff.sweep import run_sweep

    return run_sweep(JudgeHost(), s, progress=progress, should_stop=should_stop, decode=RayDecoder(spec, options, observer))


class JudgeHost:
    """What the driver's `run_sweep` needs from a Playground once the samples are decoded: the judges."""

    def judge(self, name: str):
        from playground.judges.judges import get_judge

        return get_judge(name)

    def __getattr__(self, name: str):
        raise AttributeError(f"the Ray driver holds no language model (Playground.{name}); decoding runs on the actors")
