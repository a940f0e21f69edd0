"""Trade-off figures build from sweep rows; the over-optimisation warning on hand-made rows."""
from __future__ import annotations

import io

import pytest
from matplotlib.figure import Figure

from playground.tradeoff.plots import all_figures, overoptimisation_warning


def _label(diff: float, noise: float) -> str:
    return "within noise" if abs(diff) <= noise else ("up" if diff > 0 else "down")


def rows_for(proxy, heldout, t=1.0, ci=0.01, lambdas=None):
    """Hand-made sweep rows: KL grows with λ; proxy/held-out rewards as given, 95% interval ± `ci`; a change against
    λ = 0 is "within noise" when it is at most 2·ci (as a paired bootstrap would say)."""
    lambdas = lambdas or [0.0, 0.5, 1.0, 2.0, 4.0][: len(proxy)]
    return [{"lambda": lam, "kl_strength": 0.1 / lam if lam else None, "temperature": t, "reward_mean": p,
             "reward_lo": p - ci, "reward_hi": p + ci, "reward_vs_base": _label(p - proxy[0], 2 * ci),
             "heldout_reward_mean": h, "heldout_reward_lo": h - ci, "heldout_reward_hi": h + ci,
             "heldout_vs_base": _label(h - heldout[0], 2 * ci), "kl_to_base": 0.05 * lam,
             "kl_seq": 3.0 * lam, "entropy": 2.0 - 0.2 * lam, "length_mean": 40 + lam, "distinct_1": 0.6,
             "distinct_2": 0.8 - 0.1 * lam, "boilerplate": 0.1 * lam, "self_bleu": 0.2 + 0.1 * lam,
             "semantic_diversity": 0.5 - 0.1 * lam, "semantic_diversity_lo": 0.45 - 0.1 * lam,
             "semantic_diversity_hi": 0.55 - 0.1 * lam, "pareto": lam in (0.0, 4.0)}
            for lam, p, h in zip(lambdas, proxy, heldout)]


def test_figures_build_and_render():
    rows = rows_for([0.1, 0.3, 0.5, 0.6, 0.7], [0.1, 0.2, 0.25, 0.2, 0.1])
    rows += rows_for([0, 0.2, 0.4, 0.5, 0.6], [0, 0.1, 0.1, 0.1, 0.1], t=0.7)
    rows[3]["reward_mean"] = float("nan")  # a missing value must not break a figure
    figures = all_figures(rows, "upbeat", "concise")
    assert set(figures) == {"frontier", "diversity", "metrics", "overopt"}
    for fig in figures.values():
        assert isinstance(fig, Figure)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=50)
        assert buf.tell() > 1000
    assert len(figures["metrics"].axes) == 6
    assert "Pareto-optimal" in [t.get_text() for t in figures["diversity"].axes[0].get_legend().get_texts()]


def test_figures_with_a_single_setting():
    for fig in all_figures(rows_for([0.1], [0.1])).values():
        fig.savefig(io.BytesIO(), format="png", dpi=40)


def test_no_warning_when_both_judges_rise():
    assert overoptimisation_warning(rows_for([0.1, 0.2, 0.3, 0.4, 0.5], [0.0, 0.1, 0.2, 0.3, 0.35])) is None


def test_warning_when_heldout_falls_below_base_while_proxy_rises():
    msg = overoptimisation_warning(rows_for([0.1, 0.3, 0.5, 0.6, 0.7], [0.2, 0.25, 0.2, 0.1, 0.05]), "upbeat", "on_topic")
    assert msg is not None and "Reward hacking" in msg and "λ = 2" in msg
    assert "'upbeat'" in msg and "'on_topic'" in msg and "T = 1" in msg


def test_no_warning_for_a_plain_trade_off_or_a_change_within_noise():
    # held-out falls a little but within noise of λ = 0: a trade-off, not hacking
    assert overoptimisation_warning(rows_for([0.1, 0.3, 0.5, 0.6, 0.7], [0.2, 0.2, 0.19, 0.185, 0.18], ci=0.02)) is None
    # held-out falls significantly, but the proxy did not rise beyond noise
    assert overoptimisation_warning(rows_for([0.1, 0.1, 0.11, 0.1, 0.1], [0.2, 0.1, 0.0, -0.1, -0.2], ci=0.02)) is None


def test_warning_names_only_the_affected_temperature():
    rows = rows_for([0.1, 0.2, 0.3, 0.4, 0.5], [0.0, 0.1, 0.2, 0.3, 0.4], t=0.7)
    rows += rows_for([0.1, 0.3, 0.5, 0.6, 0.7], [0.1, 0.3, 0.2, 0.05, 0.0], t=1.2)
    msg = overoptimisation_warning(rows)
    assert msg is not None and "T = 1.2" in msg and "T = 0.7" not in msg


@pytest.mark.parametrize("order", [list, lambda r: list(reversed(r))])
def test_warning_does_not_depend_on_row_order(order):
    rows = rows_for([0.1, 0.3, 0.5, 0.6, 0.7], [0.2, 0.2, 0.25, 0.15, 0.05])
    assert overoptimisation_warning(order(rows)) == overoptimisation_warning(rows)
