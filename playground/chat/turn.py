"""One chat turn: `ChatTurn` (the prompt, the adapter, the realigned column's checked `DecodeSettings`) and its
one builder, `build_turn`, which the facade (`Playground.turn`: API, CLI) and the conversation (`check_turn`:
the Side-by-side tab) both use. No gradio, no torch.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from playground.settings.request import DecodeSettings, nominal_beta
from playground.settings.validation import InputError, cfg_guidance, check_choice, check_prompt, decode_settings


@dataclass(frozen=True)
class ChatTurn:
    """One user turn: the prompt, the adapter, and the realigned column's decode settings."""

    prompt: str
    adapter: str
    decode: DecodeSettings  # λ = β_train/β, mode, T, top-p, max tokens, seed: checked once, carried to the sampler
    beta_train: float  # β the adapter was trained with
    # Prompt guidance of the realigned column: ℓ = ℓ_uncond + γ(ℓ_cond − ℓ_uncond). 1 = off (the plain model);
    # higher = follows the prompt more strongly, less diverse; 0 = ignores the prompt.
    cfg_scale: float = 1.0
    # What the unconditional branch reads instead of the user's text ("" = an empty user turn).
    negative_prompt: str = ""

    @property
    def kl_strength(self) -> float:
        """Nominal β = β_train / λ shown beside λ."""
        return nominal_beta(self.beta_train, self.decode.lam)

    def column(self, name: str) -> DecodeSettings:
        """The settings each column decodes with: base λ = 0, tuned λ = 1 (logits), realigned as chosen."""
        if name == "base":
            return replace(self.decode, lam=0.0, mode="logits")
        if name == "tuned":
            return replace(self.decode, lam=1.0, mode="logits")
        return self.decode


def build_turn(adapters: Mapping, prompt: object, adapter: object, decode: DecodeSettings | Mapping[str, object],
               cfg_scale: object = 1.0, negative_prompt: object = "", useful_chars: int | None = None) -> ChatTurn:
    """The one ChatTurn builder. `adapters`: name → entry with `beta_train` (the facade's or the registry's).

    `decode` is a checked `DecodeSettings` (the UI builds it from its sliders at the event's entry) or raw knobs
    (lam or kl_strength, mode, temperature, top_p, max_new_tokens, seed; λ = β_train/β from the adapter's β_train),
    checked here. `useful_chars`: the chat's cap past which the small model gives no useful answer."""
    text = check_prompt(prompt)
    if useful_chars is not None and len(text) > useful_chars:
        raise InputError(f"prompt has {len(text)} characters; this small model gives no useful answer past about "
                         f"{useful_chars} (it stops at once after a long wait): shorten it")
    name = check_choice("adapter", adapter, sorted(adapters))
    beta_train = float(adapters[name].beta_train)
    gamma, negative = cfg_guidance(cfg_scale, negative_prompt)
    d = decode if isinstance(decode, DecodeSettings) else decode_settings(beta_train=beta_train, **decode)
    return ChatTurn(text, name, d, beta_train, gamma, negative)
