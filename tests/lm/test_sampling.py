"""Sampling: nucleus mask, greedy at T = 0, and Gumbel-max draws that follow softmax(ℓ/T)."""
from __future__ import annotations

import torch

from playground.lm.sampling import RowSampler, top_p_mask


def test_top_p_mask_keeps_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert top_p_mask(probs, torch.tensor([0.5])).tolist() == [[True, False, False, False]]
    assert top_p_mask(probs, torch.tensor([0.6])).tolist() == [[True, True, False, False]]
    assert top_p_mask(probs, torch.tensor([0.9])).tolist() == [[True, True, True, False]]
    assert top_p_mask(probs, torch.tensor([0.99])).tolist() == [[True, True, True, True]]
    assert top_p_mask(probs, torch.tensor([1e-6])).tolist() == [[True, False, False, False]]


def test_top_p_partial_top_k_equals_full_sort():
    """The top-k shortcut and the full-sort fallback (k too small for a row's nucleus) give the same set."""
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(6, 3000, generator=gen) * torch.tensor([[0.5], [1], [2], [4], [8], [16]]), -1)
    top_p = torch.tensor([0.5, 0.9, 0.95, 0.99, 0.7, 1.0])
    full = top_p_mask(probs, top_p, k=3000)
    for k in (1, 8, 64, 512):
        assert torch.equal(top_p_mask(probs, top_p, k=k), full)
    kept = (probs * full).sum(-1)
    assert (kept >= top_p - 1e-6).all() and full.sum(-1).min() >= 1


def test_greedy_rows_take_the_argmax():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0]])
    token, dist = RowSampler([0.0, 0.0], [1.0, 1.0], [0, 1]).sample(logits)
    assert token.tolist() == [1, 0]
    assert dist.tolist() == [[0, 1, 0], [1, 0, 0]]


def test_draws_follow_the_tempered_distribution():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    sampler = RowSampler([1.0], [1.0], [123])
    counts = torch.zeros(3)
    for _ in range(4000):
        counts[sampler.sample(logits)[0]] += 1
    torch.testing.assert_close(counts / counts.sum(), torch.tensor([0.6, 0.3, 0.1]), atol=0.03, rtol=0)
    hot = RowSampler([2.0], [1.0], [5]).sample(logits)[1]  # T = 2 flattens: p ∝ p^(1/2)
    want = torch.sqrt(torch.tensor([0.6, 0.3, 0.1]))
    torch.testing.assert_close(hot[0], want / want.sum())


def test_a_rows_draws_do_not_depend_on_its_neighbours():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    alone = RowSampler([0.9], [0.8], [42])
    mixed = RowSampler([0.0, 0.9, 1.5], [1.0, 0.8, 1.0], [1, 42, 3])
    for _ in range(20):
        assert alone.sample(logits[1:2])[0].item() == mixed.sample(logits)[0][1].item()
