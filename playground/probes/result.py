"""What a probe returns: `ProbeResult` — metric rows per λ (and group) with 95% intervals (`MetricRow`), the
metrics' meanings (`MetricSpec`), example answers (`Example`) and plain-words findings — and its JSON form
(`to_json`, `interval_json`: NaN → null).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from playground.intervals import Interval

if TYPE_CHECKING:
    from playground.probes.base import ProbeSettings


@dataclass(frozen=True)
class MetricSpec:
    """A metric's name, one-line meaning and which direction is worse ("higher", "lower" or None)."""

    name: str
    description: str
    worse: str | None = None


@dataclass
class MetricRow:
    """One metric at one λ (None when the metric is not per λ) for one group (a language, judge, variant…).

    `value` is the estimate with its 95% interval; `vs_reference` the paired-by-prompt difference from the
    reference λ (None at the reference itself and for metrics without λ); `noise` is its label.
    """

    metric: str
    lam: float | None
    value: Interval
    group: str = ""
    vs_reference: Interval | None = None
    noise: str = ""
    n_rows: int = 0


@dataclass
class Example:
    """A prompt/answer pair shown next to the numbers; `note` says what the metric saw in it."""

    lam: float
    prompt_id: str
    prompt: str
    answer: str
    note: str = ""


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def interval_json(iv: Interval | None) -> dict[str, Any] | None:
    if iv is None:
        return None
    return {"estimate": _finite(iv.estimate), "low": _finite(iv.low), "high": _finite(iv.high), "n_prompts": iv.n_clusters}


@dataclass
class ProbeResult:
    """A probe's answer: metric rows per λ (and group) with 95% intervals, examples and plain-words findings."""

    probe: str
    title: str
    description: str
    metrics: list[MetricSpec]
    rows: list[MetricRow]
    examples: list[Example] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    settings: ProbeSettings | None = None
    reference_lambda: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, metric: str, lam: float | None = None, group: str = "") -> MetricRow:
        """The row of `metric` at `lam` for `group` (KeyError listing what exists otherwise)."""
        for r in self.rows:
            if r.metric == metric and r.group == group and (r.lam == lam or (lam is not None and r.lam is not None
                                                                               and math.isclose(r.lam, lam))):
                return r
        have = sorted({(r.metric, r.group) for r in self.rows})
        raise KeyError(f"no row {metric!r} at λ={lam} group={group!r}; have {have}")

    def table(self) -> list[dict[str, Any]]:
        """Flat rows for a table: metric, group, λ, "estimate [low, high]", Δ vs reference and its label."""
        out = []
        for r in self.rows:
            out.append({"metric": r.metric, "group": r.group, "lambda": r.lam, "value": r.value.label(),
                        "vs_reference": r.vs_reference.label() if r.vs_reference else "",
                        "noise": r.noise, "prompts": r.value.n_clusters, "rows": r.n_rows})
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (NaN → null)."""
        return {
            "probe": self.probe, "title": self.title, "description": self.description,
            "settings": self.settings.to_json() if self.settings else None,
            "reference_lambda": self.reference_lambda,
            "metrics": [{"name": m.name, "description": m.description, "worse": m.worse} for m in self.metrics],
            "rows": [{"metric": r.metric, "group": r.group, "lambda": r.lam, "value": interval_json(r.value),
                      "vs_reference": interval_json(r.vs_reference), "noise": r.noise, "rows": r.n_rows}
                     for r in self.rows],
            "examples": [{"lambda": e.lam, "prompt_id": e.prompt_id, "prompt": e.prompt, "answer": e.answer,
                          "note": e.note} for e in self.examples],
            "findings": list(self.findings),
            "extra": _json_safe(self.extra),
        }


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, Interval):
        return interval_json(x)
    if isinstance(x, (float, np.floating)):
        return _finite(float(x))
    if isinstance(x, np.integer):
        return int(x)
    return x
