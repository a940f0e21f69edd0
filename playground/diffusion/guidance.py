"""Classifier-free guidance (Ho & Salimans 2022) on the shipped class-conditional digit DDPM.

    ε̂(x_t, y) = ε_θ(x_t, ∅) + w · (ε_θ(x_t, y) − ε_θ(x_t, ∅))

is the diffusion twin of the LM tab's logit mixing ℓ = ℓ_base + λ(ℓ_tuned − ℓ_base): w = 0 samples the
unconditional model, w = 1 the conditional one, w > 1 extrapolates (more typical digits, less diverse).
The sampling loop is written out (cf. diffusers' pipeline_ddim / scheduling_ddim.py) so each line maps
to a symbol of the paper. `generate_with_pipeline` applies the same knob to any diffusers text-to-image
pipeline through its `guidance_scale` argument.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.spatial.distance import pdist

if TYPE_CHECKING:
    from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, EulerDiscreteScheduler, UNet2DModel

from playground.diffusion.digits import IMAGE_SIZE, NULL_CLASS, class_probabilities, features
from playground.settings.paths import REPO_ROOT
from playground.settings.request import LIMITS, SCHEDULERS, GuidanceSettings
from playground.runtime.model_sources import is_local, local_or_hub
from playground.runtime.threads import releases_pool
from playground.settings.validation import InputError, check_choice, check_int, check_number, check_prompt, parse_floats

MODEL_DIR = REPO_ROOT / "models" / "digits"
# DDIM clips x̂_0 to [-1, 1]; recompute ε̂ from the clipped x̂_0 too, otherwise at w > 1 the extrapolated ε̂
# in the "direction pointing to x_t" term drifts samples off the data manifold (speckled digits).
STEP_KWARGS: dict[str, dict] = {"ddim": {"use_clipped_model_output": True}}


@dataclass
class GuidanceResult:
    images: np.ndarray  # x_0 samples, float32 [N,1,16,16] in [-1, 1]
    seconds: float
    progress: list[np.ndarray] = field(default_factory=list)  # predicted x̂_0 at a few steps, noisy → clean
    progress_timesteps: list[int] = field(default_factory=list)


@lru_cache(maxsize=2)
def load_unet(model_dir: Path = MODEL_DIR) -> UNet2DModel:
    """The shipped UNet ε_θ(x_t, t, y), float32 on CPU, from safetensors only."""
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(model_dir / "unet", use_safetensors=True, torch_dtype=torch.float32)
    return unet.eval().requires_grad_(False)


def make_scheduler(name: str, model_dir: Path = MODEL_DIR) -> DDIMScheduler | DDPMScheduler | EulerDiscreteScheduler:
    """A fresh scheduler (they hold per-run state) built from the training noise schedule β_1..β_T."""
    import diffusers

    return getattr(diffusers, SCHEDULERS[check_choice("scheduler", name, list(SCHEDULERS))]).from_config(_scheduler_config(model_dir))


@lru_cache(maxsize=2)
def _scheduler_config(model_dir: Path) -> dict:
    from diffusers import DDPMScheduler

    return dict(DDPMScheduler.load_config(model_dir / "scheduler"))


def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, w: float) -> torch.Tensor:
    """ε̂ = ε_uncond + w (ε_cond − ε_uncond).

    Ho & Salimans (2022, eq. 6) write ε̃ = (1 + w′) ε_cond − w′ ε_uncond, i.e. their w′ is our w − 1.
    """
    return eps_uncond + w * (eps_cond - eps_uncond)


def guided_eps(unet: UNet2DModel, x_in: torch.Tensor, t: torch.Tensor, y: torch.Tensor, w: float) -> torch.Tensor:
    """ONE batched UNet call on [x_t; x_t] with labels [y; ∅], then the CFG combination."""
    null = torch.full_like(y, NULL_CLASS)  # ∅: the label the model saw under condition dropout
    eps = unet(torch.cat([x_in, x_in]), t, class_labels=torch.cat([y, null])).sample
    eps_cond, eps_uncond = eps.chunk(2)  # ε_θ(x_t, y), ε_θ(x_t, ∅)
    return cfg_combine(eps_uncond, eps_cond, w)


@torch.no_grad()
@releases_pool  # a handler thread keeps no OpenMP pool afterwards (playground/runtime/threads.py)
def sample(settings: GuidanceSettings, unet: UNet2DModel | None = None, progress_frames: int = 0,
           should_stop=lambda: False) -> GuidanceResult:
    """Draw `num_samples` digits with guidance scale w; optionally keep `progress_frames` x̂_0 snapshots.

    `should_stop()` is checked before every denoising step (a cancel stops within one step)."""
    start = time.perf_counter()
    unet = unet if unet is not None else load_unet()
    scheduler = make_scheduler(settings.scheduler)
    gen = torch.Generator().manual_seed(settings.seed)  # per-call RNG: same seed → same images
    n, w = settings.num_samples, settings.guidance_scale
    y = torch.full((n,), settings.digit, dtype=torch.long)  # y: the condition (the requested digit)
    scheduler.set_timesteps(settings.steps)  # τ: the sub-sequence of the T = 1000 training steps
    # x_T ~ N(0, σ_T² I); σ_T = 1 for DDPM/DDIM (variance-preserving), ≫ 1 for Euler (variance-exploding σ).
    x_t = torch.randn((n, 1, IMAGE_SIZE, IMAGE_SIZE), generator=gen) * scheduler.init_noise_sigma
    keep = _frame_indices(len(scheduler.timesteps), progress_frames)
    result = GuidanceResult(images=np.empty(0, np.float32), seconds=0.0)
    for i, t in enumerate(scheduler.timesteps):
        if should_stop():
            raise InputError("diffusion sampling cancelled; nothing was computed")
        x_in = scheduler.scale_model_input(x_t, t)  # Euler: x_t / √(σ_t² + 1); identity for DDPM/DDIM
        eps_hat = guided_eps(unet, x_in, t, y, w)  # ε̂(x_t, y)
        # x_{t-1} from x_t and ε̂ (DDIM: Song et al. 2021 eq. 12 with η = 0; DDPM: posterior mean + σ_t z)
        out = scheduler.step(eps_hat, t, x_t, generator=gen, **STEP_KWARGS.get(settings.scheduler, {}))
        x_t = out.prev_sample
        if i in keep:  # x̂_0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t, the model's current guess of the clean image
            result.progress.append(out.pred_original_sample.clamp(-1, 1).numpy().copy())
            result.progress_timesteps.append(int(t))
    result.images = x_t.clamp(-1, 1).numpy().astype(np.float32)  # x_0
    result.seconds = time.perf_counter() - start
    return result


def _frame_indices(num_steps: int, frames: int) -> set[int]:
    if frames <= 0:
        return set()
    return {int(round(k)) for k in np.linspace(0, num_steps - 1, min(frames, num_steps))}


# ---- metrics: "alignment" (does the classifier see the requested digit?) and diversity ----

def class_accuracy(images: np.ndarray, digit: int) -> float:
    """Share of samples the classifier labels as `digit`."""
    return float((class_probabilities(images).argmax(axis=1) == digit).mean())


def class_prob_mean(images: np.ndarray, digit: int) -> float:
    """Mean classifier probability p(digit | x_0)."""
    return float(class_probabilities(images)[:, digit].mean())


def diversity(images: np.ndarray) -> float:
    """Mean pairwise L2 distance between samples in pixel space ([-1,1] pixels, 256 per image)."""
    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    return float(pdist(flat).mean()) if len(flat) > 1 else 0.0


def feature_spread(images: np.ndarray) -> float:
    """Mean pairwise L2 distance in the classifier's hidden-feature space."""
    feats = features(images)
    return float(pdist(feats).mean()) if len(feats) > 1 else 0.0


def metrics(images: np.ndarray, digit: int) -> dict[str, float]:
    return {
        "class_accuracy": class_accuracy(images, digit),
        "class_prob_mean": class_prob_mean(images, digit),
        "diversity": diversity(images),
        "feature_spread": feature_spread(images),
    }


def parse_scales(text: object) -> list[float]:
    """"0,1,2,4,8" (or a list) → checked guidance scales; InputError names `scales`."""
    raw = parse_floats("scales", text)
    if len(raw) > LIMITS.max_guidance_scales:
        raise InputError(f"scales: {len(raw)} values; the limit is {LIMITS.max_guidance_scales}")
    return [check_number("scales", w, 0.0, LIMITS.max_guidance) for w in raw]


def sweep_with_images(base: GuidanceSettings, scales: list[float], should_stop=lambda: False) -> tuple[list[dict], list[np.ndarray]]:
    """Sample the same x_T at each (checked) w; one metrics row and one image batch per scale."""
    rows, batches = [], []
    for w in scales:
        if should_stop():
            raise InputError("diffusion sweep cancelled; nothing was computed for the remaining scales")
        res = sample(replace(base, guidance_scale=w), should_stop=should_stop)
        rows.append({"scale": w, **metrics(res.images, base.digit), "seconds": round(res.seconds, 3)})
        batches.append(res.images)
    return rows, batches


def sweep(base: GuidanceSettings, scales: list[float], should_stop=lambda: False) -> list[dict]:
    """Rows {scale, class_accuracy, class_prob_mean, diversity, feature_spread, seconds}, one per w."""
    return sweep_with_images(base, scales, should_stop)[0]


def grid_image(images: np.ndarray, nrow: int = 8, scale: int = 4, pad: int = 1) -> np.ndarray:
    """Tile [N,1,H,W] images in [-1,1] into a uint8 H×W grid, `nrow` images per row, upscaled ×scale."""
    imgs = np.asarray(images, dtype=np.float32).reshape(len(images), *np.shape(images)[-2:])
    n, h, w = imgs.shape
    nrow = max(1, min(int(nrow), n))
    rows = -(-n // nrow)
    grid = np.zeros((rows * (h + pad) + pad, nrow * (w + pad) + pad), dtype=np.float32)
    for k, img in enumerate(imgs):
        r, c = divmod(k, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    pixels = np.round((np.clip(grid, -1, 1) + 1.0) * 127.5).astype(np.uint8)
    return np.kron(pixels, np.ones((scale, scale), dtype=np.uint8))


def real_data_reference(digit: int) -> dict[str, float]:
    """Diversity of the real held-out images of `digit` (what an unbiased sampler of that class would show)."""
    from playground.diffusion.digits import load_digit_images

    images, labels = load_digit_images("test")
    real = images[labels == digit]
    return {"diversity": diversity(real), "feature_spread": feature_spread(real), "n": int(len(real))}


def plot_sweep(rows: list[dict], reference: dict | None = None) -> Figure:
    """Two panels against w: alignment (accuracy, p(digit)) and diversity (pixels, classifier features).

    `reference` (from `real_data_reference`) draws the real held-out digits' diversity as dotted lines: guidance
    that pushes diversity below them narrows the class; w = 1 (the plain conditional model) sits near them."""
    w = [r["scale"] for r in rows]
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot(w, [r["class_accuracy"] for r in rows], "o-", label="class accuracy")
    left.plot(w, [r["class_prob_mean"] for r in rows], "s--", label="mean p(digit)")
    left.set(xlabel="guidance scale w", ylabel="alignment", ylim=(-0.02, 1.02), title="Alignment rises with w")
    left.legend(loc="lower right")
    right.plot(w, [r["diversity"] for r in rows], "o-", color="tab:red", label="pixel L2")
    right.set(xlabel="guidance scale w", ylabel="mean pairwise pixel L2", title="Diversity falls with w")
    twin = right.twinx()
    twin.plot(w, [r["feature_spread"] for r in rows], "s--", color="tab:purple", label="feature L2")
    twin.set_ylabel("mean pairwise feature L2")
    if reference:
        right.axhline(reference["diversity"], color="tab:red", ls=":", lw=1.2,
                      label=f"real held-out digits (n = {reference['n']}), pixel")
        twin.axhline(reference["feature_spread"], color="tab:purple", ls=":", lw=1.2, label="real, feature")
    right.legend(handles=right.lines + twin.lines, loc="upper right")
    return fig


# ---- any diffusers text-to-image pipeline ----

def _pipeline_source(src: str) -> str:
    """A local directory with model_index.json, or a Hub id "owner/name"; ValueError otherwise."""
    src = (src or "").strip()
    if is_local(src):
        path = Path(src).expanduser()
        if not path.is_dir():
            raise InputError(f"src: no local pipeline directory {src!r} and not a Hub id like 'owner/name'")
        if not (path / "model_index.json").is_file():
            raise InputError(f"src: {src!r} is a directory without model_index.json (not a diffusers pipeline)")
        return str(path)
    try:
        return str(local_or_hub(src))
    except ValueError:
        raise InputError(f"src: no local pipeline directory {src!r} and not a Hub id like 'owner/name'") from None


@lru_cache(maxsize=1)
def _load_pipeline(src: str) -> DiffusionPipeline:
    try:  # safetensors only; no trust_remote_code, no custom_pipeline
        from diffusers import DiffusionPipeline

        return DiffusionPipeline.from_pretrained(src, use_safetensors=True)
    except (OSError, EnvironmentError) as exc:
        raise InputError(f"src: could not load diffusers pipeline {src!r}: {exc}") from exc


def pipeline_kwargs(call: object, prompt: str, guidance_scale: float, steps: int, seed: int, n: int) -> dict:
    """Arguments for a pipeline's __call__, keeping only those its signature accepts."""
    wanted = {
        "prompt": prompt,
        "num_inference_steps": steps,
        "num_images_per_prompt": n,
        "generator": torch.Generator().manual_seed(seed),
        "guidance_scale": guidance_scale,
    }
    params = inspect.signature(call).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return wanted
    return {k: v for k, v in wanted.items() if k in params}


@releases_pool
def generate_with_pipeline(
    src: str, prompt: str, guidance_scale: float = 7.5, steps: int = 30, seed: int = 0, n: int = 1
) -> list[np.ndarray]:
    """Text-to-image with any diffusers pipeline (Hub id or local dir); returns uint8 H×W×3 arrays."""
    guidance_scale = check_number("guidance_scale", guidance_scale, 0.0, LIMITS.max_guidance)
    steps = check_int("steps", steps, 1, LIMITS.max_diffusion_steps)
    n = check_int("n", n, 1, LIMITS.max_diffusion_images)
    seed = check_int("seed", seed, 0, LIMITS.max_seed)
    prompt = check_prompt(prompt)
    pipe = _load_pipeline(_pipeline_source(src))
    out = pipe(**pipeline_kwargs(pipe.__call__, prompt, guidance_scale, steps, seed, n))
    return [np.asarray(img.convert("RGB") if hasattr(img, "convert") else img) for img in out.images]
