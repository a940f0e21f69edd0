"""Decoding-time realignment (DeRa; Liu et al., ICML 2024), batched, with per-row settings.

A model aligned with KL strength β_train approximates the one aligned at β = β_train/λ by mixing, at
every token, the next-token logits of the reference (base) policy and the aligned (tuned) policy:

    ℓ_λ = ℓ_base + λ · (ℓ_tuned − ℓ_base)          λ = β_train / β

λ = 0 is the base model, λ = 1 the tuned model, λ > 1 extrapolates (weaker KL). Both policies come from
the SAME batched forward pass: each request owns a base row (LoRA scale 0) and a tuned row (LoRA scale
1), routed per row by `AdapterSet.routing`. Mode "weights" instead scales the LoRA delta by λ inside one
row (ExPO-style weight extrapolation: cheaper, not the KL-regularised optimum); its base row is kept
for the KL readout. Every request carries its own λ, temperature, top-p, length and seed, so one batch
can hold a whole sweep grid.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from playground.lm.decoder import Decoder, HFDecoder
from playground.lm.fast_llama import FastLlamaDecoder, supports
from playground.lm.lora import AdapterSet
from playground.lm.sampling import RowSampler


@dataclass(frozen=True)
class Request:
    """One stream to decode. `adapter=None` (or λ = 0 in logits mode) decodes the base model alone."""

    prompt_ids: tuple[int, ...]
    adapter: str | None = None
    lam: float = 1.0  # λ = β_train / β
    mode: str = "logits"  # "logits" (DeRa) or "weights" (LoRA scale = λ)
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0


@dataclass
class Stream:
    """What one request produced so far."""

    tokens: list[int] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)  # KL(π_λ ‖ π_base) per position, nats, at T = 1
    entropy: list[float] = field(default_factory=list)  # entropy of the distribution actually sampled from
    shifted: list[bool] = field(default_factory=list)  # base model's top token ≠ realigned top token
    done: bool = False
    first_token_s: float | None = None
    elapsed_s: float = 0.0

    @property
    def kl_sum(self) -> float:
        return float(sum(self.kl))

    @property
    def kl_mean(self) -> float:
        return self.kl_sum / len(self.kl) if self.kl else 0.0

    @property
    def entropy_mean(self) -> float:
        return float(sum(self.entropy) / len(self.entropy)) if self.entropy else 0.0


@dataclass
class _Layout:
    """Which forward rows serve which request."""

    base_row: list[int]  # request -> row of ℓ_base
    policy_row: list[int | None]  # request -> row of ℓ_tuned (logits mode) or ℓ_weights (weights mode)
    routes: list[tuple[str | None, float]]  # row -> (adapter, LoRA scale)
    prompts: list[tuple[int, ...]]  # row -> prompt ids
    lam: torch.Tensor  # [requests] λ
    use_mix: torch.Tensor  # [requests] True = logits mode (DeRa), False = weights mode

    @property
    def base_idx(self) -> torch.Tensor:
        return torch.tensor(self.base_row)

    @property
    def policy_idx(self) -> torch.Tensor:
        """Row of each request's policy logits; the base row itself when it has none (then ℓ_λ = ℓ_base)."""
        return torch.tensor([p if p is not None else b for p, b in zip(self.policy_row, self.base_row)])

    def realigned(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ℓ_λ, ℓ_base) per request from the rows' logits [rows, V]."""
        l_base = logits[self.base_idx]  # ℓ_base
        l_policy = logits[self.policy_idx]  # ℓ_tuned (or ℓ of the λ-scaled weights)
        return realign(l_base, l_policy, self.lam, self.use_mix), l_base


def plan_rows(requests: Sequence[Request]) -> _Layout:
    base_row, policy_row, routes, prompts = [], [], [], []
    for req in requests:
        base_row.append(len(routes))
        routes.append((None, 0.0))
        prompts.append(req.prompt_ids)
        needs_policy = req.adapter is not None and (req.mode == "weights" or req.lam != 0.0)
        if needs_policy:
            policy_row.append(len(routes))
            routes.append((req.adapter, req.lam if req.mode == "weights" else 1.0))
            prompts.append(req.prompt_ids)
        else:
            policy_row.append(None)
    lam = torch.tensor([r.lam for r in requests], dtype=torch.float32)
    use_mix = torch.tensor([r.mode == "logits" for r in requests])
    return _Layout(base_row, policy_row, routes, prompts, lam, use_mix)


def realign(base: torch.Tensor, policy: torch.Tensor, lam: torch.Tensor, use_mix: torch.Tensor) -> torch.Tensor:
    """ℓ_λ = ℓ_base + λ(ℓ_tuned − ℓ_base) for logits-mode rows; the policy row itself for weights mode.

    base, policy: [R, V] logits; lam: [R] λ per request; use_mix: [R] bool (True = logits mode).
    Requests without a policy row pass `policy = base` (their λ-mix is then exactly ℓ_base).
    """
    # torch.lerp(a, b, w) = a + w(b − a), computed so that w = 0 returns a and w = 1 returns b exactly.
    mixed = torch.lerp(base, policy, lam[:, None])
    return torch.where(use_mix[:, None], mixed, policy)


class Engine:
    """Owns one base model + its adapters; decodes batches of requests token by token."""

    def __init__(self, model: torch.nn.Module, tokenizer, adapters: AdapterSet, stop_ids: Sequence[int]) -> None:
        self.model, self.tokenizer, self.adapters = model, tokenizer, adapters
        self.stop_ids = torch.tensor(sorted(set(stop_ids)), dtype=torch.long)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.lock = threading.Lock()  # one forward at a time on the shared weights; routing lives inside it
        self.fast = True  # use FastLlamaDecoder where it applies (benchmarks switch it off to compare)

    def new_decoder(self) -> Decoder:
        """The lean static-cache decoder for Llama-family models; the generic transformers path otherwise."""
        if self.fast and supports(self.model):
            return FastLlamaDecoder(self.model, self.pad_id)
        return HFDecoder(self.model, self.pad_id)

    def _run(self, layout: _Layout, call) -> torch.Tensor:
        """One forward of the decoder with this batch's adapter routing, under the shared lock."""
        with self.lock, torch.inference_mode(), self.adapters.routing(layout.routes):
            return call()

    def stream(self, requests: Sequence[Request], should_stop=lambda: False) -> Iterator[list[Stream]]:
        """Yield the streams after every decoding step; the caller may stop early via `should_stop`."""
        if not requests:
            return
        layout = plan_rows(requests)
        n = len(requests)
        base_idx, policy_idx = layout.base_idx, layout.policy_idx
        sampler = RowSampler([r.temperature for r in requests], [r.top_p for r in requests], [r.seed for r in requests])
        limit = torch.tensor([r.max_new_tokens for r in requests])
        streams = [Stream() for _ in requests]
        decoder = self.new_decoder()
        start = time.perf_counter()
        logits = self._run(layout, lambda: decoder.start(layout.prompts))  # [rows, V]
        alive = torch.ones(n, dtype=torch.bool)
        while True:
            l_mix, l_base = layout.realigned(logits)  # ℓ_λ = ℓ_base + λ(ℓ_tuned − ℓ_base)
            token, probs = sampler.sample(l_mix)  # token ~ π_sample = top_p(softmax(ℓ_λ / T))
            self._record(streams, alive, token, probs, l_mix, l_base, time.perf_counter() - start)
            hit_stop = torch.isin(token, self.stop_ids)
            alive &= ~hit_stop & (torch.tensor([len(s.tokens) for s in streams]) < limit)
            for i, s in enumerate(streams):
                s.done = not bool(alive[i])
            yield streams
            if not bool(alive.any()) or should_stop():
                return
            # Feed each request's token to all of its rows; finished rows keep decoding (ignored).
            row_token = torch.empty(len(layout.routes), dtype=torch.long)
            row_token[base_idx] = token
            row_token[policy_idx] = token
            logits = self._run(layout, lambda: decoder.step(row_token))

    @staticmethod
    def _record(streams, alive, token, probs, l_mix, l_base, now: float) -> None:
        logp_mix = torch.log_softmax(l_mix, -1)
        logp_base = torch.log_softmax(l_base, -1)
        kl = (logp_mix.exp() * (logp_mix - logp_base)).sum(-1)  # KL(π_λ ‖ π_base), T = 1
        ent = torch.special.entr(probs).sum(-1)  # H(π_sample) = Σ −p log p
        shifted = l_mix.argmax(-1) != l_base.argmax(-1)
        columns = zip(alive.tolist(), token.tolist(), kl.tolist(), ent.tolist(), shifted.tolist())
        for s, (live, tok, kl_i, ent_i, shift_i) in zip(streams, columns):
            if not live:
                continue
            s.tokens.append(tok)
            s.kl.append(kl_i)
            s.entropy.append(ent_i)
            s.shifted.append(shift_i)
            s.elapsed_s = now
            if s.first_token_s is None:
                s.first_token_s = now

    def generate(self, requests: Sequence[Request]) -> list[Stream]:
        streams: list[Stream] = []
        for streams in self.stream(requests):
            pass
        return streams

    def step_logits(self, requests: Sequence[Request], continuation: Sequence[int]) -> list[torch.Tensor]:
        """Realigned logits ℓ_λ at each position of a fixed continuation (teacher forcing); for tests/metrics."""
        layout = plan_rows(requests)
        decoder = self.new_decoder()
        out = [layout.realigned(self._run(layout, lambda: decoder.start(layout.prompts)))[0]]
        for tok in continuation:
            row_token = torch.full((len(layout.routes),), tok, dtype=torch.long)
            out.append(layout.realigned(self._run(layout, lambda: decoder.step(row_token)))[0])
        return out
