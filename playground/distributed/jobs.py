"""Batch jobs on a Ray cluster: prompts sharded over actors that each hold one engine.

    result = ray_sweep(registry_spec("upbeat-b0.1"), settings, RayOptions("local"), progress=bar)
    run = ray_probe(registry_spec("upbeat-b0.1"), "made_up", probe_settings, RayOptions("auto"))
    result = ray_calibration(registry_spec("upbeat-b0.1", "upbeat-b0.5"), calibration_settings, RayOptions("local"))

The entry points (`ray_sweep`, `ray_controls`, `ray_probe`, `ray_calibration`, the Trade-off tab's `app_runner`, and
`RayDecoder` for `run_sweep(..., decode=)`) split the job's items into shards (playground/distributed/shards.py) and
run them on a RayPool (pool.py) of ShardWorker actors (worker.py) built from an EngineSpec (specs.py). The driver
(this process) puts the results back in order and measures them with the same code as a single-process run
(`run_sweep`, `run_probe`, `summarise_calibration`: judges, bootstrap over prompts, diversity); it loads no language
model (`JudgeHost`).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from playground.distributed.options import RayOptions, check_address
from playground.distributed.pool import RayPool, Shard, sweep_cancelled
from playground.distributed.shards import CalibrationShard, ProbeShard, Progress, SweepShard
from playground.distributed.specs import EngineSpec, playground_spec
from playground.settings.request import SWEEP, SweepSettings


class RayDecoder(RayPool):
    """`run_sweep(..., decode=RayDecoder(spec, options))`: decodes the grid's shards on a Ray cluster.

    Used as a context manager (`with RayDecoder(...) as dec:`), its actors serve every sweep inside (the adapter
    report's adapters); otherwise each call starts and stops its own."""

    def __call__(self, pg, s: SweepSettings, keys: Sequence[tuple], report: Progress, should_stop: Callable[[], bool]) -> list[dict]:
        with self:
            shards = self.shards(list(keys), lambda key: key[0], lambda part: SweepShard(s, tuple(part)))
            return self.map(shards, lambda f, m: report(SWEEP.decode_share * f, m), should_stop,
                            lambda message: sweep_cancelled(f"sweep {message}"))


def ray_sweep(spec: EngineSpec, s: SweepSettings, options: RayOptions, progress: Progress | None = None,
              should_stop: Callable[[], bool] = lambda: False, observer: Callable[[list[Shard]], None] | None = None):
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
              should_stop: Callable[[], bool] | None = None, ctx=None, observer: Callable[[list[Shard]], None] | None = None):
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
                    should_stop: Callable[[], bool] = lambda: False, observer: Callable[[list[Shard]], None] | None = None,
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
