"""Per-row sampling: temperature, nucleus (top-p) and a private random stream per row.

Each row draws its own uniform noise from its own `torch.Generator(seed)`, so a row's text depends only
on its own seed and settings, never on which other rows share the batch. Sampling uses the Gumbel-max
trick: argmax(z + g) with g = −log(−log u) is an exact draw from softmax(z), and stays inside torch.
"""
from __future__ import annotations

from collections.abc import Sequence

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
    """Samples one token per row from top_p(softmax(ℓ / T)); T = 0 means greedy. Rows can join (`extend`) and
    leave (`keep`) between draws; each keeps its own settings and random stream.

    Batch invariance: every operation is per row, and the row-wise sums (renormalising the nucleus) run on
    at least two rows — torch splits a reduction across threads when it has a single output, which would
    sum a lone row in another order than the same row inside a batch.
    """

    def __init__(self, temperatures: Sequence[float] = (), top_ps: Sequence[float] = (), seeds: Sequence[int] = ()) -> None:
        self.temps: list[float] = []
        self.top_ps: list[float] = []
        self.generators: list[torch.Generator] = []
        self.extend(temperatures, top_ps, seeds)

    def extend(self, temperatures: Sequence[float], top_ps: Sequence[float], seeds: Sequence[int]) -> None:
        self.temps += [float(t) for t in temperatures]
        self.top_ps += [float(p) for p in top_ps]
        self.generators += [torch.Generator().manual_seed(int(s)) for s in seeds]

    def keep(self, order: Sequence[int]) -> None:
        """Keep rows `order` (old indices), in that order."""
        self.temps, self.top_ps = [self.temps[i] for i in order], [self.top_ps[i] for i in order]
        self.generators = [self.generators[i] for i in order]

    def sample(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (token [R], sampling distribution [R, V]) for realigned logits [R, V]."""
        rows = logits.shape[0]
        if rows == 1:  # a second (greedy, unused) row keeps the row sums in their batched order
            token, probs = self._sample(torch.cat([logits, logits]), self.temps + [0.0], self.top_ps + [1.0])
            return token[:1], probs[:1]
        return self._sample(logits, self.temps, self.top_ps)

    def _sample(self, logits: torch.Tensor, temps: list[float], top_ps: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        greedy_tok = torch.argmax(logits, dim=-1)
        vocab = logits.shape[-1]
        sampling_rows = [i for i, t in enumerate(temps) if t > 0]
        if not sampling_rows:
            return greedy_tok, torch.nn.functional.one_hot(greedy_tok, vocab).to(torch.float32)
        greedy = torch.tensor([t == 0 for t in temps])
        temp = torch.tensor([t if t > 0 else 1.0 for t in temps])
        probs = torch.softmax(logits / temp[:, None], dim=-1)  # softmax(ℓ / T)
        nucleus = [i for i in sampling_rows if top_ps[i] < 1]
        if nucleus:  # nucleus rows: drop the tail, renormalise (rows with top_p = 1 are left as they are)
            idx = torch.tensor(nucleus)
            sub = probs[idx]
            sub.masked_fill_(~top_p_mask(sub, torch.tensor([top_ps[i] for i in nucleus])), 0.0)
            norm = torch.cat([sub, sub[:1]]).sum(-1, keepdim=True)[: len(nucleus)] if len(nucleus) == 1 else sub.sum(-1, keepdim=True)
            probs[idx] = sub / norm
        # Exponential race: with E_v = −log u_v ~ Exp(1), argmax_v p_v / E_v is an exact draw from p
        # (it is the Gumbel-max trick, argmax log p_v − log E_v, without the logs of p). One uniform
        # vector per sampling row from the row's own generator: a row's random stream depends only on
        # its own seed, never on its neighbours in the batch. Greedy rows draw nothing.
        u = torch.full_like(probs, 0.5)
        for i in sampling_rows:
            torch.rand(vocab, generator=self.generators[i], out=u[i])
        race = probs / -torch.log(u.clamp_(1e-12, 1 - 1e-7))  # p_v / E_v; tokens with p = 0 never win
        token = torch.where(greedy, greedy_tok, torch.argmax(race, dim=-1))
        if bool(greedy.any()):
            probs[greedy] = torch.nn.functional.one_hot(greedy_tok[greedy], vocab).to(torch.float32)
        return token, probs
