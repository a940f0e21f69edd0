"""The Bradley–Terry figure: one point with 95% CI bars per (λ, T) arm, from `analysis.report`."""
from __future__ import annotations

from playground.feedback.analysis import report
from playground.feedback.plots import bradley_terry_figure
from tests.feedback.factory import make_vote, settings


def test_one_errorbar_point_per_arm_and_an_empty_figure_without_votes():
    votes = [make_vote(f"k{i}", settings_a=settings(lam, temperature=t), settings_b=settings(0.0, temperature=t),
                       outcome="ab"[i % 3 == 0]) for i, (lam, t) in enumerate([(1.0, 0.7), (2.0, 0.7), (1.0, 1.0)] * 6)]
    bt = report(votes, n_boot=50)["bradley_terry"]
    fig = bradley_terry_figure(bt)
    ax = fig.axes[0]
    points = sum(len(line.get_xdata()) for line in ax.get_lines() if line.get_marker() == "o")
    assert points == len(bt["arms"]) == 5  # λ 0, 1, 2 at T 0.7; λ 0, 1 at T 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["T = 0.7", "T = 1"]
    assert "reference" in ax.get_ylabel()
    empty = bradley_terry_figure(None)
    assert "Not enough votes" in empty.axes[0].texts[0].get_text()
