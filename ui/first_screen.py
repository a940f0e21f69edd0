"""What a newcomer reads first: the plain framing above the tabs, the technical terms behind "What does this
mean?", the limits as a readable table, and which adapter the pickers start on (and how each is labelled).

Presentation only: the limits come from `playground.settings.LIMITS`, the adapters from the registry's cards
(their descriptions say "Helpful: …" or "Reward-hacking example (labelled): …").
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from playground import registry
from playground.settings.request import LIMITS, Limits

PLAIN = """Ask a question and compare three answers from one small language model: **as it is**, **after extra
training to prefer a certain kind of answer**, and **a mix of the two that you set with one slider (λ)**.
Slide λ from 0 (the model as it is) to 1 (the trained model) and past it, and see how the answers change."""
JARGON = """- **Base model**: SmolLM2-135M-Instruct, a small open chat model, running on this server's CPU.
- **Adapter (LoRA)**: a small set of extra weights added to the base model; each one here was trained with
  **DPO** (direct preference optimisation) on pairs of answers an automatic **judge** preferred — e.g. more
  on-topic, shorter, or more upbeat. The picker says which are helpful and which is the labelled example of
  *reward hacking* (the judge's score rises while the answers get worse).
- **λ (realignment strength)**: the realigned column mixes the two models' next-token scores,
  `ℓ = ℓ_base + λ·(ℓ_tuned − ℓ_base)`: 0 = base model, 1 = tuned model, above 1 = extrapolated past it.
- **β (KL strength)**: the trade-off DPO trains with; λ = β_train/β approximates retraining at another β
  (Liu et al., ICML 2024). Higher β = closer to the base model.
- **Readouts**: *drift* (KL divergence from the base model, in nats per token), *randomness* (entropy),
  the judge's score, tokens and speed; hover one for details.
- **Temperature / top-p**: how random the sampling is (0 = always the most likely token)."""

# Plain words for each limit (unit in the value column); a limit not listed shows its field name.
LIMIT_WORDS = {
    "max_prompt_chars": ("Longest question", "{:,} characters"),
    "max_prompt_tokens": ("Longest question with the chat history, after tokenising", "{:,} tokens"),
    "max_new_tokens": ("Longest answer", "{:,} tokens"),
    "min_lambda": ("Smallest λ (the base model)", "{:g}"),
    "max_lambda": ("Largest λ (extrapolated; past it answers fall apart)", "{:g}"),
    "min_kl_strength": ("Smallest KL strength β (API)", "{:g}"),
    "max_kl_strength": ("Largest KL strength β (API)", "{:g}"),
    "max_temperature": ("Highest temperature", "{:g}"),
    "max_samples_per_setting": ("Samples per setting in a sweep", "{:,}"),
    "max_sweep_rows": ("Answers decoded together in one sweep batch", "{:,}"),
    "max_sweep_prompts": ("Prompts in one sweep", "{:,}"),
    "max_sweep_values": ("λ (or β) values, and temperatures, in one sweep", "{:,}"),
    "max_history_turns": ("Turns in one conversation (then Clear)", "{:,}"),
    "max_diffusion_steps": ("Diffusion sampling steps", "{:,}"),
    "max_diffusion_images": ("Diffusion images at once", "{:,}"),
    "max_guidance": ("Largest diffusion guidance scale w", "{:g}"),
    "max_guidance_scales": ("Guidance scales in one diffusion sweep", "{:,}"),
    "max_cfg_scale": ("Largest prompt-guidance scale γ", "{:g}"),
    "max_bon_n": ("Best-of-n: candidates per kept answer", "{:,}"),
    "max_seed": ("Largest seed", "{:,}"),
    "request_timeout_s": ("Time limit of one chat turn or duel", "{:g} s"),
    "sweep_timeout_s": ("Time limit of a sweep, probe or DeRa check", "{:g} s"),
    "max_upload_bytes": ("Largest uploaded prompts file", "{:,} bytes"),
    "max_job_seconds": ("Longest estimated job (refused above, with the estimate)", "{:g} s"),
    "max_job_kv_bytes": ("Most memory one job may hold for its context (KV cache)", "{:.1f} GB"),
}


def limits_table(limits: Limits = LIMITS) -> str:
    """Every limit as a Markdown table row: what it bounds, in words, and its value with its unit."""
    rows = ["| What | Limit |", "|---|---|"]
    for f in dataclasses.fields(limits):
        value = getattr(limits, f.name)
        words, form = LIMIT_WORDS.get(f.name, (f.name.replace("_", " "), "{}"))
        shown = form.format(value / 1e9 if f.name == "max_job_kv_bytes" else value)
        rows.append(f"| {words} | {shown} |")
    return "\n".join(rows)


def default_adapter(names: Sequence[str]) -> str | None:
    """The adapter the pickers start on: a helpful one when installed, else the first."""
    return registry.default_adapter(sorted(names), registry.HELPFUL_ADAPTERS)


def adapter_tag(description: str) -> str:
    """A short tag for the picker from the card's description: "helpful", "reward-hacking example", or ""."""
    d = (description or "").lower()
    if d.startswith("reward-hacking example"):
        return "reward-hacking example"
    if d.startswith("helpful"):
        return "helpful"
    return ""


def adapter_choices(adapters: Mapping) -> list[tuple[str, str]]:
    """(label, name) for a picker: the name, and its tag where the card gives one."""
    out = []
    for name in sorted(adapters):
        tag = adapter_tag(getattr(adapters[name], "description", ""))
        out.append((f"{name} — {tag}" if tag else name, name))
    return out
