"""The statistics probes measure with (`playground.intervals` applied to probe rows).

Samples of one prompt are correlated, so every mean and share is
bootstrapped by prompt (`ProbeRow.prompt_id` is the cluster key). A share whose bootstrap interval has
zero width (every row 0, or every row 1) shows the Wilson interval over the number of prompts instead:
"0 of 12 prompts" is not "exactly 0". Each λ is compared with the reference λ (0 when the grid has it,
else the smallest λ) by a paired-by-prompt difference; "within noise" means its 95% interval covers 0.

Here: `share_interval` and `mean_interval` (one estimate), `per_lambda` (one MetricRow per λ with its paired
difference from the reference), and what findings are written from: `trend`, `max_lambda_row`, `pick_examples`.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

from playground.intervals import DEFAULT_BOOTSTRAP, Interval, cluster_bootstrap, grouped_difference, noise_label, wilson
from playground.probes.base import ProbeContext, ProbeSettings
from playground.probes.result import Example, MetricRow


def share_interval(values: Sequence[float], clusters: Sequence[Hashable], n_boot: int = DEFAULT_BOOTSTRAP,
                   seed: int = 0) -> Interval:
    """A share (rows valued 0/1, or 0.5 for a tie) bootstrapped by prompt; Wilson over prompts when degenerate.

    A bootstrap of all-0 or all-1 rows has zero width; the Wilson interval of (round(p·P) of P prompts) says
    how little P prompts can rule out.
    """
    iv = cluster_bootstrap(values, clusters, n_boot=n_boot, seed=seed)
    if iv.n_clusters and math.isfinite(iv.estimate) and (not math.isfinite(iv.low) or iv.low == iv.high):
        p = iv.n_clusters
        k = int(round(iv.estimate * p))
        w = wilson(k, p)
        return Interval(iv.estimate, 0.0 if k == 0 else w.low, 1.0 if k == p else w.high, p)
    return iv


def mean_interval(values: Sequence[float], clusters: Sequence[Hashable], n_boot: int = DEFAULT_BOOTSTRAP,
                  seed: int = 0) -> Interval:
    """A mean bootstrapped by prompt."""
    return cluster_bootstrap(values, clusters, n_boot=n_boot, seed=seed)


def per_lambda(metric: str, records: Sequence[tuple[float, Hashable, float]], settings: ProbeSettings,
               ctx: ProbeContext, *, binary: bool, group: str = "") -> list[MetricRow]:
    """One MetricRow per λ of the grid from (λ, prompt_id, value) records; NaN values are left out.

    Each λ ≠ reference also gets the paired-by-prompt difference from the reference λ and its noise label.
    """
    by_lam: dict[float, list[tuple[Hashable, float]]] = {lam: [] for lam in settings.lambdas}
    for lam, pid, v in records:
        if v is None or not math.isfinite(float(v)):
            continue
        by_lam.setdefault(float(lam), []).append((pid, float(v)))
    ref = settings.reference_lambda
    out = []
    for lam in settings.lambdas:
        pairs = by_lam.get(lam, [])
        vals = [v for _, v in pairs]
        pids = [p for p, _ in pairs]
        est = (share_interval if binary else mean_interval)(vals, pids, n_boot=ctx.n_boot, seed=ctx.seed)
        diff = None
        label = "reference"
        if lam != ref:
            diff = grouped_difference(by_lam.get(ref, []), pairs, n_boot=ctx.n_boot, seed=ctx.seed)
            label = noise_label(diff)
        out.append(MetricRow(metric, lam, est, group, diff, label, len(pairs)))
    return out


def pick_examples(candidates: Sequence[Example], lambdas: Sequence[float], k: int) -> list[Example]:
    """Up to k examples per λ, in the order given (a probe lists the telling ones first)."""
    out = []
    for lam in lambdas:
        out.extend([e for e in candidates if e.lam == lam][:k])
    return out


def _fmt_lam(lam: float) -> str:
    return f"{lam:g}"


def trend(rows: Sequence[MetricRow], metric: str, group: str = "", digits: int = 2) -> str | None:
    """"metric: 0.80 at λ=0 → 0.42 at λ=2 (Δ −0.38 [−0.50, −0.21], down)": the reference vs the largest λ."""
    mine = [r for r in rows if r.metric == metric and r.group == group and r.lam is not None]
    ref = [r for r in mine if r.vs_reference is None]
    others = [r for r in mine if r.vs_reference is not None]
    if not ref or not others:
        return None
    hi = max(others, key=lambda r: r.lam)
    if not (math.isfinite(ref[0].value.estimate) and math.isfinite(hi.value.estimate)):
        return None
    where = f" [{group}]" if group else ""
    return (f"{metric}{where}: {ref[0].value.estimate:.{digits}f} at λ={_fmt_lam(ref[0].lam)} → "
            f"{hi.value.estimate:.{digits}f} at λ={_fmt_lam(hi.lam)} (Δ {hi.vs_reference.label(digits)}, {hi.noise})")


def max_lambda_row(rows: Sequence[MetricRow], metric: str, group: str = "") -> MetricRow | None:
    """The row of `metric` at the largest non-reference λ (None when there is none)."""
    mine = [r for r in rows if r.metric == metric and r.group == group and r.vs_reference is not None]
    return max(mine, key=lambda r: r.lam) if mine else None
