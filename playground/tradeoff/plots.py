"""Figures for the trade-off explorer, built from `playground.tradeoff.sweep` rows (one dict per (λ, T)).

Every function returns a fresh `matplotlib.figure.Figure` (no pyplot global state, safe in threads):
`frontier_figure` (reward vs KL to the base model, one line per temperature), `diversity_figure`
(semantic diversity vs reward, Pareto-optimal settings ringed), `metrics_figure` (each metric vs λ)
and `overopt_figure` (training-judge and held-out-judge reward vs KL). `overoptimisation_warning` says
in words when the proxy keeps rising while the held-out judge stalls or falls (Gao et al. 2022).
`controls_figures` puts rows of several controls (λ mixing, weight scaling, best-of-n, prompt guidance) on the
same reward–KL, diversity–reward and proxy–held-out axes, with the Pareto front across controls.
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
    knob = KNOB.get(rows[0].get("control", "dera"), "lambda") if rows else "lambda"  # bon: vs n, cfg: vs γ
    for ax, (key, title) in zip(axes, METRICS):
        for t, group in groups.items():
            group = sorted(group, key=lambda r: _num(r.get(knob, 1)))
            ax.errorbar([_num(r.get(knob, 1)) for r in group], [_num(r.get(key)) for r in group], yerr=_yerr(group, key),
                        fmt="o-", ms=4, capsize=2, color=color(t), label=f"T = {t:g}")
        ax.set_title(title, fontsize=11)
        ax.grid(alpha=0.3)
    for ax in axes[-3:]:
        ax.set_xlabel({"lambda": "λ  (0 = base, 1 = tuned)", "n": "n (best-of-n)", "gamma": "γ (prompt guidance; 1 = plain)"}[knob])
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Key metrics vs {KNOB_SYMBOL[knob]} (bars: 95% interval over prompts)")
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
    """{"frontier", "diversity", "metrics", "overopt"} → Figure; rows of best-of-n or prompt guidance (or of several
    controls) get the every-control figures, whose x axes and labels follow each control's knob."""
    if any(r.get("control", "dera") in ("bon", "cfg") for r in rows) or len({r.get("control", "dera") for r in rows}) > 1:
        many = controls_figures(rows, judge, heldout)
        return {"frontier": many["controls_frontier"], "diversity": many["controls_diversity"],
                "metrics": metrics_figure(rows), "overopt": many["controls_overopt"]}
    return {"frontier": frontier_figure(rows, judge), "diversity": diversity_figure(rows, judge),
            "metrics": metrics_figure(rows), "overopt": overopt_figure(rows, judge, heldout)}


# --- every control on one frontier ---------------------------------------------------------------------------
MARKERS = {"dera": "o", "weights": "s", "bon": "^", "cfg": "D"}
KNOB = {"dera": "lambda", "weights": "lambda", "bon": "n", "cfg": "gamma"}  # the row key each control varies
KNOB_SYMBOL = {"lambda": "λ", "n": "n", "gamma": "γ"}


def knob_label(r: dict) -> str:
    """The setting a row stands for, by its control's knob: "λ=2", "n=4", "γ=1.5"."""
    key = KNOB.get(r.get("control", "dera"), "lambda")
    return f"{KNOB_SYMBOL[key]}={_num(r.get(key, 1)):g}"


def by_control(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """Rows grouped into one series per (control, policy λ for bon/cfg, T), each sorted by its knob."""
    groups: dict[str, list[dict]] = {}
    temps = {float(r["temperature"]) for r in rows}
    for r in rows:
        c = r.get("control", "dera")
        name = c if c in ("dera", "weights") else f"{c} (λ={_num(r.get('lambda')):g})"
        if len(temps) > 1:
            name += f", T={float(r['temperature']):g}"
        groups.setdefault(name, []).append(r)
    return {k: sorted(v, key=lambda r: _num(r.get(KNOB.get(r.get("control", "dera"), "lambda"), 1))) for k, v in groups.items()}


def kl_of(r: dict) -> float:
    """A row's KL to the base model per answer (nats): the sequence estimate every control reports (`kl_seq`)."""
    return _num(r.get("kl_seq"))


def cross_pareto(rows: Sequence[dict], other: str) -> list[int]:
    """Indices of rows no other row beats on reward and on `other`: "kl" (less is better) or "diversity" (more)."""
    from playground.tradeoff.metrics import pareto_front

    second = (lambda r: -kl_of(r)) if other == "kl" else (lambda r: _num(r.get("semantic_diversity")))
    return pareto_front([(_num(r.get("reward_mean")), second(r)) for r in rows])


def _err(group: Sequence[dict], key: str, lo: str, hi: str) -> list[list[float]]:
    below = [max(0.0, _num(r.get(key)) - _num(r.get(lo))) for r in group]
    above = [max(0.0, _num(r.get(hi)) - _num(r.get(key))) for r in group]
    return [[0.0 if math.isnan(v) else v for v in below], [0.0 if math.isnan(v) else v for v in above]]


def _series_colors(names: Sequence[str]) -> dict[str, tuple]:
    return {n: colormaps["tab10"](i % 10) for i, n in enumerate(names)}


def controls_frontier_figure(rows: Sequence[dict], judge: str = "training judge") -> Figure:
    """Reward vs KL to the base model (nats per answer) for every control on the same axes: 95% intervals over
    prompts on both, points labelled by their knob, best-of-n's analytic KL bound as hollow markers, and the
    Pareto front across controls (most reward for the least KL) as a dashed line."""
    fig = Figure(figsize=(7.2, 4.8), layout="constrained")
    ax = fig.add_subplot()
    groups = by_control(rows)
    colors = _series_colors(list(groups))
    for name, group in groups.items():
        c = group[0].get("control", "dera")
        xs, ys = [kl_of(r) for r in group], [_num(r["reward_mean"]) for r in group]
        ax.errorbar(xs, ys, xerr=_err(group, "kl_seq", "kl_seq_lo", "kl_seq_hi"),
                    yerr=_err(group, "reward_mean", "reward_lo", "reward_hi"), marker=MARKERS.get(c, "o"), capsize=3,
                    color=colors[name], label=name)
        for x, y, r in zip(xs, ys, group):
            if math.isfinite(x) and math.isfinite(y):
                ax.annotate(knob_label(r), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, alpha=0.8)
        if c == "bon":
            ax.scatter([_num(r.get("kl_bound")) for r in group], ys, marker="^", facecolors="none", edgecolors=colors[name],
                       s=50, label=f"{name}: bound log n − (n−1)/n")
    front = sorted((kl_of(rows[i]), _num(rows[i]["reward_mean"])) for i in cross_pareto(rows, "kl"))
    if front:
        ax.plot(*zip(*front), "--", color="0.3", lw=1.2, zorder=1, label="Pareto front (all controls)")
    ax.set(xlabel="KL to base model (nats per answer; BoN: estimated)", ylabel=f"reward ({judge})",
           title="Reward vs KL, every control (up and left is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def controls_diversity_figure(rows: Sequence[dict], judge: str = "training judge") -> Figure:
    """Meaning diversity vs reward for every control, 95% intervals on both; the Pareto front across controls."""
    fig = Figure(figsize=(7.2, 4.8), layout="constrained")
    ax = fig.add_subplot()
    groups = by_control(rows)
    colors = _series_colors(list(groups))
    for name, group in groups.items():
        xs, ys = [_num(r["reward_mean"]) for r in group], [_num(r["semantic_diversity"]) for r in group]
        ax.errorbar(xs, ys, xerr=_err(group, "reward_mean", "reward_lo", "reward_hi"),
                    yerr=_err(group, "semantic_diversity", "semantic_diversity_lo", "semantic_diversity_hi"),
                    marker=MARKERS.get(group[0].get("control", "dera"), "o"), capsize=3, color=colors[name], label=name)
        for x, y, r in zip(xs, ys, group):
            if math.isfinite(x) and math.isfinite(y):
                ax.annotate(knob_label(r), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, alpha=0.8)
    front = sorted((_num(rows[i]["reward_mean"]), _num(rows[i]["semantic_diversity"])) for i in cross_pareto(rows, "diversity"))
    if front:
        ax.plot(*zip(*front), "--", color="0.3", lw=1.2, zorder=1, label="Pareto front (all controls)")
    ax.set(xlabel=f"reward ({judge})", ylabel="meaning diversity (mean pairwise cosine distance)",
           title="Diversity vs reward, every control (up and right is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def controls_overopt_figure(rows: Sequence[dict], judge: str = "training judge", heldout: str = "held-out judge") -> Figure:
    """Per control, the held-out judge against the proxy (training) judge, 95% intervals on both: a series that
    moves right while falling is optimising its proxy, not the held-out goal (Gao et al. 2022)."""
    fig = Figure(figsize=(7.2, 4.8), layout="constrained")
    ax = fig.add_subplot()
    groups = by_control(rows)
    colors = _series_colors(list(groups))
    for name, group in groups.items():
        xs, ys = [_num(r["reward_mean"]) for r in group], [_num(r["heldout_reward_mean"]) for r in group]
        ax.errorbar(xs, ys, xerr=_err(group, "reward_mean", "reward_lo", "reward_hi"),
                    yerr=_err(group, "heldout_reward_mean", "heldout_reward_lo", "heldout_reward_hi"),
                    marker=MARKERS.get(group[0].get("control", "dera"), "o"), capsize=3, color=colors[name], label=name)
        for x, y, r in zip(xs, ys, group):
            if math.isfinite(x) and math.isfinite(y):
                ax.annotate(knob_label(r), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, alpha=0.8)
    ax.set(xlabel=f"proxy reward ({judge})", ylabel=f"held-out reward ({heldout})",
           title="Over-optimisation per control: proxy vs held-out judge")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def controls_figures(rows: Sequence[dict], judge: str = "training judge", heldout: str = "held-out judge") -> dict[str, Figure]:
    """{"controls_frontier", "controls_diversity", "controls_overopt"} → Figure, for rows of several controls."""
    return {"controls_frontier": controls_frontier_figure(rows, judge),
            "controls_diversity": controls_diversity_figure(rows, judge),
            "controls_overopt": controls_overopt_figure(rows, judge, heldout)}
