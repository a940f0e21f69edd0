"""Continuous batching in process, on the shipped model at the default dtype: chat turns under load, and a
chat turn while a sweep runs. Prints a table and writes JSON.

    flock /tmp/heavy.lock python benchmarks/scheduler_bench.py [--clients 1,8,32] [--turns 32] --out benchmarks/scheduler.json

A chat turn is what the side-by-side tab submits: base, realigned and tuned columns (5 forward rows),
16 new tokens each, T 0.7. N client threads each submit turns back to back through `Engine.stream` (the
scheduler) until `--turns` turns are done; first-token and end-to-end latencies count from submit. Stop
tokens are ignored, so every answer is full length (the same work at every level). The sweep phase runs
a 64-request × 64-token sweep (mixed λ, T) as one submission and times chat turns submitted meanwhile.
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from playground.lm.request import Request
from playground.settings.request import DecodeSettings
from playground.service import Playground

PROMPTS = ["Give me a tip for a rainy day.", "How should I spend a free Sunday?", "Tell me about keeping a small garden.",
           "My train is late again. Any advice?"]
ADAPTER = "upbeat-b0.1"


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


def turn_requests(pg: Playground, i: int, tokens: int) -> list[Request]:
    t = pg.turn(PROMPTS[i % len(PROMPTS)], ADAPTER, lam=2.0, temperature=0.7, max_new_tokens=tokens, seed=i)
    return list(pg.requests(t).values())


def one_turn(pg: Playground, i: int, tokens: int) -> dict:
    start, first = time.perf_counter(), None
    for streams in pg.engine.stream(turn_requests(pg, i, tokens)):
        if first is None and any(s.tokens for s in streams):
            first = time.perf_counter() - start
    return {"ttft": first, "latency": time.perf_counter() - start}


def level(pg: Playground, clients: int, turns: int, tokens: int) -> dict:
    counter = iter(range(turns))
    lock = threading.Lock()

    def client(_: int) -> list[dict]:
        out = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return out
            out.append(one_turn(pg, i, tokens))

    stats0 = dict(pg.engine.scheduler.stats)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    wall = time.perf_counter() - start
    loop = {k: v - stats0[k] for k, v in pg.engine.scheduler.stats.items()}
    ttft, lat = [r["ttft"] for r in results], [r["latency"] for r in results]
    return {"clients": clients, "turns": len(results), "wall_s": wall, "turns_per_s": len(results) / wall,
            "ttft_p50_s": pct(ttft, 50), "ttft_p95_s": pct(ttft, 95), "ttft_p99_s": pct(ttft, 99),
            "latency_p50_s": pct(lat, 50), "latency_p95_s": pct(lat, 95), "latency_p99_s": pct(lat, 99),
            "loop": {"steps": loop["steps"], "mean_rows": loop["rows"] / max(1, loop["steps"]), "joins": loop["joins"],
                     "prefill_s": loop["prefill_s"], "sample_s": loop["sample_s"], "forward_s": loop["forward_s"]}}


def chat_during_sweep(pg: Playground, rows: int, sweep_tokens: int, tokens: int) -> dict:
    ids = pg.encode(PROMPTS[0])
    sweep = [Request(ids, ADAPTER, DecodeSettings(lam=(0.0, 0.5, 1.0, 2.0)[i % 4], temperature=(0.7, 1.0)[(i // 4) % 2],
                                                  top_p=0.95, max_new_tokens=sweep_tokens, seed=i)) for i in range(rows)]
    done = threading.Event()
    sweep_s = {}

    def run_sweep() -> None:
        t0 = time.perf_counter()
        pg.engine.generate(sweep)
        sweep_s["s"] = time.perf_counter() - t0
        done.set()

    thread = threading.Thread(target=run_sweep)
    thread.start()
    time.sleep(1.0)  # the sweep is decoding
    turns = []
    i = 0
    while not done.is_set():
        r = one_turn(pg, 1000 + i, tokens)
        if not done.is_set():
            turns.append(r)
        i += 1
    thread.join()
    ttft = [r["ttft"] for r in turns]
    return {"sweep_rows": rows, "sweep_tokens": sweep_tokens, "sweep_s": sweep_s["s"],
            "sweep_row_tok_s": rows * sweep_tokens / sweep_s["s"], "chat_turns": len(turns),
            "chat_ttft_p50_s": pct(ttft, 50), "chat_ttft_p95_s": pct(ttft, 95),
            "chat_latency_p50_s": pct([r["latency"] for r in turns], 50)}


def one_stream(pg: Playground, tokens: int, repeats: int) -> dict:
    """Realigned greedy decoding of one request (2 rows): through the scheduler and decoded directly."""
    req = Request(pg.encode(PROMPTS[0]), ADAPTER, DecodeSettings(lam=1.5, temperature=0.0, top_p=1.0, max_new_tokens=tokens))
    out = {}
    for name, path in (("scheduler", "continuous"), ("direct", "batch")):
        engine = pg.engine if path == "continuous" else pg.engine.with_path(path)  # the same weights, another decode path
        rates = [len(s.tokens) / s.elapsed_s for s in (engine.generate([req])[0] for _ in range(repeats))]
        out[f"one_stream_{name}_tok_s"] = statistics.median(rates)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--turns", type=int, default=32, help="turns per level (8 at one client)")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--sweep-rows", type=int, default=64)
    parser.add_argument("--sweep-tokens", type=int, default=64)
    parser.add_argument("--skip", default="", help="comma-separated: levels,sweep,stream")
    parser.add_argument("--out", default="benchmarks/scheduler.json")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(2)
    pg = Playground.from_registry()
    pg.engine.stop_ids = torch.tensor([-1])  # full-length answers: the same work at every level
    cfg = pg.engine.scheduler.config
    r: dict = {"date": time.strftime("%Y-%m-%d"), "dtype": str(pg.base.model.dtype), "tokens": args.tokens,
               "config": cfg.__dict__}
    one_turn(pg, 0, 4)  # warm up (weight packing, first allocations)
    if "stream" not in skip:
        r |= one_stream(pg, 64, 3)
    if "levels" not in skip:
        r["levels"] = [level(pg, int(c), args.turns if int(c) > 1 else 8, args.tokens) for c in args.clients.split(",")]
    if "sweep" not in skip:
        r["during_sweep"] = chat_during_sweep(pg, args.sweep_rows, args.sweep_tokens, args.tokens)
    Path(args.out).write_text(json.dumps(r, indent=2))
    print(f"dtype {r['dtype']}, chat turn = 3 columns × {args.tokens} tokens, T 0.7; scheduler {cfg}")
    if "one_stream_scheduler_tok_s" in r:
        print(f"one stream, realigned, 64 tokens: {r['one_stream_scheduler_tok_s']:.1f} tok/s via scheduler, "
              f"{r['one_stream_direct_tok_s']:.1f} direct")
    fmt = lambda *xs: "/".join(f"{x:.2f}" if x is not None else "-" for x in xs)  # noqa: E731
    for lv in r.get("levels", []):
        print(f"{lv['clients']:>3} clients: {lv['turns']} turns, {lv['turns_per_s']:.2f} turns/s; first token p50/p95/p99 "
              f"{fmt(lv['ttft_p50_s'], lv['ttft_p95_s'], lv['ttft_p99_s'])} s; end-to-end "
              f"{fmt(lv['latency_p50_s'], lv['latency_p95_s'], lv['latency_p99_s'])} s")
        lp = lv["loop"]
        print(f"      loop: {lp['steps']} steps, {lp['mean_rows']:.0f} rows on average, {lp['joins']} joins; prefill "
              f"{lp['prefill_s']:.1f} s, sampling {lp['sample_s']:.1f} s, decode forwards {lp['forward_s']:.1f} s of {lv['wall_s']:.1f} s")
    if "during_sweep" in r:
        d = r["during_sweep"]
        print(f"during a {d['sweep_rows']}×{d['sweep_tokens']} sweep ({d['sweep_s']:.1f} s, {d['sweep_row_tok_s']:.0f} row-tok/s): "
              f"{d['chat_turns']} chat turns, first token p50/p95 {fmt(d['chat_ttft_p50_s'], d['chat_ttft_p95_s'])} s, "
              f"end-to-end p50 {fmt(d['chat_latency_p50_s'])} s")


if __name__ == "__main__":
    main()
