"""Train the tiny class-conditional DDPM that the "Diffusion guidance" tab samples from.

Data: scikit-learn's bundled `load_digits()` (1,797 8×8 images), upsampled to 16×16, scaled to [-1,1];
train split only (see `playground.diffusion.digits.load_digit_images`). Objective: DDPM noise prediction
(Ho et al. 2020), ‖ε − ε_θ(x_t, t, y)‖², with condition dropout: 15% of labels are replaced by the
null class 10 so one network learns both ε_θ(x_t, y) and ε_θ(x_t, ∅) for classifier-free guidance
(Ho & Salimans 2022). Weights are an exponential moving average (EMA) of the trained ones.

Run from the repo root (≈15 min on 2 CPU cores):
    flock /tmp/heavy.lock python models/digits/train_digits.py
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

OUT_DIR = Path(__file__).resolve().parent
from playground.diffusion.digits import NULL_CLASS, heldout_accuracy, load_digit_images

COND_DROPOUT = 0.15
EMA_DECAY = 0.999


def build_unet() -> UNet2DModel:
    """A ~1.1M-parameter UNet for 1×16×16 images with 11 class embeddings (digits 0–9 + null)."""
    return UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        num_class_embeds=NULL_CLASS + 1,
    )


def build_scheduler() -> DDPMScheduler:
    """The training noise schedule: 1,000 steps, linear β from 1e-4 to 0.02 (the DDPM paper's)."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)


def lr_at(step: int, steps: int, peak: float, warmup: int = 200) -> float:
    """Linear warm-up then cosine decay to 5% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1.0 + torch.cos(torch.tensor(progress * torch.pi)).item()))


def train_step(
    unet: UNet2DModel, sched: DDPMScheduler, x0: torch.Tensor, y: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """One DDPM loss: x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, predict ε from (x_t, t, y or ∅)."""
    n = x0.shape[0]
    eps = torch.randn(x0.shape, generator=gen)  # ε ~ N(0, I)
    t = torch.randint(0, sched.config.num_train_timesteps, (n,), generator=gen)
    x_t = sched.add_noise(x0, eps, t)
    drop = torch.rand(n, generator=gen) < COND_DROPOUT  # condition dropout → learns ε_θ(x_t, ∅)
    labels = torch.where(drop, torch.full_like(y, NULL_CLASS), y)
    return F.mse_loss(unet(x_t, t, class_labels=labels).sample, eps)


@torch.no_grad()
def ema_update(ema: UNet2DModel, model: UNet2DModel, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.mul_(decay).add_(pm.detach(), alpha=1.0 - decay)


def train(steps: int, batch_size: int, lr: float, seed: int) -> tuple[UNet2DModel, DDPMScheduler, dict]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    images, labels = load_digit_images("train")
    data, targets = torch.from_numpy(images), torch.from_numpy(labels)
    unet, sched = build_unet(), build_scheduler()
    ema = copy.deepcopy(unet).eval()
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-4)
    start, running, log = time.time(), None, []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr)
        idx = torch.randint(0, len(data), (batch_size,), generator=gen)
        loss = train_step(unet, sched, data[idx], targets[idx], gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema_update(ema, unet, min(EMA_DECAY, (1 + step) / (10 + step)))
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 250 == 0 or step == steps - 1:
            log.append({"step": step, "loss": round(running, 5), "s": round(time.time() - start, 1)})
            print(f"step {step:5d}  loss(ema) {running:.4f}  {time.time() - start:6.0f}s", flush=True)
    stats = {"final_loss_ema": round(running, 5), "wall_time_s": round(time.time() - start, 1), "log": log}
    return ema, sched, stats


def _sweep_lines(sweep: dict | None) -> list[str]:
    """The card's guidance-sweep table (filled in after training by `python -m playground guidance`)."""
    if not sweep:
        return []
    lines = ["", f"Guidance sweep: {sweep['setup']}", "", "| w | class accuracy | mean p(digit) | pixel diversity |"
             " feature spread |", "|---|---|---|---|---|"]
    lines += [f"| {r['scale']:g} | {r['class_accuracy']:.3f} | {r['class_prob_mean']:.3f} | {r['diversity']:.2f} |"
              f" {r['feature_spread']:.2f} |" for r in sweep["rows"]]
    return lines + (["", sweep["note"]] if sweep.get("note") else [])


def write_card(card: dict, out_dir: Path = OUT_DIR) -> None:
    (out_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    md = [
        "# digits-cfg-unet: tiny class-conditional DDPM for classifier-free guidance",
        "",
        "A diffusers `UNet2DModel` (1×16×16, block_out_channels (32, 64, 64), 1 layer per block,",
        "attention at 8×8, 11 class embeddings: digits 0–9 and the null class 10), trained by",
        "`models/digits/train_digits.py` for the playground's *Diffusion guidance* tab.",
        "",
        "| field | value |",
        "|---|---|",
    ]
    for key in ("data", "split", "steps", "batch_size", "learning_rate", "cond_dropout", "ema_decay",
                "seed", "wall_time_s", "final_loss_ema", "classifier_heldout_accuracy", "parameters",
                "weights_dtype", "hardware"):
        md.append(f"| {key} | {card[key]} |")
    md += _sweep_lines(card.get("guidance_sweep"))
    md += [
        "",
        "Sampling: `playground/diffusion/guidance.py` with DDIM, DDPM or Euler schedulers built from `scheduler/`.",
        "DDIM recomputes ε̂ from the clipped x̂_0 (`use_clipped_model_output=True`); without it, w > 1 speckles.",
        "Classifier accuracy is the playground's MLP digit classifier on the held-out real digits;",
        "it is the judge of \"alignment\" for generated samples. Licence of the data: BSD-3 (scikit-learn).",
        "Weights: safetensors only.",
        "",
    ]
    (out_dir / "README.md").write_text("\n".join(md))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help="where unet/, scheduler/ and the card go")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ema, sched, stats = train(args.steps, args.batch_size, args.lr, args.seed)
    ema.to(torch.float16).save_pretrained(args.out_dir / "unet", safe_serialization=True)
    sched.save_pretrained(args.out_dir / "scheduler")
    write_card({
        "data": "sklearn.datasets.load_digits (1,797 8x8 images, 0..16) -> bilinear 16x16 -> [-1, 1]",
        "split": "train_test_split(test_size=0.2, random_state=0, stratify=labels); trained on 1,437 train images",
        "steps": args.steps,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "cond_dropout": COND_DROPOUT,
        "ema_decay": EMA_DECAY,
        "seed": args.seed,
        "wall_time_s": stats["wall_time_s"],
        "final_loss_ema": stats["final_loss_ema"],
        "classifier_heldout_accuracy": round(heldout_accuracy(), 4),
        "parameters": sum(p.numel() for p in ema.parameters()),
        "weights_dtype": "float16 (load with torch_dtype=torch.float32 on CPU)",
        "hardware": f"CPU, 2 cores shared with other jobs (wall time varies), {args.threads} torch threads",
        "loss_log": stats["log"],
    }, args.out_dir)
    print(json.dumps({k: v for k, v in stats.items() if k != "log"}))


if __name__ == "__main__":
    main()
