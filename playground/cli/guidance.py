"""`python -m playground guidance`: sweep the classifier-free guidance scale w on the digit DDPM.

Writes the metric rows as JSON, a PNG grid (one row of samples per w, same stem) and a sweep plot
(`<stem>_plot.png`), and prints a table. Bad input: one `error: ...` line on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from playground.settings.request import DEFAULT_GUIDANCE, GUIDANCE_SCALES, LIMITS, SCHEDULERS
from playground.cli.out import add_out_arguments, check_out
from playground.settings.validation import InputError, guidance_settings


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `guidance` sub-command; `run` is stored as the `func` default."""
    p = subparsers.add_parser(
        "guidance",
        help="sweep the diffusion guidance scale w (class accuracy vs diversity)",
        description=f"Classifier-free guidance sweep on the digit DDPM. w in [0, {LIMITS.max_guidance:g}]: "
        "0 = unconditional, 1 = conditional, higher = more typical digits, less diverse.",
    )
    p.add_argument("--digit", default=DEFAULT_GUIDANCE.digit, help="digit to condition on (0-9)")
    p.add_argument("--scales", default=",".join(f"{w:g}" for w in GUIDANCE_SCALES), help="comma-separated guidance scales w")
    p.add_argument("--samples", default=DEFAULT_GUIDANCE.num_samples, help=f"samples per scale (1-{LIMITS.max_diffusion_images})")
    p.add_argument("--steps", default=DEFAULT_GUIDANCE.steps, help=f"denoising steps (1-{LIMITS.max_diffusion_steps})")
    p.add_argument("--seed", default=DEFAULT_GUIDANCE.seed, help="seed; the same x_T is used at every w")
    p.add_argument("--scheduler", default=DEFAULT_GUIDANCE.scheduler, help=f"one of {', '.join(SCHEDULERS)}")
    add_out_arguments(p, "JSON output; .png grid and _plot.png beside it", default="guidance.json")
    p.set_defaults(func=run)
    return p


def _table(rows: list[dict]) -> str:
    cols = ("scale", "class_accuracy", "class_prob_mean", "diversity", "feature_spread", "seconds")
    lines = ["  ".join(f"{c:>15}" for c in cols)]
    lines += ["  ".join(f"{r[c]:>15.3f}" for c in cols) for r in rows]
    return "\n".join(lines)


def write_outputs(out: Path, rows: list[dict], batches: list[np.ndarray], samples: int, digit: int | None = None) -> list[Path]:
    """JSON rows, the per-scale grid PNG and the sweep plot PNG; returns the paths written."""
    from matplotlib.image import imsave

    from playground.diffusion.guidance import grid_image, plot_sweep, real_data_reference

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    grid_path, plot_path = out.with_suffix(".png"), out.with_name(out.stem + "_plot.png")
    scale = 4 if samples <= 16 else 2
    imsave(grid_path, grid_image(np.concatenate(batches), nrow=samples, scale=scale), cmap="gray", vmin=0, vmax=255)
    plot_sweep(rows, real_data_reference(digit) if digit is not None else None).savefig(plot_path, dpi=110)
    return [out, grid_path, plot_path]


def run(args: argparse.Namespace) -> int:
    """Check everything once, run the sweep and write; 0 on success (errors: see cli.errors)."""
    from playground.diffusion.guidance import parse_scales, sweep_with_images

    out = check_out(args.out, args.mkdir)  # before anything loads or decodes
    base = guidance_settings(digit=args.digit, num_samples=args.samples, steps=args.steps, scheduler=args.scheduler,
                             seed=args.seed)
    rows, batches = sweep_with_images(base, parse_scales(args.scales))
    paths = write_outputs(out, rows, batches, base.num_samples, base.digit)
    print(f"digit {base.digit}, {base.num_samples} samples x {base.steps} {base.scheduler} steps, seed {base.seed}")
    print(_table(rows))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
