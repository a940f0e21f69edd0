"""What the votes say: judge–human agreement, Bradley–Terry strengths of settings, and the length effect.

Every share comes with a Wilson 95% interval and every strength with a bootstrap interval over votes
(`playground.intervals`). Pure numpy; deterministic for a given seed. `report` returns JSON-safe dicts (NaN →
None) for the UI and the CLI.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from playground.feedback.vote import Vote
from playground.intervals import Interval, wilson

Arm = tuple[float, float]  # (λ, temperature): one decoding setting
DECISIVE = ("a", "b")
DEFAULT_PRIOR = 0.1  # L2 precision α on θ (a N(0, 1/α) prior, sd ≈ 3.2): identifies θ, bounds a perfect record
DEFAULT_BOOT = 1000


def arm_of(settings: Mapping[str, Any]) -> Arm:
    """The arm of one answer's settings: (λ, temperature), rounded to 6 decimals."""
    return round(float(settings["lambda"]), 6), round(float(settings["temperature"]), 6)


def arm_label(arm: Arm) -> str:
    return f"λ={arm[0]:g}, T={arm[1]:g}"


# --- (a) judge agreement -------------------------------------------------------------------------------

@dataclass(frozen=True)
class JudgeAgreement:
    """How often a judge prefers the answer a human chose: agree / n with a Wilson interval.

    Only decisive human votes (outcome "a" or "b") that the judge scored count. The judge prefers the human's
    choice when its score for the chosen answer is strictly higher. Equal judge scores (a judge tie) are
    EXCLUDED from n and reported in `judge_ties`: a judge that cannot separate the answers neither agrees nor
    disagrees.
    """

    judge: str
    agree: int
    n: int
    judge_ties: int
    interval: Interval


def judge_agreement(votes: Iterable[Vote]) -> dict[str, JudgeAgreement]:
    """Per judge (sorted by name): agreement with decisive human votes."""
    agree: Counter[str] = Counter()
    n: Counter[str] = Counter()
    ties: Counter[str] = Counter()
    for v in votes:
        if v.outcome not in DECISIVE:
            continue
        for judge, (score_a, score_b) in v.judge_scores.items():
            if score_a == score_b:
                ties[judge] += 1
                continue
            n[judge] += 1
            agree[judge] += (score_a > score_b) == (v.outcome == "a")
    return {j: JudgeAgreement(j, agree[j], n[j], ties[j], wilson(agree[j], n[j])) for j in sorted(n | ties)}


# --- (b) Bradley–Terry over settings arms --------------------------------------------------------------

@dataclass(frozen=True)
class ArmStrength:
    """One arm's Bradley–Terry strength θ (reference arm = 0) with its bootstrap 95% interval.

    `rank_low`..`rank_high` is the 95% bootstrap interval of its rank (1 = strongest); `p_best` the share of
    bootstrap fits in which it is the strongest. `wins` counts ties as ½; win_rate = wins / n.
    """

    arm: Arm
    theta: float
    low: float
    high: float
    rank_low: int
    rank_high: int
    p_best: float
    wins: float
    n: int
    win_rate: float


@dataclass(frozen=True)
class BradleyTerryFit:
    arms: list[ArmStrength]  # strongest first
    reference: Arm
    n_comparisons: int
    dropped_both_bad: int
    dropped_same_arm: int

    @property
    def best(self) -> Arm:
        return self.arms[0].arm


def comparisons(votes: Iterable[Vote], arm: Callable[[Mapping[str, Any]], Arm] = arm_of
                ) -> tuple[list[Arm], np.ndarray, np.ndarray, np.ndarray, Counter[str]]:
    """(sorted arms, index of A's arm, index of B's arm, y = 1 A won / ½ tie / 0 B won, drop counts)."""
    rows: list[tuple[Arm, Arm, float]] = []
    dropped: Counter[str] = Counter()
    for v in votes:
        if v.outcome == "both_bad":
            dropped["both_bad"] += 1
            continue
        a, b = arm(v.settings_a), arm(v.settings_b)
        if a == b:  # says nothing about a difference of strengths
            dropped["same_arm"] += 1
            continue
        rows.append((a, b, {"a": 1.0, "b": 0.0, "tie": 0.5}[v.outcome]))
    arms = sorted({r[0] for r in rows} | {r[1] for r in rows})
    index = {a: i for i, a in enumerate(arms)}
    i = np.array([index[r[0]] for r in rows], dtype=np.int64)
    j = np.array([index[r[1]] for r in rows], dtype=np.int64)
    return arms, i, j, np.array([r[2] for r in rows], dtype=np.float64), dropped


def fit_bradley_terry(n_arms: int, i: np.ndarray, j: np.ndarray, y: np.ndarray, prior: float = DEFAULT_PRIOR,
                      tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """Maximum a posteriori θ of P(i beats j) = σ(θ_i − θ_j), with a tie counted as ½ a win each way:

        maximise  Σ_k [y_k log σ(θ_{i_k} − θ_{j_k}) + (1 − y_k) log σ(θ_{j_k} − θ_{i_k})] − (α/2) ‖θ‖²

    by Newton's method (the objective is strictly concave for α > 0). With W[a, b] = wins of a over b and
    N = W + Wᵀ: gradient g_a = Σ_b (W[a,b] − N[a,b] p_ab) − α θ_a, p_ab = σ(θ_a − θ_b); the negative Hessian
    is the Laplacian of the weights N[a,b] p_ab (1 − p_ab) plus αI. The likelihood only sees differences,
    so the prior alone fixes the offset: the result sums to 0 (shift it to anchor a reference arm).
    """
    wins = np.zeros((n_arms, n_arms))
    np.add.at(wins, (i, j), y)
    np.add.at(wins, (j, i), 1.0 - y)
    games = wins + wins.T

    def objective(t: np.ndarray) -> float:
        d = t[:, None] - t[None, :]
        return float(-(wins * np.logaddexp(0.0, -d)).sum() - prior / 2 * (t @ t))

    theta = np.zeros(n_arms)
    value = objective(theta)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
        grad = (wins - games * p).sum(axis=1) - prior * theta
        c = games * p * (1.0 - p)
        neg_hessian = np.diag(c.sum(axis=1)) - c + prior * np.eye(n_arms)
        step = np.linalg.solve(neg_hessian, grad)
        for _ in range(30):  # step halving keeps every iterate an improvement
            new_value = objective(theta + step)
            if new_value >= value - 1e-12:
                break
            step = step / 2
        theta, value = theta + step, new_value
        if np.max(np.abs(step)) < tol:
            break
    return theta


def bradley_terry(votes: Sequence[Vote], reference: Arm | None = None, prior: float = DEFAULT_PRIOR,
                  n_boot: int = DEFAULT_BOOT, seed: int = 0,
                  arm: Callable[[Mapping[str, Any]], Arm] = arm_of) -> BradleyTerryFit | None:
    """Bradley–Terry strengths of the settings arms, θ_reference = 0 (default: the arm with the lowest
    (λ, temperature), usually the base model), 95% percentile intervals from `n_boot` resamples of the
    comparisons (votes) with replacement. "both_bad" votes and votes between one arm and itself are
    dropped. None when fewer than two arms were compared."""
    arms, i, j, y, dropped = comparisons(votes, arm)
    if len(arms) < 2:
        return None
    ref = reference if reference is not None else arms[0]
    if ref not in arms:
        raise ValueError(f"reference arm {ref} has no comparisons; arms: {arms}")
    r = arms.index(ref)
    theta = fit_bradley_terry(len(arms), i, j, y, prior)
    theta = theta - theta[r]
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, len(arms)))
    for b in range(n_boot):
        pick = rng.integers(0, len(y), len(y))
        t = fit_bradley_terry(len(arms), i[pick], j[pick], y[pick], prior)
        boot[b] = t - t[r]
    low, high = np.percentile(boot, [2.5, 97.5], axis=0) if n_boot else (np.full(len(arms), np.nan),) * 2
    ranks = 1 + (boot[:, None, :] > boot[:, :, None]).sum(axis=2)  # ranks[b, a]: arms stronger than a, + 1
    best = np.argmax(boot, axis=1)
    out = []
    for a, name in enumerate(arms):
        n = int((i == a).sum() + (j == a).sum())
        wins = float(y[i == a].sum() + (1.0 - y[j == a]).sum())
        rank_low, rank_high = (np.quantile(ranks[:, a], [0.025, 0.975], method="inverted_cdf") if n_boot
                               else (0, 0))
        out.append(ArmStrength(name, float(theta[a]), float(low[a]), float(high[a]), int(rank_low), int(rank_high),
                               float(np.mean(best == a)) if n_boot else math.nan, wins, n, wins / n))
    out.sort(key=lambda s: -s.theta)
    return BradleyTerryFit(out, ref, len(y), dropped["both_bad"], dropped["same_arm"])


# --- (c) length effect ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class LengthEffect:
    """Share of decisions won by the longer answer (0.5 = no length preference), with a Wilson interval.

    Length is tokens when both answers have a token count, else characters. Pairs of equal length are
    excluded (`equal_length`). Humans: decisive votes. A judge: every pair it scored with unequal scores
    (its own decision, whatever the human said).
    """

    who: str
    longer_wins: int
    n: int
    equal_length: int
    interval: Interval


def _lengths(v: Vote) -> tuple[int, int]:
    if v.tokens_a > 0 and v.tokens_b > 0:
        return v.tokens_a, v.tokens_b
    return len(v.answer_a), len(v.answer_b)


def length_effect(votes: Iterable[Vote]) -> dict[str, LengthEffect]:
    """{"human": ..., judge name: ...}: how often the longer answer is preferred."""
    longer: Counter[str] = Counter()
    n: Counter[str] = Counter()
    equal: Counter[str] = Counter()
    for v in votes:
        len_a, len_b = _lengths(v)
        decisions = [("human", v.outcome == "a")] if v.outcome in DECISIVE else []
        decisions += [(j, s[0] > s[1]) for j, s in v.judge_scores.items() if s[0] != s[1]]
        for who, chose_a in decisions:
            if len_a == len_b:
                equal[who] += 1
                continue
            n[who] += 1
            longer[who] += chose_a == (len_a > len_b)
    names = ["human"] + sorted(k for k in n | equal if k != "human")
    return {w: LengthEffect(w, longer[w], n[w], equal[w], wilson(longer[w], n[w])) for w in names}


# --- (d) report ----------------------------------------------------------------------------------------

def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _share(interval: Interval) -> dict[str, float | None]:
    return {"share": _num(interval.estimate), "low": _num(interval.low), "high": _num(interval.high)}


def report(votes: Sequence[Vote], sources: Iterable[str] | None = None, n_boot: int = DEFAULT_BOOT,
           seed: int = 0) -> dict[str, Any]:
    """Counts, judge agreement, Bradley–Terry arms and length effect as JSON-safe types (NaN → None).
    `sources` keeps only votes of those sources (e.g. ("duel",) to leave out simulated votes)."""
    if sources is not None:
        keep = set(sources)
        votes = [v for v in votes if v.source in keep]
    fit = bradley_terry(votes, n_boot=n_boot, seed=seed)
    return {
        "counts": {
            "votes": len(votes),
            "decisive": sum(v.outcome in DECISIVE for v in votes),
            "sessions": len({v.session_hash for v in votes}),
            "outcomes": {o: sum(v.outcome == o for v in votes) for o in ("a", "b", "tie", "both_bad")},
            "sources": dict(sorted(Counter(v.source for v in votes).items())),
        },
        "judge_agreement": {j: {"agree": a.agree, "n": a.n, "judge_ties": a.judge_ties, **_share(a.interval)}
                            for j, a in judge_agreement(votes).items()},
        "bradley_terry": None if fit is None else {
            "reference": arm_label(fit.reference), "best": arm_label(fit.best), "n_comparisons": fit.n_comparisons,
            "dropped_both_bad": fit.dropped_both_bad, "dropped_same_arm": fit.dropped_same_arm,
            "arms": [{"arm": arm_label(s.arm), "lambda": s.arm[0], "temperature": s.arm[1], "theta": _num(s.theta),
                      "low": _num(s.low), "high": _num(s.high), "rank_low": s.rank_low, "rank_high": s.rank_high,
                      "p_best": _num(s.p_best), "wins": s.wins, "n": s.n, "win_rate": _num(s.win_rate)}
                     for s in fit.arms],
        },
        "length_effect": {w: {"longer_wins": e.longer_wins, "n": e.n, "equal_length": e.equal_length,
                              **_share(e.interval)} for w, e in length_effect(votes).items()},
    }
