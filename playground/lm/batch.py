"""A running batch: the requests decoding together, their forward rows, and one step of realigned decoding.

Each request owns a base row (LoRA scale 0) and, when it needs one, a policy row (adapter at scale 1 in
logits mode, at scale λ in weights mode). A prompt-guided request (cfg_scale γ ≠ 1) owns the same rows again
on its unconditional prompt (the chat template without the user's text, or with a negative prompt). Every
step, for every live request, with one formula, `extrapolate(ref, x, w) = ℓ_ref + w (ℓ_x − ℓ_ref)`:

    ℓ_λ   = ℓ_base + λ (ℓ_tuned − ℓ_base)          (logits mode; weights mode: ℓ_λ = ℓ of the λ-scaled row)
    ℓ     = ℓ_λ^uncond + γ (ℓ_λ − ℓ_λ^uncond)       (prompt guidance, Sanchez et al. 2023; γ = 1: ℓ_λ, no extra rows)
    token ~ top_p(softmax(ℓ / T))                   (its own generator; T = 0: argmax)
    KL    = Σ_v π (log π − log π_base)               (T = 1; the readout, against the base model on the real prompt)

Requests join (`join`: their rows are prefilled) and leave (`leave`: their rows are dropped) between steps,
so one batch can serve submissions that arrive and finish at different times (continuous batching). All
of this is per row, and the row-wise sums run on at least two rows (see sampling.py), so a request's tokens
do not depend on what else is in the batch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from collections.abc import Sequence

import torch

from playground.lm.request import Request, Stream
from playground.lm.sampling import RowSampler


def extrapolate(ref: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """ℓ_ref + w (ℓ_x − ℓ_ref) per row (w: [R]): the one formula behind λ realignment and prompt guidance.

    torch.lerp(a, b, w) = a + w(b − a), computed so that w = 0 returns a and w = 1 returns b exactly."""
    return torch.lerp(ref, x, w[:, None])


def realign(base: torch.Tensor, policy: torch.Tensor, lam: torch.Tensor, use_mix: torch.Tensor) -> torch.Tensor:
    """ℓ_λ = ℓ_base + λ(ℓ_tuned − ℓ_base) for logits-mode rows; the policy row itself for weights mode.

    base, policy: [R, V] float32 logits; lam: [R] λ per request; use_mix: [R] bool (True = logits mode).
    Requests without a policy row pass `policy = base` (their λ-mix is then exactly ℓ_base).
    """
    return torch.where(use_mix[:, None], extrapolate(base, policy, lam), policy)


def guided(req: Request) -> bool:
    """Whether a request decodes with prompt guidance (γ ≠ 1): it then needs its unconditional rows."""
    return req.cfg_scale != 1.0


def _cond_routes(req: Request) -> list[tuple[str | None, float]]:
    d, rows = req.settings, [(None, 0.0)]
    if req.adapter is not None and (d.mode == "weights" or d.lam != 0.0):
        rows.append((req.adapter, d.lam if d.mode == "weights" else 1.0))  # weights mode: LoRA scale λ
    return rows


def routes_of(req: Request) -> list[tuple[str | None, float]]:
    """The forward rows a request needs: base row, then its policy row if it has one; a guided request
    (γ ≠ 1) repeats them for its unconditional prompt."""
    rows = _cond_routes(req)
    return rows + rows if guided(req) else rows


def row_prompts(req: Request) -> list[tuple[int, ...]]:
    """The prompt each of `routes_of(req)` rows is prefilled with: the request's prompt, then (guided) its
    unconditional prompt."""
    n = len(_cond_routes(req))
    return [tuple(req.prompt_ids)] * n + ([tuple(req.uncond_prompt_ids)] * n if guided(req) else [])


def policy_logits(logits: torch.Tensor, rows: Sequence[Sequence[int]], requests: Sequence[Request]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ℓ, ℓ_base): each request's sampling logits ℓ = ℓ_λ^u + γ(ℓ_λ − ℓ_λ^u) and its base row on the real prompt.

    rows[i]: request i's forward rows in `routes_of` order. Unguided requests take ℓ_λ itself (bit for bit)."""
    half = [len(r) // 2 if guided(q) else len(r) for r, q in zip(rows, requests)]
    base = torch.tensor([r[0] for r in rows])
    policy = torch.tensor([r[h - 1] for r, h in zip(rows, half)])
    lam = torch.tensor([q.settings.lam for q in requests], dtype=torch.float32)  # λ per request
    use_mix = torch.tensor([q.settings.mode == "logits" for q in requests])
    l_base = logits[base]
    l_mix = realign(l_base, logits[policy], lam, use_mix)  # ℓ_λ = ℓ_base + λ(ℓ_tuned − ℓ_base)
    flags = [guided(q) for q in requests]
    if any(flags):
        u_base = torch.tensor([r[h] if g else r[0] for r, h, g in zip(rows, half, flags)])
        u_policy = torch.tensor([r[-1] if g else r[h - 1] for r, h, g in zip(rows, half, flags)])
        l_u = realign(logits[u_base], logits[u_policy], lam, use_mix)  # the same policy on the unconditional prompt
        gamma = torch.tensor([q.cfg_scale for q in requests], dtype=torch.float32)  # γ per request
        l_mix = torch.where(torch.tensor(flags)[:, None], extrapolate(l_u, l_mix, gamma), l_mix)
    return l_mix, l_base


def readouts(l_mix: torch.Tensor, l_base: torch.Tensor, probs: torch.Tensor) -> tuple[list, list, list]:
    """Per request: KL(π_λ ‖ π_base) at T = 1, entropy H(π_sample) = Σ −p log p, and whether argmax ℓ_λ ≠ argmax ℓ_base."""
    if len(l_mix) == 1:  # a second row keeps the vocabulary sums in their batched order (see sampling.py)
        kl, ent, shifted = readouts(l_mix.expand(2, -1), l_base.expand(2, -1), probs.expand(2, -1))
        return kl[:1], ent[:1], shifted[:1]
    logp_mix, logp_base = torch.log_softmax(l_mix, -1), torch.log_softmax(l_base, -1)
    kl = (logp_mix.exp() * (logp_mix - logp_base)).sum(-1)
    ent = torch.special.entr(probs).sum(-1)
    shifted = l_mix.argmax(-1) != l_base.argmax(-1)
    return kl.tolist(), ent.tolist(), shifted.tolist()


NO_PROB = -9999.0  # log 0 (a token outside the nucleus) as a finite JSON number (vLLM's convention)


def token_logprobs(l_mix: torch.Tensor, probs: torch.Tensor, token: torch.Tensor, temps: Sequence[float],
                   wanted: dict[int, int]) -> dict[int, tuple[float, list[tuple[int, float]]]]:
    """For rows i in `wanted` (row -> k): (log π(token_i), the k most likely (id, log π(id))), π the distribution the
    token was drawn from: top_p(softmax(ℓ_λ / T)) (`probs`); at T = 0 (greedy, `probs` one-hot) the realigned policy
    softmax(ℓ_λ) itself, whose argmax greedy takes. Per row only (the log-softmax runs on ≥ 2 rows, see sampling.py)."""
    if not wanted:
        return {}
    rows = sorted(wanted)
    idx = torch.tensor(rows)
    greedy = [i for i in rows if temps[i] == 0]
    dist = probs[idx].clamp_min(0).log()
    if greedy:
        g = torch.tensor(greedy)
        logp = torch.log_softmax(l_mix[g] if len(greedy) > 1 else l_mix[g].expand(2, -1), -1)[: len(greedy)]
        dist[torch.tensor([rows.index(i) for i in greedy])] = logp
    dist = dist.clamp_min(NO_PROB)
    chosen = dist.gather(1, token[idx][:, None])[:, 0].tolist()
    k = max(wanted.values())
    top_lp, top_id = dist.topk(k, dim=-1) if k else (dist[:, :0], dist[:, :0].long())
    out = {}
    for j, i in enumerate(rows):
        n = wanted[i]
        out[i] = (chosen[j], list(zip(top_id[j, :n].tolist(), top_lp[j, :n].tolist())))
    return out


@dataclass
class Member:
    """One request in the running batch."""

    request: Request
    stream: Stream  # filled as tokens arrive
    rows: list[int]  # forward rows in routes_of order: [base] or [base, policy], twice when guided (γ ≠ 1)
    owner: object = None  # who submitted it (the scheduler's Submission), None for a direct call
    start: float = 0.0  # perf_counter at submission; stream timings count from it
    live: bool = True  # False once it left but its rows could not be dropped (generic decoder)
    last: int = 0  # last sampled token

    @property
    def left(self) -> int:
        return self.request.settings.max_new_tokens - len(self.stream.tokens)


class RunningBatch:
    """Members decoding together on one decoder (FastLlamaDecoder, or a static adapter for generic models)."""

    def __init__(self, decoder) -> None:
        self.decoder = decoder
        self.members: list[Member] = []
        self.sampler = RowSampler()
        self.logits: torch.Tensor | None = None  # [forward rows, V] next-token logits of every row

    @property
    def rows(self) -> int:
        return sum(len(m.rows) for m in self.members)

    def join(self, requests: Sequence, streams: Sequence, owner=None, start: float | None = None) -> list[Member]:
        """Prefill the requests' rows; they sample their first token at the next `sample`."""
        return self.join_groups([(requests, streams, owner, start)])[0]

    def join_groups(self, groups: Sequence[tuple]) -> list[list[Member]]:
        """`join` for several (requests, streams, owner, start) groups at once: one prefill forward for all."""
        first = self.decoder.rows
        routes, prompts, reach, joined = [], [], [], []
        for requests, streams, owner, start in groups:
            start = time.perf_counter() if start is None else start
            members = []
            for req, stream in zip(requests, streams):
                r, ps = routes_of(req), row_prompts(req)
                rows = list(range(first + len(routes), first + len(routes) + len(r)))
                members.append(Member(req, stream, rows, owner, start))
                routes += r
                prompts += ps
                reach += [len(p) + req.settings.max_new_tokens for p in ps]  # the columns its rows can fill
            joined.append(members)
        logits = self.decoder.add(prompts, routes, reach)
        assert first == 0 or self.logits is not None, "join after leave needs an advance first"
        self.logits = logits if first == 0 else torch.cat([self.logits[:first], logits])
        for (requests, *_), members in zip(groups, joined):
            self.members += members
            # The sampler's per-row lists (T, top-p, seed) are built from each request's settings.
            self.sampler.extend([r.settings.temperature for r in requests], [r.settings.top_p for r in requests],
                                [r.settings.seed for r in requests])
        return joined

    def sample(self, stop_ids: torch.Tensor) -> list[Member]:
        """Draw one token for every member from its realigned distribution; record it; return those now finished."""
        live = self.members
        # ℓ = ℓ_λ^u + γ(ℓ_λ − ℓ_λ^u), ℓ_λ = ℓ_base + λ(ℓ_tuned − ℓ_base); unguided rows: ℓ_λ
        l_mix, l_base = policy_logits(self.logits, [m.rows for m in live], [m.request for m in live])
        token, probs = self.sampler.sample(l_mix)  # token ~ top_p(softmax(ℓ / T))
        kl, ent, shifted = readouts(l_mix, l_base, probs)
        wanted = {i: m.request.logprobs for i, m in enumerate(live) if m.request.logprobs is not None}
        lps = token_logprobs(l_mix, probs, token, self.sampler.temps, wanted)
        stop = torch.isin(token, stop_ids).tolist()
        now = time.perf_counter()
        finished = []
        for i, m in enumerate(live):
            m.last = int(token[i])
            if not m.live:
                continue
            s = m.stream
            s.tokens.append(m.last)
            s.kl.append(kl[i])
            s.entropy.append(ent[i])
            s.shifted.append(shifted[i])
            if i in lps:
                s.logprobs.append(lps[i])
            s.elapsed_s = now - m.start
            if s.first_token_s is None:
                s.first_token_s = s.elapsed_s
            if stop[i] or len(s.tokens) >= m.request.settings.max_new_tokens:
                s.done = True
                finished.append(m)
        return finished

    def leave(self, members: Sequence[Member]) -> None:
        """Drop members and their rows (a decoder that cannot drop rows keeps them, fed but not recorded)."""
        if not members:
            return
        if not hasattr(self.decoder, "remove"):
            for m in members:
                m.live = False
            return
        gone = {id(m) for m in members}
        rows = [r for m in members for r in m.rows]
        order = self.decoder.remove(rows)
        new_index = {old: new for new, old in enumerate(order)}
        keep = [i for i, m in enumerate(self.members) if id(m) not in gone]
        self.members = [self.members[i] for i in keep]
        self.sampler.keep(keep)
        for m in self.members:
            m.rows = [new_index[r] for r in m.rows]
        self.logits = None  # rows moved: the next `advance` computes fresh logits for all of them

    def advance(self) -> None:
        """One decoding step: feed every row its request's last token; new logits for all rows."""
        tokens = torch.empty(self.decoder.rows, dtype=torch.long)
        for m in self.members:
            tokens[m.rows] = m.last
        self.logits = self.decoder.step(tokens)

    def all_done(self) -> bool:
        return all(m.stream.done or not m.live for m in self.members)
