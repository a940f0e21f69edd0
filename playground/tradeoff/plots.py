"""Figures for the trade-off explorer, built from `playground.tradeoff.sweep` rows (one dict per (λ, T)).

Every function returns a fresh `matplotlib.figure.Figure` (no pyplot global state, safe in threads):
`frontier_figure` (reward vs KL to the base model, one line per temperature), `diversity_figure`
(semantic diversity vs reward, Pareto-optimal settings ringed), `metrics_figure` (each metric vs λ)
and `overopt_figure` (training-judge and held-out-judge reward vs KL). `overoptimisation_warning` says
in words when the proxy keeps rising while the held-out judge stalls or falls (Gao et al. 2022).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

CMAP = "plasma"
METRICS = (("reward_mean", "reward (training judge)"), ("heldout_reward_mean", "held-out: does it answer?"),
           ("kl_to_base", "KL to base (nats/token)"), ("semantic_diversity", "meaning diversity"),
           ("boilerplate", "boilerplate share"), ("length_mean", "length (tokens)"))
BANDS = {"reward_mean": ("reward_lo", "reward_hi"), "heldout_reward_mean": ("heldout_reward_lo", "heldout_reward_hi"),
         "semantic_diversity": ("semantic_diversity_lo", "semantic_diversity_hi")}  # 95% intervals over prompts


def by_temperature(rows: Sequence[dict]) -> dict[float, list[dict]]:
    """Rows grouped by temperature (ascending), each group sorted by λ."""
    groups: dict[float, list[dict]] = {}
    for r in rows:
        groups.setdefault(float(r["temperature"]), []).append(r)
    return {t: sorted(groups[t], key=lambda r: r["lambda"]) for t in sorted(groups)}


def _color(rows: Sequence[dict]) -> Callable[[float], tuple]:
    """Temperature → colour (plasma, its pale top end left out)."""
    temps = [float(r["temperature"]) for r in rows] or [0.0]
    norm = Normalize(min(temps), max(temps) if max(temps) > min(temps) else min(temps) + 1.0)
    return lambda t: colormaps[CMAP](0.85 * norm(t))


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def _label_lambdas(ax, xs: Sequence[float], ys: Sequence[float], lams: Sequence[float]) -> None:
    for x, y, lam in zip(xs, ys, lams):
        if math.isfinite(x) and math.isfinite(y):
            ax.annotate(f"λ={lam:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, alpha=0.8)


def _yerr(group: Sequence[dict], key: str) -> list[list[float]] | None:
    """Asymmetric error bars [[below], [above]] from the row's 95% interval columns, or None."""
    if key not in BANDS:
        return None
    lo, hi = BANDS[key]
    below = [max(0.0, _num(r.get(key)) - _num(r.get(lo))) for r in group]
    above = [max(0.0, _num(r.get(hi)) - _num(r.get(key))) for r in group]
    return [[0.0 if math.isnan(v) else v for v in below], [0.0 if math.isnan(v) else v for v in above]]


def frontier_figure(rows: Sequence[dict], judge: str = "training judge") -> Figure:
    """Reward vs mean per-token KL(π_λ‖π_base), one line per temperature, 95% CI bars, points labelled by λ."""
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    color = _color(rows)
    for t, group in by_temperature(rows).items():
        xs, ys = [_num(r["kl_to_base"]) for r in group], [_num(r["reward_mean"]) for r in group]
        ax.errorbar(xs, ys, yerr=_yerr(group, "reward_mean"), marker="o", capsize=3,
                    color=color(t), label=f"T = {t:g}")
        _label_lambdas(ax, xs, ys, [r["lambda"] for r in group])
    ax.set(xlabel="KL to base model (nats per token)", ylabel=f"reward ({judge})",
           title="Reward vs KL: the alignment frontier")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def diversity_figure(rows: Sequence[dict], judge: str = "training judge") -> Figure:
    """Semantic diversity vs reward, coloured by temperature; Pareto-optimal settings ringed and joined."""
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    color = _color(rows)
    xs, ys = [_num(r["reward_mean"]) for r in rows], [_num(r["semantic_diversity"]) for r in rows]
    for t, group in by_temperature(rows).items():
        ax.scatter([_num(r["reward_mean"]) for r in group], [_num(r["semantic_diversity"]) for r in group],
                   color=color(t), s=40, zorder=3, label=f"T = {t:g}")
    front = sorted((x, y) for x, y, r in zip(xs, ys, rows) if r.get("pareto"))
    if front:
        ax.plot(*zip(*front), "--", color="0.4", lw=1, zorder=2, label="Pareto front")
        ax.scatter(*zip(*front), s=160, facecolors="none", edgecolors="black", lw=1.4, zorder=4, label="Pareto-optimal")
    ax.legend(fontsize=8)
    _label_lambdas(ax, xs, ys, [r["lambda"] for r in rows])
    ax.set(xlabel=f"reward ({judge})", ylabel="semantic diversity (mean pairwise cosine distance)",
           title="Diversity vs reward (up and right is better)")
    ax.grid(alpha=0.3)
    return fig


def metrics_figure(rows: Sequence[dict]) -> Figure:
    """Small multiples: each metric vs λ, one line per temperature."""
    fig = Figure(figsize=(10, 6), layout="constrained")
    axes = fig.subplots(2, 3, sharex=True).ravel()
    color = _color(rows)
    groups = by_temperature(rows)
    for ax, (key, title) in zip(axes, METRICS):
        for t, group in groups.items():
            ax.errorbar([r["lambda"] for r in group], [_num(r.get(key)) for r in group], yerr=_yerr(group, key),
                        fmt="o-", ms=4, capsize=2, color=color(t), label=f"T = {t:g}")
        ax.set_title(title, fontsize=11)
        ax.grid(alpha=0.3)
    for ax in axes[-3:]:
        ax.set_xlabel("λ  (0 = base, 1 = tuned)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Key metrics vs λ (bars: 95% interval over prompts)")
    return fig


def overopt_figure(rows: Sequence[dict], judge: str = "training judge", heldout: str = "held-out judge") -> Figure:
    """Training (proxy) judge (solid, left axis) and held-out judge (dashed, right axis) vs KL, per temperature."""
    fig = Figure(figsize=(6.8, 4.4), layout="constrained")
    ax = fig.add_subplot()
    ax2 = ax.twinx()
    color = _color(rows)
    for t, group in by_temperature(rows).items():
        group = sorted(group, key=lambda r: _num(r["kl_to_base"]))
        xs = [_num(r["kl_to_base"]) for r in group]
        ax.plot(xs, [_num(r["reward_mean"]) for r in group], "o-", color=color(t), label=f"{judge}, T = {t:g}")
        ax2.plot(xs, [_num(r["heldout_reward_mean"]) for r in group], "s--", color=color(t), alpha=0.8,
                 label=f"{heldout}, T = {t:g}")
    ax.set(xlabel="KL to base model (nats per token)", ylabel=f"proxy reward ({judge}, solid)")
    ax2.set_ylabel(f"held-out reward ({heldout}, dashed)")
    warning = overoptimisation_warning(rows, judge, heldout)
    ax.set_title("Over-optimisation check: " + ("proxy ↑, held-out stalls or falls" if warning else "no sign"), fontsize=10)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    fig.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="outside lower center", ncols=2)
    ax.grid(alpha=0.3)
    return fig


def _group_warning(t: float, group: Sequence[dict], judge: str, heldout: str) -> str | None:
    """Reward hacking, not a trade-off: the first λ where the held-out judge falls significantly below λ = 0
    ("down": its paired 95% interval excludes zero) while the proxy is significantly above it ("up")."""
    for r in sorted(group, key=lambda r: r["lambda"]):
        if r.get("heldout_vs_base") == "down" and r.get("reward_vs_base") == "up":
            return (f"T = {t:g}: from λ = {r['lambda']:g} (KL ≈ {_num(r['kl_to_base']):.3g} nats/token) the training judge "
                    f"'{judge}' is up ({_num(r['reward_mean']):+.3g}) while the held-out judge '{heldout}' has fallen "
                    f"({_num(r['heldout_reward_mean']):+.3g}), both beyond noise.")
    return None


def overoptimisation_warning(rows: Sequence[dict], judge: str = "training judge",
                             heldout: str = "held-out judge") -> str | None:
    """A warning in words when, at some temperature, the proxy reward rises significantly against λ = 0 while the
    held-out "does it answer?" judge falls significantly (Gao et al. 2022: gold reward peaks and falls while the
    proxy keeps rising); None when every change is a plain trade-off or within noise."""
    found = [w for t, g in by_temperature(rows).items() if (w := _group_warning(t, g, judge, heldout))]
    if not found:
        return None
    return ("Reward hacking: " + " ".join(found) + " There the adapter pleases its proxy judge instead of answering "
            "(see the example answers): prefer a larger KL strength β (smaller λ).")


def all_figures(rows: Sequence[dict], judge: str = "training judge", heldout: str = "held-out judge") -> dict[str, Figure]:
    """{"frontier", "diversity", "metrics", "overopt"} → Figure."""
    return {"frontier": frontier_figure(rows, judge), "diversity": diversity_figure(rows, judge),
            "metrics": metrics_figure(rows), "overopt": overopt_figure(rows, judge, heldout)}
