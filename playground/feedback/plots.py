"""The Bradley–Terry figure of the Feedback tab and `models/simulate_votes.py`: θ per (λ, T) arm with its 95%
bootstrap interval, built from `analysis.report(...)["bradley_terry"]`.

Returns a fresh `matplotlib.figure.Figure` (no pyplot global state, safe in threads).
"""
from __future__ import annotations

from typing import Any

from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure


def bradley_terry_figure(bt: dict[str, Any] | None, title: str = "Bradley–Terry strength per setting") -> Figure:
    """θ of each arm (reference arm = 0) against λ, one colour per temperature, with 95% CI bars.

    `bt` is the "bradley_terry" entry of `analysis.report` (None: a figure saying there is nothing to fit yet).
    P(A beats B) = σ(θ_A − θ_B), so a gap of 1 in θ is a 73% win rate."""
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.add_subplot()
    if not bt or not bt.get("arms"):
        ax.text(0.5, 0.5, "Not enough votes between different settings yet", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    arms = bt["arms"]
    temps = sorted({float(a["temperature"]) for a in arms})
    norm = Normalize(min(temps), max(temps) if len(temps) > 1 else min(temps) + 1.0)
    width = 0.06 * max(1.0, max(float(a["lambda"]) for a in arms) - min(float(a["lambda"]) for a in arms))
    for k, t in enumerate(temps):
        group = sorted((a for a in arms if float(a["temperature"]) == t), key=lambda a: a["lambda"])
        shift = (k - (len(temps) - 1) / 2) * width  # side by side when several temperatures share a λ
        x = [float(a["lambda"]) + shift for a in group]
        y = [a["theta"] for a in group]
        low = [a["theta"] - a["low"] if a["low"] is not None else 0.0 for a in group]
        high = [a["high"] - a["theta"] if a["high"] is not None else 0.0 for a in group]
        color = colormaps["plasma"](0.85 * norm(t))
        ax.errorbar(x, y, yerr=[low, high], fmt="o-", color=color, capsize=4, label=f"T = {t:g}")
        for xi, a in zip(x, group, strict=True):
            ax.annotate(f"n={a['n']}", (xi, a["theta"]), textcoords="offset points", xytext=(6, -12), fontsize=7,
                        color="0.35")
    ax.axhline(0.0, color="0.6", lw=0.8, ls="--")
    ax.set_xlabel("λ (0 = base model, 1 = tuned as trained)")
    ax.set_ylabel(f"θ (reference {bt['reference']} = 0)")
    ax.set_title(f"{title}\n{bt['n_comparisons']} comparisons; bars: 95% bootstrap CI over votes", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return fig
