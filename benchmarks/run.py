"""Speed and memory of the playground, measured in one run: prints a table and writes JSON.

    python benchmarks/run.py [--quick] --out FILE.json

Medians over repeats; ratios are taken within this run only (the machine is noisy). The llama.cpp
reference needs `llama-cpp-python` (see benchmarks/README.md); without it that row is null.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import torch

from benchmarks import naive
from playground.lm.request import Request
from playground.service import Playground
from playground.settings.request import DecodeSettings

PROMPT = "Give me a tip for a rainy day."


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def no_stops(pg: Playground):
    """Stop tokens ignored while decoding, so every row decodes its `max_new_tokens` (rates compare equal work)."""
    stop, pg.engine.stop_ids = pg.engine.stop_ids, torch.tensor([-1])
    try:
        yield
    finally:
        pg.engine.stop_ids = stop


def one_stream(pg: Playground, adapter: str, tokens: int, repeats: int) -> dict:
    """Realigned decoding, one stream: both policies per token (two batch rows)."""
    s = pg.turn(PROMPT, adapter, lam=1.5, temperature=0.0, max_new_tokens=tokens)
    req = pg.requests(s)["realigned"]
    ttft, tok_s = [], []
    for _ in range(repeats):
        with no_stops(pg):
            stream = pg.engine.generate([req])[0]
        ttft.append(stream.first_token_s)
        tok_s.append(len(stream.tokens) / stream.elapsed_s)
    return {"realigned_tok_s": statistics.median(tok_s), "realigned_ttft_s": statistics.median(ttft)}


def side_by_side(pg: Playground, adapter: str, tokens: int, repeats: int) -> dict:
    s = pg.turn(PROMPT, adapter, lam=1.5, temperature=0.7, max_new_tokens=tokens)
    reqs = [replace(r, settings=replace(r.settings, max_new_tokens=tokens, temperature=0.0)) for r in pg.requests(s).values()]
    with no_stops(pg):
        seconds = median_time(lambda: pg.engine.generate(reqs), repeats)
    return {"side_by_side_tok_s": tokens / seconds}


def sweep_requests(pg: Playground, adapter: str, rows: int, tokens: int) -> list[Request]:
    ids = pg.requests(pg.turn(PROMPT, adapter, lam=1.0))["base"].prompt_ids
    lams, temps = [0.0, 0.5, 1.0, 2.0], [0.7, 1.0]
    return [Request(ids, adapter, DecodeSettings(lam=lams[i % 4], temperature=temps[(i // 4) % 2], top_p=0.95,
                                                 max_new_tokens=tokens, seed=i)) for i in range(rows)]


def sweep(pg: Playground, adapter: str, rows: int, tokens: int, repeats: int) -> float:
    """Row-tokens/s for `rows` mixed (λ, T) settings decoded in one batch. Stop tokens are ignored so
    every row decodes `tokens` tokens."""
    reqs = sweep_requests(pg, adapter, rows, tokens)
    with no_stops(pg):
        seconds = median_time(lambda: pg.engine.generate(reqs), repeats)
    return rows * tokens / seconds


def subprocess_json(code: str, env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, **(env or {})}, timeout=1200)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


RSS_CODE = """
import json, sys
from playground import registry
from playground.service import AdapterInfo, Playground
from playground.lm.request import Request
from playground.settings.request import DecodeSettings
n = {n}
names = [a.name for a in registry.installed_adapters()]
pg = Playground.from_registry(adapters=[])
for i in range(n):
    a = registry.get_adapter(names[i % len(names)])
    pg.add_adapter(AdapterInfo(f"{{a.name}}-{{i}}", a.path, a.beta_train, a.judge))
ids = pg.encode('hi')
pg.engine.generate([Request(ids, f"{{names[0]}}-0" if n else None, DecodeSettings(lam=1.0, top_p=1.0, max_new_tokens=4))])
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]  # peak RSS of this process
print(json.dumps({{"rss_mb": int(hwm) / 1024}}))
"""


def memory() -> dict:
    base = subprocess_json(RSS_CODE.format(n=0))["rss_mb"]
    four = subprocess_json(RSS_CODE.format(n=4))["rss_mb"]
    return {"rss_base_mb": base, "rss_4_adapters_mb": four}


def startup(cache: str | None) -> tuple[float, float]:
    """Seconds from `python app.py` to (the UI answering HTTP on loopback, the first chat answer).

    The app serves its UI before it imports torch and loads the model; a request sent meanwhile waits
    for the model, so the second figure is what the first user to press Send sees at the earliest.
    """
    import socket
    import urllib.request

    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    if cache:
        env["PLAYGROUND_CACHE"] = cache
    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        served = None
        while served is None and time.perf_counter() - start < 600:
            try:
                if urllib.request.urlopen(url, timeout=1).status == 200:
                    served = time.perf_counter() - start
            except OSError:
                time.sleep(0.05)
        if served is None:
            raise RuntimeError("app did not start within 600 s")
        Client(url, verbose=False).predict(PROMPT, "upbeat-b0.1", 0.2, "logits", 0.0, 1.0, 1, 0, api_name="/chat")
        return served, time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def machine() -> str:
    """CPU model, vector extensions torch dispatches to, and core count."""
    name = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer tokens and repeats (a smoke run)")
    parser.add_argument("--out", default="benchmarks/results.json")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: hf,startup,memory,llamacpp,naive,diffusion,profile")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    tokens, repeats = (16, 1) if args.quick else (64, 3)
    torch.set_num_threads(int(os.environ.get("PLAYGROUND_THREADS", "2")))
    pg = Playground.from_registry()
    adapter = sorted(pg.adapters)[0]
    r: dict = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "torch": torch.__version__,
               "weights": pg.engine.weights, "dtype": str(pg.base.model.dtype), "tokens": tokens, "repeats": repeats}
    if "hf" not in skip:
        fast, pg.engine = pg.engine, pg.engine.with_path("generic")  # the transformers decoder (dense weights), to compare
        r["realigned_tok_s_hf_decoder"] = one_stream(pg, adapter, tokens, repeats)["realigned_tok_s"]
        pg.engine = fast
    r |= one_stream(pg, adapter, tokens, repeats)
    r |= side_by_side(pg, adapter, tokens, repeats)
    r["sweep16_row_tok_s"] = sweep(pg, adapter, 16, tokens, repeats)
    r["sweep64_row_tok_s"] = sweep(pg, adapter, 64, tokens, repeats)
    if "naive" not in skip:
        r["naive_sweep64_row_tok_s"] = naive.naive_sweep(pg, sweep_requests(pg, adapter, 64 if not args.quick else 8, tokens))
    if "llamacpp" not in skip:
        r["llamacpp_tok_s"] = naive.llamacpp_tok_s(tokens, repeats)
    if "memory" not in skip:
        r |= memory()
    if "startup" not in skip:
        r["startup_cached_s"], r["startup_cached_first_answer_s"] = startup(None)
        if not args.quick:
            import tempfile

            r["startup_cold_s"], r["startup_cold_first_answer_s"] = startup(tempfile.mkdtemp(prefix="pg-cold-"))
    if "diffusion" not in skip:
        from benchmarks.diffusion_bench import bench_diffusion

        r |= bench_diffusion(samples=64, steps=50 if not args.quick else 10)
    if "profile" not in skip:
        from benchmarks.step_profile import profile_step

        r["step_profile"] = [profile_step(pg, adapter, n, 4 if args.quick else 8) for n in (1, 3, 20)]
    r |= naive.ratios(r)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(r, indent=2))
    print(naive.table(r))


if __name__ == "__main__":
    main()
