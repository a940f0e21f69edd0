"""Time HFDecoder vs FastLlamaDecoder per decoding step on the shipped SmolLM2-135M-Instruct.

    flock /tmp/heavy.lock python benchmarks/decoder_bench.py [--threads 1] [--batches 1 2 5 16 64] [--steps 20]

The two decoders step in lockstep (same tokens, alternating calls), so load from other processes hits
both alike; each cell is the median over `steps` steps after `warmup` steps.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from playground.lm.decoder import HFDecoder
from playground.lm.fast_llama import FastLlamaDecoder


def load_model(dtype: torch.dtype) -> torch.nn.Module:
    """The embedded default base (converted into $PLAYGROUND_CACHE on first use) in `dtype`."""
    from transformers import AutoModelForCausalLM

    from playground.registry import get_base
    from playground.lm.loading import resolve_source

    where = resolve_source(get_base("smollm2-135m-instruct").source)
    return AutoModelForCausalLM.from_pretrained(where, dtype=dtype, use_safetensors=True).eval()


def prompts_for(batch: int, base_len: int = 24) -> list[list[int]]:
    """Rows of different lengths (base_len .. base_len+15), so left padding is exercised."""
    return [[(17 * r + 31 * j) % 40000 + 100 for j in range(base_len + r % 16)] for r in range(batch)]


def _timed(fn, *args) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def bench_batch(model: torch.nn.Module, batch: int, steps: int, warmup: int) -> dict[str, float]:
    """Median ms per step (and one prefill) of both decoders at `batch` rows, plus their max |Δlogit|."""
    hf, fast = HFDecoder(model, 2), FastLlamaDecoder(model, 2)
    prompts = prompts_for(batch)
    with torch.inference_mode():
        ref, hf_start = _timed(hf.start, prompts)
        got, fast_start = _timed(fast.start, prompts)
        times: dict[str, list[float]] = {"hf": [], "fast": []}
        diff = (ref - got).abs().max().item()
        for i in range(warmup + steps):
            tokens = ref.argmax(-1)
            ref, t_hf = _timed(hf.step, tokens)
            got, t_fast = _timed(fast.step, tokens)
            diff = max(diff, (ref - got).abs().max().item())
            if i >= warmup:
                times["hf"].append(t_hf)
                times["fast"].append(t_fast)
    hf_ms, fast_ms = (1e3 * statistics.median(times[k]) for k in ("hf", "fast"))
    return {"hf_step_ms": round(hf_ms, 2), "fast_step_ms": round(fast_ms, 2), "speedup": round(hf_ms / fast_ms, 2),
            "hf_start_ms": round(1e3 * hf_start, 1), "fast_start_ms": round(1e3 * fast_start, 1),
            "max_abs_logit_diff": float(f"{diff:.3g}")}


def bench_decoders(batches=(1, 2, 5, 16, 64), dtypes=("float32", "bfloat16"), steps: int = 20,
                   warmup: int = 3) -> dict[str, dict[int, dict[str, float]]]:
    """{dtype: {batch: timings}}; also prints a table."""
    results: dict[str, dict[int, dict[str, float]]] = {}
    print(f"threads={torch.get_num_threads()}  {'dtype':9} {'batch':>5} {'HF ms':>8} {'fast ms':>8} {'x':>5}"
          f" {'HF start':>9} {'fast start':>10}  max|Δ|")
    for name in dtypes:
        model = load_model(getattr(torch, name))
        t0 = time.perf_counter()
        FastLlamaDecoder(model, 2)  # packs bf16 weights once per model (cached), outside the timings
        print(f"  {name}: decoder setup (weight packing) {1e3 * (time.perf_counter() - t0):.0f} ms")
        results[name] = {}
        for batch in batches:
            r = results[name][batch] = bench_batch(model, batch, steps, warmup)
            print(f"{'':11}{name:9} {batch:>5} {r['hf_step_ms']:>8} {r['fast_step_ms']:>8} {r['speedup']:>5}"
                  f" {r['hf_start_ms']:>9} {r['fast_start_ms']:>10}  {r['max_abs_logit_diff']}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 5, 16, 64])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = bench_decoders(tuple(args.batches), tuple(args.dtypes), args.steps, args.warmup)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
