"""What the engine is asked to decode and what it gives back: `Request` (one stream to decode) and `Stream`.

A request carries its answer's knobs as one `DecodeSettings` (playground/settings/request.py: λ, mode, T, top-p,
max tokens, seed), as vLLM's request carries its `SamplingParams`; the defaults live there, once. The batch
(batch.py) and its sampler (sampling.py) read `request.settings`. Nothing here checks user input: the
settings arrive checked (playground/settings/validation.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from playground.settings.request import DEFAULT_DECODE, DecodeSettings

__all__ = ["Request", "Stream"]


@dataclass(frozen=True)
class Request:
    """One stream to decode. `adapter=None` (or λ = 0 in logits mode) decodes the base model alone."""

    prompt_ids: tuple[int, ...]
    adapter: str | None = None
    # λ = β_train/β, mode ("logits": ℓ_λ = ℓ_base + λ(ℓ_tuned − ℓ_base); "weights": LoRA scale λ), temperature T
    # (0 = greedy), top-p, max_new_tokens and seed of this answer.
    settings: DecodeSettings = DEFAULT_DECODE
    # None: no log-probabilities; k >= 0: each token's log-probability under the distribution it was drawn
    # from, with the k most likely tokens of that distribution (batch.token_logprobs). Never changes the tokens.
    logprobs: int | None = None
    # Prompt guidance (LM classifier-free guidance): ℓ = ℓ_uncond + γ(ℓ_cond − ℓ_uncond), each branch the same
    # (λ-realigned) policy; the unconditional branch reads `uncond_prompt_ids` (the chat template without the
    # user's text, or with a negative prompt). γ = 1: the plain model, no extra rows; γ = 0: the unconditional one.
    cfg_scale: float = 1.0
    uncond_prompt_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.cfg_scale != 1.0 and not self.uncond_prompt_ids:
            raise ValueError("a prompt-guided request (cfg_scale ≠ 1) needs uncond_prompt_ids")


@dataclass
class Stream:
    """What one request produced so far."""

    tokens: list[int] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)  # KL(π_λ ‖ π_base) per position, nats, at T = 1
    entropy: list[float] = field(default_factory=list)  # entropy of the distribution actually sampled from
    shifted: list[bool] = field(default_factory=list)  # base model's top token ≠ realigned top token
    # Per position when the request asked (Request.logprobs): (log π(token), [(id, log π(id)), ...] top k).
    logprobs: list[tuple[float, list[tuple[int, float]]]] = field(default_factory=list)
    done: bool = False
    first_token_s: float | None = None  # seconds from submission (queueing included) to the first token
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

    def copy(self) -> Stream:
        return Stream(list(self.tokens), list(self.kl), list(self.entropy), list(self.shifted), list(self.logprobs),
                      self.done, self.first_token_s, self.elapsed_s)
