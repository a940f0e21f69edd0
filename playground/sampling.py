"""Per-row sampling: temperature, nucleus (top-p) and a private random stream per row.

Each row draws its own uniform noise from its own `torch.Generator(seed)`, so a row's text depends only
on its own seed and settings, never on which other rows share the batch. Sampling uses the Gumbel-max
trick: argmax(z + g) with g = −log(−log u) is an exact draw from softmax(z), and stays inside torch.
"""
from __future__ import annotations

from typing import Sequence

import torch


def top_p_mask(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """True for tokens inside the nucleus: the smallest set, by probability, whose mass reaches top_p.

    probs: [R, V]; top_p: [R] in (0, 1]. The most likely token is always kept.
    """
    sorted_p, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_p.cumsum(-1) - sorted_p  # probability mass strictly before each token
    keep_sorted = mass_before < top_p[:, None]
    keep_sorted[:, 0] = True
    keep = torch.zeros_like(keep_sorted)
    return keep.scatter(-1, order, keep_sorted)


class RowSampler:
    """Samples one token per row from top_p(softmax(ℓ / T)); T = 0 means greedy."""

    def __init__(self, temperatures: Sequence[float], top_ps: Sequence[float], seeds: Sequence[int]) -> None:
        self.temperature = torch.tensor(temperatures, dtype=torch.float32)
        self.top_p = torch.tensor(top_ps, dtype=torch.float32)
        self.greedy = self.temperature == 0
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def sample(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (token [R], sampling distribution [R, V]) for realigned logits [R, V]."""
        greedy_tok = torch.argmax(logits, dim=-1)
        one_hot = torch.nn.functional.one_hot(greedy_tok, logits.shape[-1]).to(torch.float32)
        if bool(self.greedy.all()):
            return greedy_tok, one_hot
        temp = torch.where(self.greedy, torch.ones_like(self.temperature), self.temperature)
        probs = torch.softmax(logits / temp[:, None], dim=-1)  # softmax(ℓ / T)
        if bool((self.top_p < 1).any()):  # the sort is the costliest step; skip it when nobody truncates
            probs = torch.where(top_p_mask(probs, self.top_p), probs, torch.zeros_like(probs))
            probs = probs / probs.sum(-1, keepdim=True)  # renormalised nucleus distribution
        # One uniform vector per sampling row from the row's own generator: a row's random stream
        # depends only on its own seed, never on its neighbours in the batch. Greedy rows draw nothing.
        u = torch.full_like(probs, 0.5)
        for i in torch.nonzero(~self.greedy).flatten().tolist():
            u[i] = torch.rand(logits.shape[-1], generator=self.generators[i])
        gumbel = -torch.log(-torch.log(u.clamp(1e-12, 1 - 1e-7)))
        sampled = torch.argmax(torch.log(probs) + gumbel, dim=-1)  # log 0 = −inf drops tokens outside
        token = torch.where(self.greedy, greedy_tok, sampled)
        return token, torch.where(self.greedy[:, None], one_hot, probs)
