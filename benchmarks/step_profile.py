"""Where each millisecond of one decode step goes, on the engine's own decoder and sampler.

    python -m benchmarks.step_profile [--requests 1,3,20] [--steps 8]

A step is the forward of every live row (`RunningBatch.advance`) plus sampling and readouts for every
request (`RunningBatch.sample`). The forward is split by torch's profiler into its kernels: the weight
matmuls (int4, or dense bf16/float32), the LoRA deltas (float32 `mm`), the LM head, attention, and the
rest (norms, RoPE, casts, indexing, Python between kernels). Realigned requests: two rows each.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from playground.lm.batch import RunningBatch
from playground.lm.request import Stream

PROMPT = "Give me a tip for a rainy day."
KINDS = {  # profiler op name -> part of the step
    "aten::_weight_int4pack_mm_for_cpu": "weights_int4",
    "aten::addmm": "weights_dense", "aten::linear": "weights_dense",
    "aten::mm": "lora",
    "mkldnn::_linear_pointwise": "head_or_packed_weights",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
    "aten::_scaled_dot_product_attention_math": "attention",
}


def _batch(pg, adapter: str, requests: int, tokens: int) -> RunningBatch:
    ids = pg.encode(PROMPT)
    reqs = [pg.request(ids, adapter, pg.turn(PROMPT, adapter, lam=1.0 + 0.25 * (i % 4), temperature=0.7,
                                              top_p=0.95, max_new_tokens=tokens, seed=i).decode) for i in range(requests)]
    batch = RunningBatch(pg.engine.new_decoder())
    pg.engine.forward(lambda: batch.join(reqs, [Stream() for _ in reqs]))
    return batch


def profile_step(pg, adapter: str, requests: int, steps: int = 8) -> dict:
    """Median ms of a step at `requests` realigned requests, split into forward parts and sampling."""
    stop = torch.tensor([-1])  # no stop token: every step has every row
    batch = _batch(pg, adapter, requests, steps * 2 + 4)
    batch.sample(stop)
    pg.engine.forward(batch.advance)  # warm-up
    fwd, smp = [], []
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            t0 = time.perf_counter()
            batch.sample(stop)
            t1 = time.perf_counter()
            pg.engine.forward(batch.advance)
            t2 = time.perf_counter()
            smp.append(t1 - t0)
            fwd.append(t2 - t1)
    parts: dict[str, float] = {}
    for ev in prof.key_averages():
        kind = KINDS.get(ev.key)
        if kind:
            parts[kind] = parts.get(kind, 0.0) + ev.self_cpu_time_total / 1000 / steps  # ms per step
    forward_ms = statistics.median(fwd) * 1000
    sample_ms = statistics.median(smp) * 1000
    out = {"requests": requests, "rows": batch.decoder.rows, "step_ms": forward_ms + sample_ms,
           "forward_ms": forward_ms, "sample_and_readouts_ms": sample_ms,
           **{f"{k}_ms": round(v, 2) for k, v in sorted(parts.items())}}
    out["other_forward_ms"] = round(forward_ms - sum(parts.values()), 2)  # norms, RoPE, casts, Python
    out["sample_share"] = sample_ms / out["step_ms"]
    return out


def main() -> None:
    from playground.service import Playground

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", default="1,3,20")
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    pg = Playground.from_registry()
    adapter = sorted(pg.adapters)[0]
    print(json.dumps({"weights": pg.engine.weights,
                      "profile": [profile_step(pg, adapter, int(n), args.steps) for n in args.requests.split(",")]}, indent=1))


if __name__ == "__main__":
    main()
