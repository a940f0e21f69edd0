"""Shards: what one actor runs on its part of a job.

The prompts are split into contiguous runs as even as possible (`shard_prompts`; every (λ, T, sample) of a prompt
in the same shard), one shard per actor. A shard's task is the job's own code, picklable, called as
`task(pg, progress, should_stop)` with progress in 0 … 1: the sweep's `decode_samples` (SweepShard), the probe's
`make_generate` (ProbeShard), the calibration's `answer_sums` (CalibrationShard). Seeds come from the settings
(sweep: `seed + k` for sample k; probe: the row's own seed; calibration: `seed + k`), the same at every prompt and
setting: nothing depends on the worker, and each row is batch-invariant (playground/lm), so the answers are the
single-process answers bit for bit, whatever the number of actors.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from playground.settings.request import SWEEP, SweepSettings

Progress = Callable[[float, str], None]


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
