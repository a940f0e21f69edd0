"""Judge agreement, Bradley–Terry and the length effect on hand-made tables and simulated voters."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from playground.feedback.analysis import bradley_terry, fit_bradley_terry, judge_agreement, length_effect, report
from playground.feedback.voters import SettingVoter
from tests.feedback.factory import make_vote, settings

WILSON_7_OF_10 = (0.39677814746114537, 0.8922087325936989)  # (p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)


def _scored(outcome: str, score_a: float, score_b: float, i: int = 0, **changes):
    return make_vote(f"v{i}", outcome=outcome, judge_scores={"judge": [score_a, score_b]}, **changes)


def test_judge_agreement_on_a_hand_made_table():
    votes = ([_scored("a", 0.9, 0.1, i) for i in range(4)]  # agree: chose A, judge scores A higher
             + [_scored("b", 0.2, 0.8, 10 + i) for i in range(3)]  # agree
             + [_scored("a", 0.1, 0.5, 20 + i) for i in range(2)]  # disagree
             + [_scored("b", 0.7, 0.3, 30)]  # disagree
             + [_scored("a", 0.5, 0.5, 40 + i) for i in range(2)]  # judge tie: excluded
             + [_scored("tie", 0.9, 0.1, 50), _scored("both_bad", 0.9, 0.1, 51)])  # not decisive: ignored
    [(name, agreement)] = judge_agreement(votes).items()
    assert name == "judge"
    assert (agreement.agree, agreement.n, agreement.judge_ties) == (7, 10, 2)
    assert agreement.interval.estimate == pytest.approx(0.7)
    assert (agreement.interval.low, agreement.interval.high) == pytest.approx(WILSON_7_OF_10, abs=1e-12)


def test_bradley_terry_two_arms_is_the_log_odds_and_ties_count_half():
    # A beats B 3 times, B beats A once: θ_A − θ_B = log(3/1) (prior → 0).
    i, j = np.zeros(4, dtype=int), np.ones(4, dtype=int)
    theta = fit_bradley_terry(2, i, j, np.array([1.0, 1.0, 1.0, 0.0]), prior=1e-9)
    assert theta[0] - theta[1] == pytest.approx(math.log(3), abs=1e-6)
    # Two ties and one win each: even.
    theta = fit_bradley_terry(2, i, j, np.array([0.5, 0.5, 1.0, 0.0]), prior=1e-9)
    assert theta[0] == pytest.approx(theta[1], abs=1e-9)
    # A perfect record stays finite thanks to the prior.
    assert np.all(np.isfinite(fit_bradley_terry(2, i, j, np.ones(4))))


def _simulated_duels(voter, n: int, seed: int = 0, lambdas=(0.0, 0.5, 1.0, 2.0)):
    rng = np.random.default_rng(seed)
    votes = []
    for k in range(n):
        la, lb = rng.choice(lambdas, size=2, replace=False)
        sa, sb = settings(float(la)), settings(float(lb))
        outcome = voter.vote("prompt", "x", "y", sa, sb, rng)
        votes.append(make_vote(f"sim-{k}", settings_a=sa, settings_b=sb, outcome=outcome, source="simulated"))
    return votes


def test_bradley_terry_recovers_the_simulated_voters_best_setting_through_noise():
    votes = _simulated_duels(SettingVoter(best_lambda=1.0, noise=0.2), n=400)
    fit = bradley_terry(votes, n_boot=300, seed=1)
    assert fit is not None and fit.reference == (0.0, 0.7)  # the base model anchors θ = 0
    best = fit.arms[0]
    assert best.arm == (1.0, 0.7)  # highest θ
    assert best.rank_low == 1  # the rank interval contains "best"
    assert best.p_best > 0.9
    assert best.low > 0  # clearly stronger than the base model: its interval excludes θ_ref = 0
    assert all(best.theta > a.high for a in fit.arms[1:] if a.arm in {(0.0, 0.7), (2.0, 0.7)})
    by_arm = {a.arm: a for a in fit.arms}
    assert by_arm[(0.0, 0.7)].theta == 0 and by_arm[(0.0, 0.7)].low == 0
    assert sum(a.n for a in fit.arms) == 2 * fit.n_comparisons


def test_bradley_terry_drops_both_bad_and_same_arm_votes():
    votes = [make_vote("1", outcome="both_bad"), make_vote("2", settings_a=settings(1.0), settings_b=settings(1.0)),
             make_vote("3", outcome="a"), make_vote("4", outcome="tie")]
    fit = bradley_terry(votes, n_boot=20)
    assert (fit.n_comparisons, fit.dropped_both_bad, fit.dropped_same_arm) == (2, 1, 1)
    strong = next(a for a in fit.arms if a.arm == (1.0, 0.7))  # A (λ = 1) won once and tied once
    assert (strong.wins, strong.n, strong.win_rate) == (1.5, 2, 0.75)
    assert bradley_terry([make_vote("x", outcome="both_bad")]) is None


def test_length_effect_on_a_hand_made_table():
    long_a = {"tokens_a": 30, "tokens_b": 10}
    votes = ([make_vote(f"a{i}", outcome="a", judge_scores={"j": [1, 0]}, **long_a) for i in range(3)]  # longer wins
             + [make_vote("b0", outcome="b", judge_scores={"j": [1, 0]}, **long_a)]  # shorter wins; judge longer
             + [make_vote("e0", outcome="a", judge_scores={"j": [0, 1]}, tokens_a=5, tokens_b=5)]  # equal: excluded
             + [make_vote("t0", outcome="tie", judge_scores={"j": [0, 1]}, **long_a)])  # judge only: shorter
    effect = length_effect(votes)
    human, judge = effect["human"], effect["j"]
    assert (human.longer_wins, human.n, human.equal_length) == (3, 4, 1)
    assert human.interval.estimate == 0.75
    assert (judge.longer_wins, judge.n, judge.equal_length) == (4, 5, 1)
    # Characters when token counts are missing.
    chars = length_effect([make_vote("c", outcome="b", answer_a="short", answer_b="much longer", tokens_a=0)])
    assert chars["human"].longer_wins == 1


def test_report_is_json_safe_and_counts_everything():
    votes = _simulated_duels(SettingVoter(best_lambda=2.0, noise=0.1), n=60) + [
        make_vote("h1", outcome="tie"), make_vote("h2", outcome="both_bad", session_hash="ab" * 32)]
    out = report(votes, n_boot=50)
    json.dumps(out, allow_nan=False)
    assert out["counts"]["votes"] == 62 and out["counts"]["sessions"] == 2
    assert out["counts"]["sources"] == {"duel": 2, "simulated": 60}
    assert out["bradley_terry"]["best"] == "λ=2, T=0.7"
    assert report(votes, sources=["duel"], n_boot=10)["counts"]["votes"] == 2
    empty = report([], n_boot=10)
    json.dumps(empty, allow_nan=False)
    assert empty["bradley_terry"] is None and empty["length_effect"]["human"]["share"] is None
