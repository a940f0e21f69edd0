"""Probes on a live model: the `generate` that `run_probe` needs, built only on the `Playground` facade.

    s = probe_settings(pg.adapters, probe="made_up", adapter="upbeat-b0.1", lambdas="0,1,2", samples=2)
    result = run_on_playground(pg, "made_up", s, progress=..., should_stop=...)

`make_generate(pg, adapter, settings)` turns probe rows into answers: each row's chat is encoded with
`pg.encode(last user message, the messages before it)`, decoded at the row's λ and seed with the probe's
temperature and token cap (top-p 1: nothing is cut from the distribution), and every row of one stage goes
into ONE `pg.stream` batch (split only past `LIMITS.max_sweep_rows` requests, as a sweep is). Each answer
carries its token count and mean per-token KL(π_λ ‖ π_base) from the engine. `should_stop()` is checked after
every decoding step; when it turns true the probe stops and raises `InputError(CANCELLED)`: nothing is reported.
`make_context(pg, adapter)` gives the probes the playground's judges and the adapter's own judge.
`probe_settings` checks raw input (UI, API, CLI) once, naming the parameter in every error.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from playground.probes.base import BaseProbe, Generated, ProbeContext, ProbeRow, ProbeSettings, run_probe
from playground.probes.result import ProbeResult
from playground.probes.registry import PROBES, get_probe
from playground.settings.request import DEFAULT_DECODE, LIMITS
from playground.settings.validation import InputError, check_choice, check_int, check_number, decode_settings, parse_floats

CANCELLED = "probe cancelled; nothing was computed"
DECODE_SHARE = 0.9  # of the progress bar; measuring (embeddings, judges) takes the rest
DEFAULT_LAMBDAS = (0.0, 0.5, 1.0, 2.0, 4.0)
QUICK = {"samples": 1, "max_new_tokens": 48, "limit": 8}  # the tab's defaults: a run of a few minutes on a CPU
Progress = Callable[[float, str], None]


@dataclass
class ProbeRun:
    """A probe's result on a live model, with what it cost."""

    result: ProbeResult
    adapter: str
    answers: int  # decoded rows, all stages
    wall_s: float


def _chunks(n: int, size: int) -> list[range]:
    """n requests in the fewest batches of at most `size`, as even as possible."""
    if n == 0:
        return []
    step = math.ceil(n / math.ceil(n / size))
    return [range(i, min(i + step, n)) for i in range(0, n, step)]


def split_chat(messages: Sequence[dict]) -> tuple[str, list[dict]]:
    """(the last user message, the messages before it): what `pg.encode(prompt, history)` takes."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return messages[i].get("content", ""), [dict(m) for m in messages[:i]]
    raise ValueError("a probe row needs at least one user message")


def stages(probe) -> int:
    """How many times `run_probe` calls `generate`: 0 (no rows), 1, or 2 (a follow-up stage)."""
    if isinstance(probe, BaseProbe) and type(probe).follow_up is not BaseProbe.follow_up:
        return 2
    return 1


def make_generate(pg, adapter: str, settings: ProbeSettings, should_stop: Callable[[], bool] | None = None,
                  progress: Progress | None = None, n_stages: int = 1) -> Callable[[list[ProbeRow]], list[Generated]]:
    """`generate(rows) -> [Generated]` for `run_probe`, decoding each call's rows in one batch on `pg`.

    `progress(fraction, message)` is told after every step; `n_stages` (see `stages`) spreads the bar over the
    calls `run_probe` will make. Raises InputError(CANCELLED) as soon as `should_stop()` is true.
    """
    stop = should_stop or (lambda: False)
    report = progress or (lambda fraction, message: None)
    calls = [0]

    def generate(rows: list[ProbeRow]) -> list[Generated]:
        stage, calls[0] = calls[0], calls[0] + 1
        reqs = []
        for row in rows:
            prompt, history = split_chat(row.messages)
            d = decode_settings(lam=row.lam, temperature=settings.temperature, top_p=1.0,
                                max_new_tokens=settings.max_new_tokens, seed=row.seed)
            reqs.append(pg.request(pg.encode(prompt, history), adapter, d))
        chunks = _chunks(len(reqs), LIMITS.max_sweep_rows)
        steps = settings.max_new_tokens
        out: list[Generated] = []
        for c, idx in enumerate(chunks):
            if stop():
                raise InputError(CANCELLED)
            last: list = []
            for step, streams in enumerate(pg.stream([reqs[i] for i in idx], should_stop=stop), 1):
                last = streams
                done = (stage + (c + step / steps) / len(chunks)) / max(n_stages, stage + 1)
                where = f"stage {stage + 1}/{max(n_stages, stage + 1)}, " if max(n_stages, stage + 1) > 1 else ""
                report(DECODE_SHARE * min(done, 1.0),
                       f"decoding {len(rows)} answers ({where}batch {c + 1}/{len(chunks)}): token {step}/{steps}")
            if not last or not all(st.done for st in last) or stop():
                raise InputError(CANCELLED)
            for i, st in zip(idx, last, strict=True):
                out.append(Generated(rows[i], pg.text(st.tokens), len(pg.answer_ids(st.tokens)), float(st.kl_mean)))
        return out

    return generate


def make_context(pg, adapter: str | None, **kw) -> ProbeContext:
    """The probes' context on `pg`: its judges, and the judge `adapter` was trained on (its card's `judge`)."""
    info = pg.adapters.get(adapter) if adapter else None
    return ProbeContext(judge=pg.judge, adapter_judge=getattr(info, "judge", None), **kw)


def _lambdas(value: object) -> tuple[float, ...]:
    raw = parse_floats("lambdas", ",".join(map(str, DEFAULT_LAMBDAS)) if value is None else value)
    lams = [check_number("lambdas", v, LIMITS.min_lambda, LIMITS.max_lambda) for v in raw]
    if len(lams) > LIMITS.max_sweep_values:
        raise InputError(f"lambdas: give at most {LIMITS.max_sweep_values} values; got {len(lams)}")
    if len(set(lams)) != len(lams):
        raise InputError(f"lambdas must not repeat; got {', '.join(f'{v:g}' for v in lams)}")
    return tuple(sorted(lams))


def probe_settings(adapters: dict, *, probe: object, adapter: object, lambdas: object = None, samples: object = 2,
                   temperature: object = DEFAULT_DECODE.temperature, max_new_tokens: object = 64, seed: object = 0,
                   limit: object = None) -> tuple[str, ProbeSettings]:
    """Check one probe run's knobs (raw UI/API/CLI values) once: (probe name, ProbeSettings); InputError names the knob.

    `adapters`: name → entry (the registry's or a Playground's); `limit` keeps the first N prompts of each set.
    """
    name = check_choice("probe", probe, list(PROBES))
    chosen = check_choice("adapter", adapter, sorted(adapters))
    lams = _lambdas(lambdas)
    k = check_int("samples", samples, 1, LIMITS.max_samples_per_setting)
    temp = check_number("temperature", temperature, 0.0, LIMITS.max_temperature)
    tokens = check_int("max_new_tokens", max_new_tokens, 1, LIMITS.max_new_tokens)
    first = check_int("seed", seed, 0, LIMITS.max_seed - k)
    cap = None if limit in (None, "") else check_int("limit", limit, 1, 10_000)
    return name, ProbeSettings(lams, k, temp, tokens, first, chosen, cap)


def planned_rows(name: str, settings: ProbeSettings) -> int:
    """How many answers the probe will decode (a two-stage probe decodes its rows twice)."""
    probe = get_probe(name)
    return len(probe.rows(settings)) * stages(probe)


def estimate(name: str, settings: ProbeSettings) -> str:
    """One line before running: answers × token cap, and the batches they decode in."""
    probe = get_probe(name)
    rows = len(probe.rows(settings))
    if rows == 0:
        return f"**{probe.title}**: no decoding; the judges score hand-written answer pairs (seconds)."
    n = stages(probe)
    batches = len(_chunks(rows, LIMITS.max_sweep_rows))
    total = rows * n
    return (f"**{probe.title}**: {total:,} answers ({rows:,} rows = prompts × {len(settings.lambdas)} λ × "
            f"{settings.samples} samples{', twice: answer, then the follow-up' if n > 1 else ''}) × ≤ "
            f"{settings.max_new_tokens} tokens = ≤ {total * settings.max_new_tokens:,} tokens, in {batches * n} "
            f"batch{'es' if batches * n > 1 else ''} of ≤ {LIMITS.max_sweep_rows} answers.")


def run_on_playground(pg, name: str, settings: ProbeSettings, progress: Progress | None = None,
                      should_stop: Callable[[], bool] | None = None, ctx: ProbeContext | None = None) -> ProbeRun:
    """Run probe `name` on `pg` with checked `settings` (adapter = settings.adapter): decode, measure, time it."""
    report = progress or (lambda fraction, message: None)
    probe = get_probe(name)
    start = time.perf_counter()
    answers, calls, n = [0], [0], stages(probe)
    inner = make_generate(pg, settings.adapter, settings, should_stop, report, n)

    def generate(rows: list[ProbeRow]) -> list[Generated]:
        answers[0] += len(rows)
        calls[0] += 1
        out = inner(rows)
        if calls[0] >= n:
            report(DECODE_SHARE, f"measuring {answers[0]} answers")
        return out

    ctx = ctx if ctx is not None else make_context(pg, settings.adapter)
    report(0.0, "encoding prompts" if probe.rows(settings) else "scoring answer pairs")
    result = run_probe(probe, settings, generate, ctx)
    if should_stop is not None and should_stop():
        raise InputError(CANCELLED)
    report(1.0, "done")
    return ProbeRun(result, settings.adapter, answers[0], time.perf_counter() - start)
