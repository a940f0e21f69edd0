"""What a probe run shows and writes: a readable table, a text table, a plot of each metric vs λ with 95% CIs,
the examples, and the JSON/CSV/PNG files. Shared by `python -m playground probe` and the Probes tab.

Every figure is a fresh `matplotlib.figure.Figure` (no pyplot state, safe in threads).
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from playground.probes.result import MetricRow, ProbeResult

# readable table headers, in order
HEADERS = ("Metric", "Group", "λ", "Estimate", "95% CI", "Δ vs reference λ [95% CI]", "Change vs reference", "Prompts", "Answers")
EXAMPLE_HEADERS = ("λ", "Prompt id", "Prompt", "Answer", "What the metric saw")
NOT_SHARES = ("reward", "shift_vs_en", "kl_", "similarity", "length_slope", "confident_minus")  # other metrics are shares
MAX_PANELS = 6


def _num(x: float | None, digits: int = 3) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(low: float, high: float, digits: int = 3) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "n/a"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def readable(result: ProbeResult) -> list[dict[str, Any]]:
    """One dict per metric row with the readable headers (λ blank for metrics without λ)."""
    out = []
    for r in result.rows:
        d = r.vs_reference
        out.append(dict(zip(HEADERS, (
            r.metric, r.group, "" if r.lam is None else f"{r.lam:g}", _num(r.value.estimate),
            _ci(r.value.low, r.value.high), d.label() if d is not None and math.isfinite(d.low) else "",
            r.noise, r.value.n_clusters, r.n_rows), strict=True)))
    return out


def examples(result: ProbeResult, lam: float | None = None) -> list[dict[str, Any]]:
    """The example answers (all, or those at `lam`), one dict per example with EXAMPLE_HEADERS."""
    return [dict(zip(EXAMPLE_HEADERS, (f"{e.lam:g}", e.prompt_id, e.prompt, e.answer, e.note), strict=True))
            for e in result.examples if lam is None or math.isclose(e.lam, lam)]


def text_table(result: ProbeResult) -> str:
    """The readable table as aligned text (the CLI prints it)."""
    rows = readable(result)
    cols = [h for h in HEADERS if any(str(r[h]) for r in rows)] or list(HEADERS)
    width = {h: max(len(h), *(len(str(r[h])) for r in rows)) if rows else len(h) for h in cols}
    lines = ["  ".join(h.ljust(width[h]) for h in cols), "  ".join("-" * width[h] for h in cols)]
    lines += ["  ".join(str(r[h]).ljust(width[h]) for h in cols) for r in rows]
    return "\n".join(lines)


def to_csv(result: ProbeResult) -> str:
    """Machine-readable rows: metric, group, λ, estimate, low, high, Δ and its interval, label, prompts, rows."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["probe", "metric", "group", "lambda", "estimate", "low", "high", "vs_reference", "vs_reference_low",
                "vs_reference_high", "noise", "prompts", "rows"])
    for r in result.rows:
        d = r.vs_reference
        w.writerow([result.probe, r.metric, r.group, "" if r.lam is None else r.lam, r.value.estimate, r.value.low,
                    r.value.high, "" if d is None else d.estimate, "" if d is None else d.low,
                    "" if d is None else d.high, r.noise, r.value.n_clusters, r.n_rows])
    return buf.getvalue()


def _is_share(metric: str) -> bool:
    return not metric.startswith(NOT_SHARES)


def _panels(result: ProbeResult) -> list[str]:
    """The metrics to plot, in the probe's order (per-λ metrics when there are any), at most MAX_PANELS."""
    names = list(dict.fromkeys(r.metric for r in result.rows))
    per_lam = [m for m in names if any(r.metric == m and r.lam is not None for r in result.rows)]
    return (per_lam or names)[:MAX_PANELS]


def _worse(result: ProbeResult, metric: str) -> str | None:
    for m in result.metrics:
        if m.name == metric or (m.name.endswith("<judge>") and metric.startswith(m.name.split("<")[0])):
            return m.worse
    return None


def figure(result: ProbeResult) -> Figure:
    """Each metric vs λ (one panel per metric, one line per group) with 95% CI bars; per-judge bars when there is no λ."""
    panels = _panels(result)
    n = max(1, len(panels))
    ncols = 2 if n in (2, 4) else min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.4 * nrows + 0.5), layout="constrained")
    fig.suptitle(result.title)
    for k, metric in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        rows = [r for r in result.rows if r.metric == metric]
        groups = list(dict.fromkeys(r.group for r in rows))
        if all(r.lam is None for r in rows):
            _bars(ax, rows, groups)
        else:
            _lines(ax, rows, groups, result)
        worse = _worse(result, metric)
        ax.set_title(metric + (f"  (worse: {worse})" if worse else ""), fontsize=10)
        if _is_share(metric):
            ax.set_ylim(-0.04, 1.04)
        ax.grid(alpha=0.3)
    if not panels:
        fig.add_subplot(1, 1, 1).text(0.5, 0.5, "no metrics", ha="center")
    return fig


def _lines(ax, rows: list[MetricRow], groups: list[str], result: ProbeResult) -> None:
    lams = sorted({r.lam for r in rows if r.lam is not None})
    span = (max(lams) - min(lams)) if len(lams) > 1 else 1.0
    for g_i, g in enumerate(groups):
        mine = sorted((r for r in rows if r.group == g and r.lam is not None), key=lambda r: r.lam)
        offset = (g_i - (len(groups) - 1) / 2) * 0.012 * span  # side by side, so intervals do not hide each other
        xs = [r.lam + offset for r in mine]
        ys = [r.value.estimate for r in mine]
        lo = [max(0.0, r.value.estimate - r.value.low) if math.isfinite(r.value.low) else 0.0 for r in mine]
        hi = [max(0.0, r.value.high - r.value.estimate) if math.isfinite(r.value.high) else 0.0 for r in mine]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", ms=4, capsize=3, label=g or None)
    if result.reference_lambda is not None:
        ax.axvline(result.reference_lambda, color="grey", lw=0.8, ls=":")
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")  # λ = 1: the adapter as trained
    if lams:
        ax.set_xlim(min(lams) - 0.05 * span, max(lams) + 0.05 * span)  # every panel spans the whole grid
    ax.set_xlabel("λ  (0 = base, 1 = tuned, >1 = weaker KL)")
    if any(groups):
        ax.legend(fontsize=7, ncol=2)


def _bars(ax, rows: list[MetricRow], groups: list[str]) -> None:
    xs = list(range(len(groups)))
    ys = [next(r for r in rows if r.group == g).value for g in groups]
    err = [[max(0.0, v.estimate - v.low) if math.isfinite(v.low) else 0.0 for v in ys],
           [max(0.0, v.high - v.estimate) if math.isfinite(v.high) else 0.0 for v in ys]]
    ax.bar(xs, [v.estimate for v in ys], yerr=err, capsize=4, color="#7aa6c2")
    ax.set_xticks(xs, [g or "all" for g in groups])
    ax.axhline(0.5 if "wins" in rows[0].metric or "beats" in rows[0].metric else 0.0, color="grey", lw=0.8, ls=":")


def write_outputs(out: Path, result: ProbeResult, fig: Figure | None = None, extra: dict | None = None) -> list[Path]:
    """`out` (.json: the whole result, plus `extra`), the same stem .csv (metric rows) and .png (the figure)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = result.to_json() | (extra or {})
    out.write_text(json.dumps(payload, indent=1, ensure_ascii=False, allow_nan=False), encoding="utf-8")
    csv_path, png_path = out.with_suffix(".csv"), out.with_suffix(".png")
    csv_path.write_text(to_csv(result), encoding="utf-8")
    (fig or figure(result)).savefig(png_path, dpi=110)
    return [out, csv_path, png_path]
