"""Typed settings for every knob the playground exposes, with the direction each one moves the output.

The UI reads its defaults and slider ranges from here, and `playground.validation` checks every request
(UI, Gradio API and CLI alike) against `Limits`, because Gradio's API skips slider limits.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("base", "realigned", "tuned")  # the side-by-side view: base model; λ-realigned; tuned as trained (λ = 1)


def cache_dir() -> Path:
    """Where converted weights and other derived files live (outside git).

    Override with the environment variable PLAYGROUND_CACHE.
    """
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "controllability-playground"
    path = Path(os.environ.get("PLAYGROUND_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_dtype_name() -> str:
    """Weights' dtype, from PLAYGROUND_DTYPE: "auto" (default), "float32" or "bfloat16".

    "auto" picks bfloat16 on CPUs with native bf16 matmuls (AMX / AVX512-BF16; 1.2-1.7x faster decoding
    here) and float32 elsewhere. bfloat16 vs float32 on the shipped model (4 prompts x λ 0/1/2, 576
    teacher-forced positions): mean KL 0.003 nats/token (p95 0.012), top-1 agreement 96%; for scale, λ = 0.5
    moves the policy 0.04 nats/token. float32 reproduces reference implementations to 1e-4 (the tests use it).
    """
    name = os.environ.get("PLAYGROUND_DTYPE", "auto")
    if name not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"PLAYGROUND_DTYPE must be auto, float32 or bfloat16; got {name!r}")
    return name


@dataclass(frozen=True)
class DecodeSettings:
    """One generation request's knobs. Every field is per row: a batch may mix many settings."""

    # KL strength β of the realigned policy. Higher β = closer to the base model (less alignment);
    # β = β_train reproduces the tuned model; β < β_train extrapolates past it. λ = β_train / β.
    kl_strength: float = 0.1
    # Sampling temperature. Higher = more random and more diverse; 0 = greedy (always the top token).
    temperature: float = 0.7
    # Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p.
    # Lower = safer, less diverse; 1.0 = no truncation.
    top_p: float = 0.95
    # Upper bound on the answer's length in tokens. Higher = longer answers, slower.
    max_new_tokens: int = 96
    # Random seed; the same seed and settings reproduce the same text.
    seed: int = 0
    # "logits": decoding-time realignment, ℓ = ℓ_base + λ(ℓ_tuned − ℓ_base) (KL-regularised optimum).
    # "weights": scale the LoRA delta by λ (one forward, cheaper, not the KL-optimal policy).
    mode: str = "logits"


@dataclass(frozen=True)
class Limits:
    """Server-side caps for every request. Shown in the UI; enforced for UI, API and CLI."""

    max_prompt_chars: int = 4000  # characters are capped before tokenising
    max_prompt_tokens: int = 1024  # then tokens (after the chat template)
    max_new_tokens: int = 256
    min_lambda: float = 0.0  # λ = 0 is the base model
    max_lambda: float = 8.0  # λ > 1 extrapolates; past ~8 outputs degenerate
    min_kl_strength: float = 0.01  # β; the UI slider's range; λ = β_train/β must also be within λ limits
    max_kl_strength: float = 100.0
    max_temperature: float = 2.0
    max_samples_per_setting: int = 16
    max_sweep_rows: int = 128  # settings × samples per prompt processed in one batch
    max_sweep_prompts: int = 64
    max_history_turns: int = 8
    max_diffusion_steps: int = 200
    max_diffusion_images: int = 64
    max_seed: int = 2**31 - 1
    request_timeout_s: float = 120.0  # wall-clock limit per request; frees the slot


LIMITS = Limits()
DEFAULT_DECODE = DecodeSettings()


@dataclass(frozen=True)
class ServeSettings:
    """Queue and concurrency of the Gradio app."""

    queue_max_size: int = 16  # requests waiting beyond this get "busy, try again" at once
    lm_concurrency: int = 4  # LM events running together (they share one model, stepped under a lock)
    diffusion_concurrency: int = 1  # diffusion events have their own pool so neither starves the other
    extra: dict = field(default_factory=dict)
