"""Uncertainty for every mean the playground shows: bootstrap clustered by prompt, Wilson intervals.

Samples of one prompt are not independent (they share the prompt's difficulty and topic), so a mean over
"prompt × sample" rows must be resampled by prompt: draw P prompts with replacement, keep all of each
drawn prompt's samples, recompute the statistic; the 2.5% and 97.5% percentiles of B such statistics are
the 95% interval (percentile bootstrap, Efron & Tibshirani 1993, §13). A paired difference between two
settings on the same prompts resamples the same prompts for both, which is much tighter than two
unpaired intervals. A change "within noise" is one whose interval covers zero.

Pure numpy; no torch. Deterministic for a given `seed`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile
DEFAULT_BOOTSTRAP = 2000  # resamples; the interval's Monte-Carlo error is then well under its width


@dataclass(frozen=True)
class Interval:
    """A point estimate with a 95% interval [low, high]; `n_clusters` is how many prompts it rests on."""

    estimate: float
    low: float
    high: float
    n_clusters: int

    @property
    def half_width(self) -> float:
        """(high − low) / 2, the "±" shown in tables."""
        return (self.high - self.low) / 2 if math.isfinite(self.low) and math.isfinite(self.high) else math.nan

    @property
    def covers_zero(self) -> bool:
        """True when 0 lies inside the interval: a difference is then "within noise"."""
        return not (self.low > 0 or self.high < 0)

    def label(self, digits: int = 3) -> str:
        """"0.123 [0.100, 0.150]"."""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _groups(values: Sequence[float], clusters: Sequence[Hashable]) -> list[np.ndarray]:
    if len(values) != len(clusters):
        raise ValueError(f"values and clusters differ in length: {len(values)} vs {len(clusters)}")
    order: dict[Hashable, list[float]] = {}
    for v, c in zip(values, clusters):
        order.setdefault(c, []).append(float(v))
    return [np.asarray(g, dtype=np.float64) for g in order.values()]


def cluster_bootstrap(values: Sequence[float], clusters: Sequence[Hashable], statistic: Callable[[np.ndarray], float] = np.mean,
                      n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> Interval:
    """95% percentile-bootstrap interval of `statistic(values)`, resampling whole clusters (prompts).

    With one cluster the interval is (nan, nan): one prompt says nothing about the next one.
    """
    groups = _groups(values, clusters)
    if not groups:
        return Interval(math.nan, math.nan, math.nan, 0)
    estimate = float(statistic(np.concatenate(groups)))
    if len(groups) < 2:
        return Interval(estimate, math.nan, math.nan, len(groups))
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        picks = rng.integers(0, len(groups), len(groups))
        stats[b] = statistic(np.concatenate([groups[i] for i in picks]))
    low, high = np.nanpercentile(stats, [2.5, 97.5])
    return Interval(estimate, float(low), float(high), len(groups))


def paired_difference(a: Sequence[float], b: Sequence[float], clusters: Sequence[Hashable],
                      n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> Interval:
    """Interval of mean(b) − mean(a) where a and b are measured on the same clusters (prompts).

    `a`, `b` and `clusters` are aligned per row; rows of one prompt may differ in number between a and b
    only through NaN (ignored). Each prompt contributes its mean difference; prompts are resampled.
    """
    if not len(a) == len(b) == len(clusters):
        raise ValueError("a, b and clusters must have the same length")
    per: dict[Hashable, list[list[float]]] = {}
    for x, y, c in zip(a, b, clusters):
        per.setdefault(c, [[], []])
        per[c][0].append(float(x))
        per[c][1].append(float(y))
    diffs = [float(np.nanmean(ys) - np.nanmean(xs)) for xs, ys in per.values()]
    return cluster_bootstrap(diffs, list(range(len(diffs))), n_boot=n_boot, seed=seed)


def grouped_difference(rows_a: Sequence[tuple[Hashable, float]], rows_b: Sequence[tuple[Hashable, float]],
                       n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> Interval:
    """mean(b) − mean(a) from (prompt, value) rows of two settings, paired by prompt (prompts in both only)."""
    ga: dict[Hashable, list[float]] = {}
    gb: dict[Hashable, list[float]] = {}
    for c, v in rows_a:
        ga.setdefault(c, []).append(float(v))
    for c, v in rows_b:
        gb.setdefault(c, []).append(float(v))
    shared = [c for c in ga if c in gb]
    diffs = [float(np.mean(gb[c]) - np.mean(ga[c])) for c in shared]
    return cluster_bootstrap(diffs, list(range(len(diffs))), n_boot=n_boot, seed=seed)


def wilson(successes: int, n: int, z: float = Z95) -> Interval:
    """Wilson score interval for a share p = successes/n (better than p ± z·sqrt(p(1−p)/n) near 0 and 1).

        centre = (p + z²/2n) / (1 + z²/n),  half = z·sqrt(p(1−p)/n + z²/4n²) / (1 + z²/n)
    """
    if n <= 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}]; got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n)


def noise_label(diff: Interval) -> str:
    """"within noise" when the interval covers zero, else "up" / "down"."""
    if not math.isfinite(diff.low):
        return "n/a"
    return "within noise" if diff.covers_zero else ("up" if diff.estimate > 0 else "down")
