"""The "Diffusion guidance" tab: classifier-free guidance on the digit DDPM, the diffusion twin of λ.

Call `build_guidance_tab()` inside an open `gr.Blocks()` / `gr.Tab("Diffusion guidance")` context.
All events share the concurrency pool "diffusion" (limit 1) so sampling never starves the LM tab.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import gradio as gr
import numpy as np
import pandas as pd

from playground.settings.request import DEFAULT_GUIDANCE, GUIDANCE_PROGRESS, GUIDANCE_SCALES, LIMITS, SCHEDULERS
from playground.settings.validation import InputError, guidance_settings
from ui import pools
from ui.components import Dropdown, Number, Radio, Slider
from ui.jobs import long_job, run_job, show_cancelled

if TYPE_CHECKING:
    pass

FORMULAS = r"""
| Diffusion (this tab) | Language model (LM tab) |
|---|---|
| ε̂ = ε_uncond + **w** · (ε_cond − ε_uncond) | ℓ = ℓ_base + **λ** · (ℓ_tuned − ℓ_base) |
| w = 0: unconditional model | λ = 0: base model |
| w = 1: conditional model | λ = 1: tuned model |
| w > 1: extrapolation, more typical, less diverse | λ > 1: extrapolation, more aligned, less diverse |

Same move in both: start from the model without the condition, step along the difference the condition
makes, and scale the step. **w ↔ λ.** Classifier-free guidance: Ho & Salimans (2022).
"""
DEFAULT = DEFAULT_GUIDANCE
SHOWN_PROGRESS_SAMPLES, PROGRESS_FRAMES = GUIDANCE_PROGRESS
EVENT = pools.DIFFUSION
# Measured (docs/performance.md): 64 samples × 50 DDIM steps in 5.4 s on the 2-core CPU, i.e. ~1.7 ms per sample-step
SAMPLE_STEP_S, START_S = 0.0017, 0.5
SWEEP_TITLES = {"scale": "w", "class_accuracy": "accuracy", "class_prob_mean": "p(digit)", "diversity": "diversity",
                "feature_spread": "feature spread", "seconds": "s"}  # the sweep table's short headers (fit a phone)
SHOWN_SCALE = 8  # each 16 × 16 digit drawn 8× (128 px) with nearest-neighbour pixels: the numbers are unchanged


def _settings(digit, w, samples, steps, scheduler, seed):
    """The knobs checked once (InputError names the field), shown as a toast."""
    try:
        return guidance_settings(digit=digit, guidance_scale=w, num_samples=samples, steps=steps, scheduler=scheduler,
                                 seed=seed)
    except InputError as exc:
        raise gr.Error(str(exc)) from None


def estimate_line(samples, steps, scales=None) -> str:
    """Before it runs: how many denoising steps and about how long (a sweep repeats the batch once per w)."""
    try:
        n, k = int(samples), int(steps)
        reps = len(scales) if scales is not None else 1
    except (TypeError, ValueError):
        return ""
    seconds = reps * (START_S + n * k * SAMPLE_STEP_S)
    what = f"{reps} scales × " if scales is not None else ""
    return f"**Estimate:** {what}{n} samples × {k} steps ≈ {max(seconds, 1):.0f} s on a 2-core CPU"


def _counted(should_stop, total: int, progress, what: str):
    """`should_stop`, which the sampler calls once before every denoising step, also moves the progress bar."""
    done = [0]

    def check() -> bool:
        done[0] += 1
        if progress is not None and total:
            progress(min(done[0], total) / total, desc=f"{what}: step {min(done[0], total)} of {total}")
        return should_stop()
    return check


def _generate(s, should_stop, progress=None) -> list:
    """Sample one batch → [sample grid, x̂_0 progress grid, readout markdown]."""
    from playground.diffusion import guidance as G  # torch + the UNet load on first use, not at app start-up

    res = G.sample(s, progress_frames=PROGRESS_FRAMES, should_stop=_counted(should_stop, s.steps, progress, "denoising"))
    grid = G.grid_image(res.images, nrow=min(8, math.ceil(math.sqrt(s.num_samples))), scale=SHOWN_SCALE)  # square-ish
    frames = [f[:SHOWN_PROGRESS_SAMPLES] for f in res.progress]  # rows: samples, columns: noisy → clean
    per_sample = np.stack(frames, axis=1).reshape(-1, *frames[0].shape[1:])
    progress_grid = G.grid_image(per_sample, nrow=len(frames), scale=SHOWN_SCALE // 2)
    m = G.metrics(res.images, s.digit)
    readout = (
        f"**class accuracy** {m['class_accuracy']:.0%} (classifier says {s.digit}) · "
        f"**mean p(digit)** {m['class_prob_mean']:.2f} · **diversity** {m['diversity']:.2f} "
        f"(pixel L2) · **feature spread** {m['feature_spread']:.2f} · {res.seconds:.1f} s"
    )
    return [grid, progress_grid, readout]


async def generate(digit, w, samples, steps, scheduler, seed, progress=gr.Progress()):  # noqa: B008
    """Checked settings, then sampling in a worker that stops when the client cancels or leaves."""
    s = _settings(digit, w, samples, steps, scheduler, seed)
    async for update in run_job(lambda should_stop: _generate(s, should_stop, progress), 3):
        yield update


def _sweep(base, scales, should_stop, progress=None) -> list:
    from playground.diffusion import guidance as G

    total = len(scales) * (base.steps + 1)  # one check per scale, then one per step
    rows = G.sweep(base, scales, should_stop=_counted(should_stop, total, progress, "sweep"))
    return [G.plot_sweep(rows, G.real_data_reference(base.digit)), pd.DataFrame(rows).round(3).rename(columns=SWEEP_TITLES)]


async def run_sweep(digit, scales, samples, steps, scheduler, seed, progress=gr.Progress()):  # noqa: B008
    """Sweep w over `scales` with the same x_T → (plot, table)."""
    from playground.diffusion import guidance as G

    base = _settings(digit, 0.0, samples, steps, scheduler, seed)
    try:
        checked = G.parse_scales(scales)
    except InputError as exc:
        raise gr.Error(str(exc)) from None
    async for update in run_job(lambda should_stop: _sweep(base, checked, should_stop, progress), 2):
        yield update


def build_guidance_tab() -> None:
    """Create the tab's components and events in the current Blocks context."""
    gr.Markdown("Sample digits from a tiny class-conditional DDPM with classifier-free guidance.")
    with gr.Row():
        with gr.Column(scale=1):
            digit = Radio(list(range(10)), value=DEFAULT.digit, label="Digit y")
            w = Slider(0, LIMITS.max_guidance, value=DEFAULT.guidance_scale, step=0.1, label="Guidance scale w",
                          info="Higher w = more typical of the digit, less diverse; 0 = ignores the digit")
            samples = Slider(1, LIMITS.max_diffusion_images, value=DEFAULT.num_samples, step=1, label="Samples",
                                info="More = steadier metrics, slower")
            steps = Slider(1, LIMITS.max_diffusion_steps, value=DEFAULT.steps, step=1, label="Denoising steps",
                              info="More = cleaner samples, slower")
            scheduler = Dropdown(list(SCHEDULERS), value=DEFAULT.scheduler, label="Scheduler",
                                    info="ddim: deterministic; ddpm: stochastic, wants more steps; euler: ODE")
            seed = Number(value=DEFAULT.seed, precision=0, label="Seed",
                             info="Same seed + settings = same images")
            estimate = gr.Markdown(estimate_line(DEFAULT.num_samples, DEFAULT.steps), elem_id="guidance-estimate")
            with gr.Row():
                go = gr.Button("Generate", variant="primary", elem_id="guidance-generate")
                cancel = gr.Button("Cancel", variant="stop", visible=False, elem_id="guidance-cancel")
            status = gr.Markdown(elem_id="guidance-status")
        with gr.Column(scale=2):
            grid = gr.Image(label="Samples", type="numpy", image_mode="L", interactive=False, elem_id="guidance-samples",
                            height=560)
            readout = gr.Markdown(elem_id="guidance-readout")
            progress = gr.Image(label="Denoising progress: predicted x̂₀, noisy → clean (first 8 samples)",
                                type="numpy", image_mode="L", interactive=False, elem_id="guidance-progress")
    with gr.Row():
        scales = gr.Textbox(",".join(f"{w:g}" for w in GUIDANCE_SCALES), label="Scales w to sweep",
                            info=f"Comma-separated, each in [0, {LIMITS.max_guidance:g}], at most {LIMITS.max_guidance_scales}")
        sweep_btn = gr.Button("Sweep w", elem_id="guidance-sweep")
    sweep_estimate = gr.Markdown(estimate_line(DEFAULT.num_samples, DEFAULT.steps, GUIDANCE_SCALES))
    with gr.Row():
        plot = gr.Plot(label="Alignment vs diversity")
        table = gr.Dataframe(label="Sweep rows", interactive=False,
                             headers=list(SWEEP_TITLES.values()))
    gr.Markdown(FORMULAS)
    knobs = [digit, w, samples, steps, scheduler, seed]
    quiet = {"queue": False, "api_visibility": "private", "show_progress": "hidden"}
    for box in (samples, steps):
        box.change(estimate_line, [samples, steps], estimate, **quiet)
    for box in (samples, steps, scales):
        box.change(lambda n, k, text: estimate_line(n, k, [x for x in str(text).split(",") if x.strip()]),
                   [samples, steps, scales], sweep_estimate, **quiet)
    runs = [go, sweep_btn]
    clear = (lambda: ""), None, status
    gen = long_job(go.click(*clear, **quiet).then, runs, cancel, status, generate, knobs, [grid, progress, readout],
                   api_name="diffusion_generate", show_progress_on=[readout], **EVENT)
    swept = long_job(sweep_btn.click(*clear, **quiet).then, runs, cancel, status, run_sweep,
                     [digit, scales, samples, steps, scheduler, seed], [plot, table], api_name="diffusion_sweep", **EVENT)
    cancel.click(None, None, None, cancels=[gen, swept], api_visibility="private")
    show_cancelled(cancel, runs, status)
