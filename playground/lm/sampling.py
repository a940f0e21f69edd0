"""Per-row sampling: temperature, nucleus (top-p) and a private random stream per row.

Each row draws its own uniform noise from its own `torch.Generator(seed)`, so a row's text depends only
on its own seed and settings, never on which other rows share the batch. Sampling uses the Gumbel-max
trick: argmax(z + g) with g = −log(−log u) is an exact draw from softmax(z), and stays inside torch.
"""
from __future__ import annotations

from typing import Sequence

import torch


def top_p_mask(probs: torch.Tensor, top_p: torch.Tensor, k: int = 512) -> torch.Tensor:
    """True for tokens inside the nucleus: the smallest set, by probability, whose mass reaches top_p.

    probs: [R, V]; top_p: [R] in (0, 1]. The most likely token is always kept. The nucleus is looked
    for among the k most likely tokens first (a partial top-k instead of sorting the whole vocabulary);
    only rows whose top-k mass stays below their top_p are sorted in full. Same set either way: a token
    after position k has at least the top-k mass before it, so it is outside the nucleus.
    """
    top, order = probs.topk(min(k, probs.shape[-1]), dim=-1)  # sorted, descending
    fits = top.sum(-1) >= top_p
    keep = torch.zeros(probs.shape, dtype=torch.bool)
    parts = [(fits.nonzero().flatten(), top[fits], order[fits])]
    if not bool(fits.all()):
        rows = (~fits).nonzero().flatten()
        parts.append((rows, *probs[rows].sort(dim=-1, descending=True)))
    for rows, sorted_p, idx in parts:
        mass_before = sorted_p.cumsum(-1) - sorted_p  # probability mass strictly before each token
        keep_sorted = mass_before < top_p[rows, None]
        keep_sorted[:, 0] = True
        keep[rows] = keep[rows].scatter(-1, idx, keep_sorted)
    return keep


class RowSampler:
    """Samples one token per row from top_p(softmax(ℓ / T)); T = 0 means greedy."""

    def __init__(self, temperatures: Sequence[float], top_ps: Sequence[float], seeds: Sequence[int]) -> None:
        self.temperature = torch.tensor(temperatures, dtype=torch.float32)
        self.top_p = torch.tensor(top_ps, dtype=torch.float32)
        self.greedy = self.temperature == 0
        self.sampling_rows = torch.nonzero(~self.greedy).flatten().tolist()
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def sample(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (token [R], sampling distribution [R, V]) for realigned logits [R, V]."""
        greedy_tok = torch.argmax(logits, dim=-1)
        vocab = logits.shape[-1]
        if not self.sampling_rows:
            return greedy_tok, torch.nn.functional.one_hot(greedy_tok, vocab).to(torch.float32)
        temp = torch.where(self.greedy, torch.ones_like(self.temperature), self.temperature)
        probs = torch.softmax(logits / temp[:, None], dim=-1)  # softmax(ℓ / T)
        if bool((self.top_p < 1).any()):  # nucleus: drop the tail, renormalise
            probs.masked_fill_(~top_p_mask(probs, self.top_p), 0.0)
            probs /= probs.sum(-1, keepdim=True)
        # Exponential race: with E_v = −log u_v ~ Exp(1), argmax_v p_v / E_v is an exact draw from p
        # (it is the Gumbel-max trick, argmax log p_v − log E_v, without the logs of p). One uniform
        # vector per sampling row from the row's own generator: a row's random stream depends only on
        # its own seed, never on its neighbours in the batch. Greedy rows draw nothing.
        u = torch.full_like(probs, 0.5)
        for i in self.sampling_rows:
            torch.rand(vocab, generator=self.generators[i], out=u[i])
        race = probs / -torch.log(u.clamp_(1e-12, 1 - 1e-7))  # p_v / E_v; tokens with p = 0 never win
        token = torch.where(self.greedy, greedy_tok, torch.argmax(race, dim=-1))
        if bool(self.greedy.any()):
            probs[self.greedy] = torch.nn.functional.one_hot(greedy_tok[self.greedy], vocab).to(torch.float32)
        return token, probs
