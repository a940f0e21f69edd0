"""Batch jobs on a Ray cluster: prompts sharded over actors that each hold one engine.

    result = ray_sweep(registry_spec("upbeat-b0.1"), settings, RayOptions("local"), progress=bar)
    run = ray_probe(registry_spec("upbeat-b0.1"), "made_up", probe_settings, RayOptions("auto"))
    result = ray_calibration(registry_spec("upbeat-b0.1", "upbeat-b0.5"), calibration_settings, RayOptions("local"))

What runs where:
- **Actors** (`ShardWorker`, one per engine): each loads the Playground once (`EngineSpec.load`: the base model
  and the job's adapters) and runs one shard at a time with the job's own code — the sweep's `decode_samples`,
  the probe's `make_generate`, the calibration's `calibration_sums` — i.e. in big batches exactly as one process
  would. An actor asks for `cpus_per_actor` CPUs and, where the cluster has GPUs, a GPU (a share of one when there
  are more actors than GPUs). A pool's actors stay up across the rounds of one job (a probe's follow-up stage,
  the adapter report's adapters): the model is loaded once per actor per job.
- **Shards**: the prompts, split into contiguous runs as even as possible (every (λ, T, sample) of a prompt in
  the same shard), one shard per actor. Seeds come from the settings (sweep: `seed + k` for sample k; probe: the
  row's own seed; calibration: `seed + k`), the same at every prompt and setting: nothing depends on the worker,
  and each row is batch-invariant (playground/lm), so the answers are the single-process answers bit for bit,
  whatever the number of actors.
- **The driver** (this process) puts the results back in order and measures them with the same code as a
  single-process run (`run_sweep`, `run_probe`, `summarise_calibration`: judges, bootstrap over prompts,
  diversity); it loads no language model.

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
import os
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playground.distributed.options import RayOptions, check_address
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

    base: str  # a registry base model name, or a model source (directory, gguf:…) when `directory` is true
    adapters: tuple[AdapterSpec, ...] = ()
    registry_adapters: tuple[str, ...] = ()  # registry names, loaded through Playground.from_registry
    directory: bool = False
    dtype: str | None = None  # PLAYGROUND_DTYPE (None: the registry path takes the driver's setting, a directory float32)
    env: tuple[tuple[str, str], ...] = field(default_factory=lambda: tuple((k, os.environ[k]) for k in FORWARDED_ENV
                                                                           if k in os.environ))
    base_name: str | None = None  # the name adapter cards give their base (a directory spec of the app's model)
    chat: bool = True

    def load(self):
        """The Playground this spec names (in an actor: once per actor)."""
        from playground.service import AdapterInfo, Playground, resolve_dtype

        if not self.directory:
            return Playground.from_registry(self.base, adapters=list(self.registry_adapters), dtype=self.dtype)
        from playground.lm.loading import load_base

        weights = {} if self.dtype is None else {"dtype": resolve_dtype(self.dtype),
                                                 "int4": {"auto": "auto", "int4": "yes"}.get(self.dtype, "no")}
        return Playground(load_base(self.base, **weights),
                          [AdapterInfo(a.name, Path(a.path), a.beta_train, a.judge, a.description) for a in self.adapters],
                          base_names=[self.base_name] if self.base_name else [], chat=self.chat)


def registry_spec(*adapters: str) -> EngineSpec:
    """The spec of `python -m playground sweep --adapter NAME` (or of several adapters of one base): the
    registry's base with those adapters."""
    from playground import registry
    from playground.settings.server import model_dtype_name

    return EngineSpec(registry.get_adapter(adapters[0]).base, registry_adapters=tuple(adapters), dtype=model_dtype_name())


def directory_spec(model_dir: str | Path, adapters: dict[str, str | Path]) -> EngineSpec:
    """A local model directory and adapter directories (each with its card.json: beta and judge)."""
    import json

    specs = []
    for name, path in adapters.items():
        card = json.loads((Path(path) / "card.json").read_text(encoding="utf-8"))
        specs.append(AdapterSpec(name, str(Path(path).resolve()), float(card["beta"]), str(card["judge"])))
    return EngineSpec(str(Path(model_dir).resolve()), adapters=tuple(specs), directory=True)


def playground_spec(pg, adapters: Sequence[str]) -> EngineSpec:
    """The spec of a running Playground (the app's) with some of its adapters: the same base source, weight path
    and adapter directories, so an actor decodes what `pg` would (the paths must be readable on every node)."""
    from playground.settings.server import model_dtype_name

    infos = [pg.adapters[name] for name in adapters]
    return EngineSpec(str(pg.base.source), directory=True, dtype=model_dtype_name(), base_name=pg.base_name,
                      chat=getattr(pg, "chat", True),
                      adapters=tuple(AdapterSpec(i.name, str(Path(i.path).resolve()), float(i.beta_train), str(i.judge),
                                                 getattr(i, "description", "") or "") for i in infos))


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


# --- what an actor runs on its shard (picklable; `task(pg, progress, should_stop)`, progress in 0 … 1) -----------

@dataclass(frozen=True)
class SweepShard:
    """A sweep's samples of `keys` (one shard of its grid), in order, by the sweep's own `decode_samples`."""

    settings: SweepSettings
    keys: tuple

    def __call__(self, pg, progress: Progress, should_stop: Callable[[], bool]) -> list[dict]:
        from playground.tradeoff.sweep import decode_samples

        return decode_samples(pg, self.settings, list(self.keys), lambda f, m: progress(f / SWEEP.decode_share, m), should_stop)


@dataclass(frozen=True)
class ProbeShard:
    """A probe's answers to `rows` (one shard of one stage), in order, by the probe's own `make_generate`."""

    settings: Any  # ProbeSettings
    rows: tuple

    def __call__(self, pg, progress: Progress, should_stop: Callable[[], bool]) -> list:
        from playground.probes.generation import DECODE_SHARE, make_generate

        generate = make_generate(pg, self.settings.adapter, self.settings, should_stop, lambda f, m: progress(f / DECODE_SHARE, m))
        return generate(list(self.rows))


@dataclass(frozen=True)
class CalibrationShard:
    """The calibration's per-answer KL sums for `prompts` (sampled from π_B, teacher-forced) by `answer_sums`: one
    entry per (prompt, answer k), prompts in order, k ascending."""

    settings: Any  # CalibrationSettings
    prompts: tuple[int, ...]

    def __call__(self, pg, progress: Progress, should_stop: Callable[[], bool]) -> list:
        from playground.tradeoff.calibrate import answer_sums

        return answer_sums(pg, self.settings, list(self.prompts), progress, should_stop)


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


def _cancelled(message: str) -> BaseException:
    from playground.tradeoff.sweep import SweepCancelled

    return SweepCancelled(message)


class RayPool:
    """Engines on a Ray cluster for one job: `with RayPool(spec, options) as pool: pool.map(...)`.

    Entering joins (or, for "local", starts) the cluster; the actors are started by the first `map` and kept for
    the next ones; leaving kills them all and shuts a cluster it started down. `observer(shards)` (tests,
    dashboards) sees every shard's state after each poll: index, attempts, state, pid, fraction, rows_done, tokens."""

    def __init__(self, spec: EngineSpec, options: RayOptions, observer: Callable[[list[_Shard]], None] | None = None) -> None:
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
            self._started = connect(self.options.address)
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            ray = _ray()
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

    def shards(self, items: Sequence, prompt_of: Callable[[Any], Hashable], task_of: Callable[[list], Callable]) -> list[_Shard]:
        """`items` split by prompt (`prompt_of(item)`, prompts in order of first appearance) into one contiguous run of
        prompts per actor; each shard's task is `task_of(its items)`."""
        with self:
            order: dict[Hashable, int] = {}
            for item in items:
                order.setdefault(prompt_of(item), len(order))
            groups = shard_prompts(len(order), self._actors(_ray(), len(order)))
            out = []
            for j, prompts in enumerate(groups):
                positions = [p for p, item in enumerate(items) if order[prompt_of(item)] in prompts]
                keys = [items[p] for p in positions]
                out.append(_Shard(j, prompts, positions, keys, task_of(keys)))
            return out

    def map(self, shards: list[_Shard], report: Progress, should_stop: Callable[[], bool],
            cancelled: Callable[[str], BaseException] = _cancelled) -> list:
        """Run every shard's task on an actor (retrying a shard once where its actor died); the results in item order
        (each shard's result is a list, one entry per item). Raises `cancelled(message)` when `should_stop()` turns true."""
        with self:
            ray = _ray()
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
            running: dict[Any, tuple[_Shard, Any]] = {}
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


class RayDecoder(RayPool):
    """`run_sweep(..., decode=RayDecoder(spec, options))`: decodes the grid's shards on a Ray cluster.

    Used as a context manager (`with RayDecoder(...) as dec:`), its actors serve every sweep inside (the adapter
    report's adapters); otherwise each call starts and stops its own."""

    def __call__(self, pg, s: SweepSettings, keys: Sequence[tuple], report: Progress, should_stop: Callable[[], bool]) -> list[dict]:
        with self:
            shards = self.shards(list(keys), lambda key: key[0], lambda part: SweepShard(s, tuple(part)))
            return self.map(shards, lambda f, m: report(SWEEP.decode_share * f, m), should_stop,
                            lambda message: _cancelled(f"sweep {message}"))


def ray_sweep(spec: EngineSpec, s: SweepSettings, options: RayOptions, progress: Progress | None = None,
              should_stop: Callable[[], bool] = lambda: False, observer: Callable[[list[_Shard]], None] | None = None):
    """`run_sweep` with the decoding on a Ray cluster; the driver judges and summarises (no language model here)."""
    from playground.tradeoff.sweep import run_sweep

    return run_sweep(JudgeHost(), s, progress=progress, should_stop=should_stop, decode=RayDecoder(spec, options, observer))


def ray_controls(spec: EngineSpec, settings: Sequence[SweepSettings], options: RayOptions, progress: Progress | None = None,
                 should_stop: Callable[[], bool] = lambda: False):
    """`run_controls` (several controls' sweeps, one table) with every sweep's decoding on the same actors."""
    from playground.tradeoff.sweep import run_controls

    with RayDecoder(spec, options) as dec:
        return run_controls(JudgeHost(), settings, progress=progress, should_stop=should_stop, decode=dec)


def ray_probe(spec: EngineSpec, name: str, settings, options: RayOptions, progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None, ctx=None, observer: Callable[[list[_Shard]], None] | None = None):
    """`run_on_playground(pg, name, settings)` with every stage's rows decoded on a Ray cluster (rows sharded by
    prompt, each row at its own seed); the driver measures with the probe's own `run_probe`. A ProbeRun."""
    from playground.probes.base import ProbeContext, run_probe
    from playground.probes.generation import CANCELLED, DECODE_SHARE, ProbeRun, stages
    from playground.probes.registry import get_probe
    from playground.settings.validation import InputError

    report = progress or (lambda fraction, message: None)
    stop = should_stop or (lambda: False)
    probe = get_probe(name)
    n = stages(probe)
    start = time.perf_counter()
    answers = [0]
    if ctx is None:
        from playground import registry

        ctx = ProbeContext(adapter_judge=registry.get_adapter(settings.adapter).judge)
    with RayPool(spec, options, observer) as pool:
        calls = [0]

        def generate(rows: list) -> list:
            stage, calls[0] = calls[0], calls[0] + 1
            answers[0] += len(rows)
            where = f"stage {stage + 1}/{n}, " if n > 1 else ""
            shards = pool.shards(rows, lambda row: row.prompt_id, lambda part: ProbeShard(settings, tuple(part)))
            out = pool.map(shards, lambda f, m: report(DECODE_SHARE * (stage + f) / n, where + m), stop,
                           lambda message: InputError(CANCELLED))
            if stage + 1 >= n:
                report(DECODE_SHARE, f"measuring {answers[0]} answers")
            return out

        report(0.0, "encoding prompts")
        result = run_probe(probe, settings, generate, ctx)
    if stop():
        raise InputError(CANCELLED)
    report(1.0, "done")
    return ProbeRun(result, settings.adapter, answers[0], time.perf_counter() - start)


def ray_calibration(spec: EngineSpec, s, options: RayOptions, progress: Progress | None = None,
                    should_stop: Callable[[], bool] = lambda: False, observer: Callable[[list[_Shard]], None] | None = None,
                    **kw):
    """`run_calibration` with the sampling and teacher forcing on a Ray cluster (prompts sharded; answer k of a prompt
    at seed + k); the driver adds the per-answer sums in the same order, fits λ and bootstraps with the same code."""
    from playground.tradeoff.calibrate import CalibrationCancelled, run_calibration

    def sums(pg, s, prompts: list[int], report: Progress, stop: Callable[[], bool]) -> list:
        with RayPool(spec, options, observer) as pool:
            items = [(i, k) for i in prompts for k in range(s.samples)]
            shards = pool.shards(items, lambda item: item[0],
                                 lambda part: CalibrationShard(s, tuple(dict.fromkeys(i for i, _ in part))))
            return pool.map(shards, report, stop, lambda message: CalibrationCancelled(f"calibration {message}"))

    return run_calibration(JudgeHost(), s, progress=progress or (lambda f, m: None), should_stop=should_stop, sums=sums, **kw)


def app_runner(address: str | None):
    """The Trade-off tab's sweep and controls jobs: in process when `address` is None (the default, a public Space),
    else on that Ray cluster (`PLAYGROUND_RAY_ADDRESS`). (run_sweep-like, run_controls-like) callables taking
    (pg, settings, progress=, should_stop=)."""
    from playground.tradeoff.sweep import run_controls, run_sweep

    if not address:
        return run_sweep, run_controls
    options = RayOptions(check_address(address))

    def sweep(pg, s, progress=None, should_stop=lambda: False):
        _needs_ray()
        return ray_sweep(playground_spec(pg, [s.adapter]), s, options, progress=progress, should_stop=should_stop)

    def controls(pg, settings, progress=None, should_stop=lambda: False):
        _needs_ray()
        return ray_controls(playground_spec(pg, sorted({s.adapter for s in settings})), settings, options,
                            progress=progress, should_stop=should_stop)

    return sweep, controls


def _needs_ray() -> None:
    from playground.distributed.options import ray_installed
    from playground.settings.validation import InputError

    missing = ray_installed()
    if missing:
        raise InputError(f"PLAYGROUND_RAY_ADDRESS is set, but {missing}")


class JudgeHost:
    """What the driver's measuring code needs from a Playground once the answers are decoded: the judges (and the
    adapters' entries where given)."""

    def __init__(self, adapters: dict | None = None) -> None:
        if adapters is not None:
            self.adapters = adapters

    def judge(self, name: str):
        from playground.judges.judges import get_judge

        return get_judge(name)

    def __getattr__(self, name: str):
        raise AttributeError(f"the Ray driver holds no language model (Playground.{name}); decoding runs on the actors")
