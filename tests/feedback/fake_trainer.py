"""A stand-in for `models/train_adapter.py` in the training-job tests: logs "train: step i/N" lines like the real
trainer, then exports a ready LoRA (copied from --lora) with a card like the real export step writes.

    python tests/feedback/fake_trainer.py --out DIR --lora SRC --base BASE --beta B --steps N --limit L
        [--delay S] [--fail] [--pid-file F]

--pid-file: start a grandchild (`sleep 300`, same process group) and write "trainer_pid grandchild_pid" to F, so a
test can check that a cancel kills the whole group. --fail: exit 3 after the steps, printing "boom".
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    for flag in ("--out", "--lora", "--base", "--pid-file"):
        ap.add_argument(flag)
    ap.add_argument("--beta", type=float, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--limit", type=int, required=True)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--fail", action="store_true")
    a = ap.parse_args()
    if a.pid_file:
        child = subprocess.Popen(["sleep", "300"])
        Path(a.pid_file).write_text(f"{__import__('os').getpid()} {child.pid}")
    for i in range(1, a.steps + 1):
        print(f"[{time.strftime('%H:%M:%S')}] train: step {i}/{a.steps} loss 0.6900", flush=True)
        time.sleep(a.delay)
    if a.fail:
        print("boom: the fake trainer fails on purpose", flush=True)
        return 3
    out = Path(a.out)
    out.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copyfile(Path(a.lora) / name, out / name)
    votes = {"votes": a.limit + 2, "decisive": a.limit + 1, "tie": 1, "both_bad": 0, "identical_answers": 1,
             "pairs": a.limit, "limit": a.limit}
    card = {"name": out.name, "base_model": a.base, "beta": a.beta, "judge": "on_topic", "trained_on": "votes",
            "description": "fake", "votes": votes, "steps": a.steps, "train_loss": 0.69}
    (out / "card.json").write_text(json.dumps(card))
    print(f"export: wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
