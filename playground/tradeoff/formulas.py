"""The formula table: every control as one extrapolation ℓ_ref + w·(ℓ_x − ℓ_ref), or best-of-n's selection.

Shown in the Trade-off tab's intro and kept verbatim in docs/controls.md (a test checks both say the same).
"""
from __future__ import annotations

FORMULA_TABLE = """| control | sampling policy | ℓ_ref (where it starts) | ℓ_x (what it moves towards) | knob w | what is extrapolated (w > 1) | = the diffusion tab's w when |
|---|---|---|---|---|---|---|
| `dera` (decoding-time realignment) | ℓ_base + λ·(ℓ_tuned − ℓ_base) | base model, same prompt | tuned model, same prompt | λ = β_train/β | the alignment direction: a weaker KL penalty than trained | ℓ_base is read as ε_uncond and ℓ_tuned as ε_cond: the same lerp, in logits instead of noise |
| `weights` (ExPO, LoRA × λ) | ℓ(θ_base + λ·Δθ_LoRA) | base weights | tuned weights | λ | the weight delta: one forward, not the KL-optimal policy | never exactly: the extrapolation is in weights, the logits move non-linearly |
| `cfg` (prompt guidance) | ℓ_λ^uncond + γ·(ℓ_λ − ℓ_λ^uncond) | the same policy without the user's text (or on a negative prompt) | the same policy on the prompt | γ | the prompt's influence: more on-prompt, less diverse | always: it *is* classifier-free guidance, with the prompt as the condition (γ = w; γ = 0 unconditional, γ = 1 plain) |
| `bon` (best-of-n) | keep argmax_j r(y_j) of n samples y_j ~ π_λ | π_λ (λ = 0: the base model) | — (a selection, not a mix) | n | nothing is extrapolated: KL(π_bon ‖ π) ≤ log n − (n−1)/n | never: selection reweights whole answers by their reward rank, not per token |
| temperature | ℓ / T | — | — | 1/T | sharpening (T < 1) of whichever policy above | — |

All logit formulas are one function in the engine (`playground.lm.batch.extrapolate`, ℓ_ref + w·(ℓ_x − ℓ_ref)):
λ realignment and prompt guidance compose as ℓ_a + γ·(ℓ_b − ℓ_c) with ℓ_b = ℓ_λ(prompt), ℓ_a = ℓ_c = ℓ_λ(unconditional)."""
