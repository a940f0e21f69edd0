"""Time classifier-free-guided sampling on the shipped digit DDPM.

    flock /tmp/heavy.lock python benchmarks/diffusion_bench.py [--samples 64] [--steps 50]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from playground.diffusion.guidance import load_unet, sample
from playground.settings.request import GuidanceSettings


def bench_diffusion(samples: int = 64, steps: int = 50, runs: int = 3) -> dict[str, float]:
    """Median wall seconds of one DDIM CFG sampling call (`samples` images × `steps` steps, w = 3)."""
    load_unet()  # load once, outside the timing
    sample(GuidanceSettings(digit=3, guidance_scale=3.0, num_samples=samples, steps=2))  # warm-up
    times = []
    for seed in range(runs):
        settings = GuidanceSettings(digit=3, guidance_scale=3.0, num_samples=samples, steps=steps, seed=seed)
        start = time.perf_counter()
        sample(settings)
        times.append(time.perf_counter() - start)
    return {f"diffusion_{samples}x{steps}_s": round(statistics.median(times), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(bench_diffusion(args.samples, args.steps)))


if __name__ == "__main__":
    main()
