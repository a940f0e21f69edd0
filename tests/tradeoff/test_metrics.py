"""Metrics against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from playground.tradeoff.metrics import (
    distinct_n, ead, entropy_from_logits, kl_from_logits, mean_ci95, pareto_front, self_bleu,
    semantic_diversity, sentence_bleu, words,
)


def test_words_lowercases_and_splits_punctuation() -> None:
    assert words("Hello, World! It's") == ["hello", ",", "world", "!", "it", "'", "s"]


def test_kl_identical_logits_is_zero() -> None:
    logits = torch.randn(3, 5, 11)
    kl = kl_from_logits(logits, logits + 7.0)  # a constant shift is the same distribution
    assert kl.shape == (3, 5)
    assert torch.allclose(kl, torch.zeros(3, 5), atol=1e-6)


def test_kl_two_token_hand_computed() -> None:
    # p = (1/2, 1/2), q = (1/4, 3/4): KL = ½ln(½/¼) + ½ln(½/¾) = ½ln2 + ½ln(2/3)
    p = torch.tensor([0.0, 0.0], dtype=torch.float64)
    q = torch.log(torch.tensor([0.25, 0.75], dtype=torch.float64))
    expected = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    assert kl_from_logits(p, q).item() == pytest.approx(expected, abs=1e-12)
    assert kl_from_logits(p, q).dtype == torch.float64


def test_kl_half_precision_is_upcast_and_handles_zero_probability() -> None:
    p = torch.tensor([[0.0, -float("inf")]], dtype=torch.bfloat16)  # p = (1, 0)
    q = torch.tensor([[0.0, 0.0]], dtype=torch.bfloat16)  # q = (½, ½): KL = ln 2
    kl = kl_from_logits(p, q)
    assert kl.dtype == torch.float32
    assert kl.item() == pytest.approx(math.log(2), abs=1e-6)


def test_entropy_hand_computed() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, -float("inf"), -float("inf"), -float("inf")]])
    assert torch.allclose(entropy_from_logits(logits), torch.tensor([math.log(4), 0.0]), atol=1e-6)
    two = torch.log(torch.tensor([0.25, 0.75]))  # H = −¼ln¼ − ¾ln¾
    assert entropy_from_logits(two).item() == pytest.approx(-0.25 * math.log(0.25) - 0.75 * math.log(0.75), abs=1e-6)


def test_distinct_n_hand_computed() -> None:
    assert distinct_n([["a", "b", "a", "b"]], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # str samples go through words()
    assert distinct_n([[1, 2, 3], [1, 2, 4]], 1) == pytest.approx(4 / 6)
    assert distinct_n([[1, 2], [2, 1]], 2) == pytest.approx(1.0)  # no n-gram spans two samples
    assert distinct_n([["a"], []], 2) == 0.0
    assert distinct_n([], 1) == 0.0


def test_ead_hand_computed() -> None:
    # N = 2 unique of C = 3 bigrams, V = 4: EAD = 2 / (4·(1 − (3/4)³)) = 2 / 2.3125
    assert ead([["a", "b", "a", "b"]], 2, vocab_size=4) == pytest.approx(2 / (4 * (1 - 0.75**3)))
    assert ead([[1]], 1, vocab_size=1) == pytest.approx(1.0)
    assert ead([[]], 1, vocab_size=10) == 0.0


def test_ead_is_length_robust_unlike_distinct() -> None:
    rng = np.random.default_rng(0)
    vocab = 50
    short, long = [rng.integers(vocab, size=20).tolist()], [rng.integers(vocab, size=400).tolist()]
    assert distinct_n(long, 1) < 0.5 * distinct_n(short, 1)
    assert ead(short, 1, vocab) == pytest.approx(1.0, abs=0.15)
    assert ead(long, 1, vocab) == pytest.approx(1.0, abs=0.15)


def test_sentence_bleu_and_self_bleu_hand_computed() -> None:
    # "a b c" vs "a b d": p1 = 2/3, p2 = (1+1)/(2+1) = 2/3, BP = 1 → BLEU = 2/3 both ways
    assert self_bleu(["a b c", "a b d"], max_n=2) == pytest.approx(2 / 3)
    # "a b" vs "a b c d": p1 = 1, BP = e^(1−4/2); "a b c d" vs "a b": p1 = 1/2, BP = 1
    assert self_bleu(["a b", "a b c d"], max_n=1) == pytest.approx((math.exp(-1) + 0.5) / 2)
    assert sentence_bleu(["a", "a", "a"], [["a", "b", "c"]], max_n=1) == pytest.approx(1 / 3)  # clipping
    assert sentence_bleu(["x"], [["y"]]) == 0.0
    assert sentence_bleu([], [["y"]]) == 0.0


def test_self_bleu_edges() -> None:
    assert self_bleu(["The cat sat on the mat."] * 3) == pytest.approx(1.0)
    assert self_bleu(["only one"]) == 0.0
    assert self_bleu([]) == 0.0
    assert self_bleu(["completely different words", "nothing shared here"]) == 0.0


def test_semantic_diversity() -> None:
    assert semantic_diversity(["same text", "same text"]) == pytest.approx(0.0, abs=1e-5)
    assert semantic_diversity(["one"]) == 0.0
    similar = semantic_diversity(["A man is eating food.", "A man is eating a piece of bread."])
    varied = semantic_diversity(["A man is eating food.", "The stock market fell sharply today."])
    assert similar == pytest.approx(1 - 0.7553, abs=2e-3)
    assert varied > similar


def test_mean_ci95_hand_computed() -> None:
    # [1, 2, 3]: mean 2, s = 1, t(0.975, 2) = 4.302652729911275 → half = 4.3027 / √3
    mean, half = mean_ci95([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(4.302652729911275 / math.sqrt(3), rel=1e-9)
    assert mean_ci95([5.0]) == (5.0, 0.0)
    assert math.isnan(mean_ci95([])[0])


def test_pareto_front() -> None:
    points = [(1.0, 1.0), (2.0, 0.5), (0.5, 2.0), (0.5, 0.5), (2.0, 0.5), (1.0, 0.9), (float("nan"), 9.0)]
    assert pareto_front(points) == [0, 1, 2, 4]
    assert pareto_front([]) == []
    assert pareto_front([(0.0, 0.0)]) == [0]
