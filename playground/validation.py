"""Server-side checks for every request (UI events, Gradio API, CLI). Gradio's API skips slider limits.

Each check raises `InputError` with a message naming the parameter and what is allowed; the UI turns it
into `gr.Error`, the CLI into one line on stderr and exit code 2. Nothing is clamped silently.
"""
from __future__ import annotations

import math
from typing import Sequence

from playground.settings import LIMITS, Limits


class InputError(ValueError):
    """Bad user input; the message is shown to the user as is."""


def check_number(name: str, value: object, low: float, high: float, *, low_open: bool = False) -> float:
    """A finite number within [low, high] (or (low, high] when low_open)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(f"{name} must be a number; got {value!r}") from None
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number; got {value}")
    below = value <= low if low_open else value < low
    if below or value > high:
        left = "(" if low_open else "["
        raise InputError(f"{name} must be in {left}{low:g}, {high:g}]; got {value:g}")
    return value


def check_int(name: str, value: object, low: int, high: int) -> int:
    number = check_number(name, value, low, high)
    if number != int(number):
        raise InputError(f"{name} must be a whole number in [{low}, {high}]; got {value!r}")
    return int(number)


def check_prompt(prompt: object, limits: Limits = LIMITS) -> str:
    """A non-empty prompt no longer than the character cap (tokens are checked after the chat template)."""
    if not isinstance(prompt, str):
        raise InputError(f"prompt must be text; got {type(prompt).__name__}")
    if not prompt.strip():
        raise InputError("prompt is empty; type a message first")
    if len(prompt) > limits.max_prompt_chars:
        raise InputError(f"prompt has {len(prompt)} characters; the limit is {limits.max_prompt_chars}")
    return prompt


def check_prompt_tokens(n_tokens: int, limits: Limits = LIMITS) -> None:
    if n_tokens > limits.max_prompt_tokens:
        raise InputError(f"prompt has {n_tokens} tokens (with the conversation so far); the limit is {limits.max_prompt_tokens}")


def check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise InputError(f"unknown {name} {value!r}; available: {', '.join(map(str, allowed)) or '(none)'}")
    return str(value)


def check_decode(temperature: object, top_p: object, max_new_tokens: object, seed: object,
                 limits: Limits = LIMITS) -> tuple[float, float, int, int]:
    return (
        check_number("temperature", temperature, 0.0, limits.max_temperature),
        check_number("top_p", top_p, 0.0, 1.0, low_open=True),
        check_int("max_new_tokens", max_new_tokens, 1, limits.max_new_tokens),
        check_int("seed", seed, 0, limits.max_seed),
    )


def lambda_from(kl_strength: object | None, lam: object | None, beta_train: float, limits: Limits = LIMITS) -> tuple[float, float]:
    """Return (λ, β) from either the KL strength β or λ directly; λ = β_train / β."""
    if (kl_strength is None) == (lam is None):
        raise InputError("give exactly one of kl_strength (β) or lambda (λ)")
    if lam is not None:
        value = check_number("lambda", lam, limits.min_lambda, limits.max_lambda)
        return value, (beta_train / value if value > 0 else math.inf)
    beta = check_number("kl_strength", kl_strength, limits.min_kl_strength, limits.max_kl_strength)
    value = beta_train / beta
    if not limits.min_lambda <= value <= limits.max_lambda:
        low = beta_train / limits.max_lambda
        raise InputError(
            f"kl_strength {beta:g} gives λ = β_train/β = {value:.3g}, outside [{limits.min_lambda:g}, {limits.max_lambda:g}]; "
            f"use kl_strength ≥ {low:.3g} for this adapter (β_train = {beta_train:g})"
        )
    return value, beta
