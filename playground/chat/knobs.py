"""The Side-by-side λ knob in the UI's terms: where it starts, the nominal KL strength β = β_train/λ it means,
and the note beside it. The β/λ conversion the UI needs is here, once (the tab and the /chat API's β input use
it); the checks are in playground/settings/validation.py. No gradio, no torch.
"""
from __future__ import annotations

from playground.chat.readouts import beta_label, settings_warning
from playground.settings.request import CHAT

# λ = β_train/β at β = beta_factor · β_train: halfway between the base (λ = 0) and the tuned model (λ = 1).
DEFAULT_LAMBDA = 1 / CHAT.beta_factor
LAMBDA_STEP = 0.01


def default_kl_strength(beta_train: float) -> float:
    """The nominal β of the starting λ, β = β_train/λ = beta_factor · β_train (where the /chat API's β starts)."""
    return CHAT.beta_factor * beta_train


def knob_note(beta_train: float, lam: object, temperature: object, top_p: object, max_new_tokens: object) -> str:
    """Beside the λ slider: what λ means for this adapter (β = β_train/λ) and a warning at the knobs' extremes;
    "" while a value is not a number yet."""
    try:
        lam = float(lam)  # type: ignore[arg-type]
        warn = settings_warning(lam, float(temperature), float(top_p), int(max_new_tokens))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return beta_label(lam, beta_train) + (f"  \n{warn}" if warn else "")
