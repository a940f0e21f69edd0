"""Simulated voters follow their preference, flipped at the noise rate."""
from __future__ import annotations

import numpy as np
import pytest

from playground.feedback.voters import CloserInMeaningVoter, SettingVoter, ShorterVoter, simulate_outcomes
from tests.feedback.factory import settings

S1, S0 = settings(1.0), settings(0.0)


def test_shorter_voter_prefers_the_shorter_answer_and_ties_on_equal_length():
    voter = ShorterVoter()
    rng = np.random.default_rng(0)
    assert voter.vote("p", "a long answer", "short", S1, S0, rng) == "b"
    assert voter.vote("p", "tiny", "a long answer", S1, S0, rng) == "a"
    assert voter.vote("p", "same", "size", S1, S0, rng) == "tie"


def test_noise_flips_decisions_at_its_rate_and_never_ties():
    pairs = [("p", "longer answer", "short", S1, S0)] * 4000
    outcomes = simulate_outcomes(ShorterVoter(noise=0.2), pairs, seed=3)
    flipped = outcomes.count("a") / len(outcomes)
    assert abs(flipped - 0.2) < 0.03  # binomial sd = 0.006
    assert simulate_outcomes(ShorterVoter(noise=0.5), [("p", "ab", "cd", S1, S0)] * 50) == ["tie"] * 50
    assert simulate_outcomes(ShorterVoter(noise=0.2), pairs[:50], seed=3) == outcomes[:50]  # seeded
    with pytest.raises(ValueError, match="noise"):
        ShorterVoter(noise=0.7)


def test_closer_in_meaning_voter_uses_the_given_embedding():
    vectors = {"rain tips": [1.0, 0.0], "umbrella": [0.9, 0.1], "stock prices": [0.0, 1.0]}
    calls = []

    def fake_embed(texts):
        calls.append(texts)
        return np.array([vectors[t] for t in texts])

    voter = CloserInMeaningVoter(fake_embed)
    rng = np.random.default_rng(0)
    assert voter.vote("rain tips", "stock prices", "umbrella", S1, S0, rng) == "b"
    assert voter.vote("rain tips", "umbrella", "stock prices", S1, S0, rng) == "a"
    assert calls[0] == ["rain tips", "stock prices", "umbrella"]


def test_setting_voter_prefers_the_setting_nearest_its_favourite():
    voter = SettingVoter(best_lambda=1.0)
    rng = np.random.default_rng(0)
    assert voter.vote("p", "x", "y", settings(0.5), settings(2.0), rng) == "a"
    assert voter.vote("p", "x", "y", settings(0.0), settings(2.0), rng) == "tie"  # both 1 away
    hot = SettingVoter(best_lambda=1.0, best_temperature=0.2)
    assert hot.vote("p", "x", "y", settings(1.0, 1.0), settings(1.0, 0.3), rng) == "b"
