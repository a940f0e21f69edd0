"""Settings of one classifier-free-guidance request, without torch or diffusers (the UI builds from these).

`playground.diffusion.guidance` re-exports everything here.
"""
from __future__ import annotations

from dataclasses import dataclass

from playground.settings import LIMITS
from playground.validation import check_choice, check_int, check_number

# Scheduler name -> diffusers class name (diffusers is imported on first use: it takes ~1 s to import).
SCHEDULERS = {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler", "euler": "EulerDiscreteScheduler"}
MAX_GUIDANCE = 20.0


def check_guidance(value: object) -> float:
    """w must be a finite number in [0, MAX_GUIDANCE]."""
    return check_number("guidance_scale", value, 0.0, MAX_GUIDANCE)


def check_scheduler(name: object) -> str:
    return check_choice("scheduler", name, list(SCHEDULERS))


@dataclass(frozen=True)
class GuidanceSettings:
    """One sampling request; constructing it validates every field (ValueError names the field)."""

    # Which digit y to condition on (0–9).
    digit: int = 3
    # Guidance scale w. Higher w = samples more typical of the digit, less diverse; 0 = unconditional
    # (ignores the digit), 1 = plain conditional model, > 1 extrapolates past it.
    guidance_scale: float = 3.0
    # Images drawn at once. More = better estimates of accuracy / diversity, slower.
    num_samples: int = 16
    # Denoising steps. More = cleaner samples, slower (time is linear in steps).
    steps: int = 50
    # "ddim" (deterministic, good at few steps), "ddpm" (stochastic, needs more steps), "euler" (ODE, k-diffusion σ).
    scheduler: str = "ddim"
    # Random seed; the same seed and settings reproduce the same images (and the same x_T across w).
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("digit", check_int("digit", self.digit, 0, 9))
        set_("guidance_scale", check_guidance(self.guidance_scale))
        set_("num_samples", check_int("num_samples", self.num_samples, 1, LIMITS.max_diffusion_images))
        set_("steps", check_int("steps", self.steps, 1, LIMITS.max_diffusion_steps))
        set_("seed", check_int("seed", self.seed, 0, LIMITS.max_seed))
        set_("scheduler", check_scheduler(self.scheduler))
