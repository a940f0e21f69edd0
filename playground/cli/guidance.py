"""`python -m playground guidance`: sweep the classifier-free guidance scale w on the digit DDPM.

Writes the metric rows as JSON, a PNG grid (one row of samples per w, same stem) and a sweep plot
(`<stem>_plot.png`), and prints a table. Bad input: one `error: ...` line on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.image import imsave

from playground.diffusion.guidance import MAX_GUIDANCE, SCHEDULERS, grid_image, plot_sweep, sweep_with_images


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `guidance` sub-command; `run` is stored as the `func` default."""
    p = subparsers.add_parser(
        "guidance",
        help="sweep the diffusion guidance scale w (class accuracy vs diversity)",
        description=f"Classifier-free guidance sweep on the digit DDPM. w in [0, {MAX_GUIDANCE:g}]: "
        "0 = unconditional, 1 = conditional, higher = more typical digits, less diverse.",
    )
    p.add_argument("--digit", type=int, default=3, help="digit to condition on (0-9)")
    p.add_argument("--scales", default="0,1,2,4,8", help="comma-separated guidance scales w")
    p.add_argument("--samples", type=int, default=16, help="samples per scale (1-64)")
    p.add_argument("--steps", type=int, default=50, help="denoising steps (1-200)")
    p.add_argument("--seed", type=int, default=0, help="seed; the same x_T is used at every w")
    p.add_argument("--scheduler", default="ddim", help=f"one of {', '.join(SCHEDULERS)}")
    p.add_argument("--out", default="guidance.json", help="JSON output; .png grid and _plot.png beside it")
    p.set_defaults(func=run)
    return p


def _table(rows: list[dict]) -> str:
    cols = ("scale", "class_accuracy", "class_prob_mean", "diversity", "feature_spread", "seconds")
    lines = ["  ".join(f"{c:>15}" for c in cols)]
    lines += ["  ".join(f"{r[c]:>15.3f}" for c in cols) for r in rows]
    return "\n".join(lines)


def write_outputs(out: Path, rows: list[dict], batches: list[np.ndarray], samples: int) -> list[Path]:
    """JSON rows, the per-scale grid PNG and the sweep plot PNG; returns the paths written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    grid_path, plot_path = out.with_suffix(".png"), out.with_name(out.stem + "_plot.png")
    scale = 4 if samples <= 16 else 2
    imsave(grid_path, grid_image(np.concatenate(batches), nrow=samples, scale=scale), cmap="gray", vmin=0, vmax=255)
    plot_sweep(rows).savefig(plot_path, dpi=110)
    return [out, grid_path, plot_path]


def run(args: argparse.Namespace) -> int:
    """Run the sweep described by `args`; 0 on success, 2 on bad input."""
    try:
        out = Path(args.out)
        if out.suffix.lower() != ".json":
            raise ValueError(f"out must end in .json, got {args.out!r}")
        rows, batches = sweep_with_images(
            args.digit, args.scales, args.samples, args.steps, args.seed, args.scheduler
        )
        paths = write_outputs(out, rows, batches, args.samples)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"digit {args.digit}, {args.samples} samples x {args.steps} {args.scheduler} steps, seed {args.seed}")
    print(_table(rows))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
