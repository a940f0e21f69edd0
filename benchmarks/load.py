"""Bounded load test of the running app on loopback: concurrent clients, latency percentiles, rejections.

    python benchmarks/load.py [--clients 8,16,32] [--requests 48] [--max-new-tokens 24] --out load.json

Starts `app.py` on a free loopback port, sends a fixed number of /chat requests per level from N
concurrent gradio_client sessions, records time to first token (first streamed update carrying text)
and end-to-end latency, both counted from submit (the client's connect time is reported apart),
queue-full rejections ("busy") and other errors, and the server's peak RSS. Every loop is bounded in
count and time, and the server is stopped at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["Give me a tip for a rainy day.", "How should I spend a free Sunday?", "Tell me about keeping a small garden."]


def start_app() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url, timeout=1).status == 200:
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("app did not start")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_request(url: str, i: int, max_new: int, adapter: str) -> dict:
    from gradio_client import Client

    ttft, connect = None, None
    start = time.perf_counter()
    try:
        client = Client(url, verbose=False)
        connect, start = time.perf_counter() - start, time.perf_counter()  # latencies count from submit
        job = client.submit(PROMPTS[i % len(PROMPTS)], adapter, 0.1, "logits", 0.7, 0.95, max_new, i, api_name="/chat")
        # Poll instead of iterating the job: gradio_client's iterator never ends for a job that failed.
        deadline = start + 600
        while not job.done() and time.perf_counter() < deadline:
            if ttft is None and any(u[1] and u[1][-1].get("content") for u in job.outputs()):
                ttft = time.perf_counter() - start
            time.sleep(0.01)
        job.result(timeout=max(1.0, deadline - time.perf_counter()))
        return {"ok": True, "ttft": ttft, "latency": time.perf_counter() - start, "connect": connect}
    except Exception as err:  # noqa: BLE001 - a load test counts every failure
        text = str(err)
        kind = "busy" if "queue is full" in text.lower() or "busy" in text.lower() else "error"
        return {"ok": False, "kind": kind, "message": text[:200], "latency": time.perf_counter() - start, "connect": connect}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def level(url: str, clients: int, requests: int, max_new: int, adapter: str) -> dict:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(lambda i: one_request(url, i, max_new, adapter), range(requests)))
    wall = time.perf_counter() - start
    ok = [r for r in results if r["ok"]]
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    lat = [r["latency"] for r in ok]
    return {
        "clients": clients, "requests": requests, "ok": len(ok), "wall_s": wall, "requests_per_s": len(ok) / wall,
        "busy_rejections": sum(1 for r in results if not r["ok"] and r["kind"] == "busy"),
        "errors": sum(1 for r in results if not r["ok"] and r["kind"] == "error"),
        "error_samples": [r["message"] for r in results if not r["ok"] and r["kind"] == "error"][:3],
        "ttft_p50_s": pct(ttft, 50), "ttft_p95_s": pct(ttft, 95), "ttft_p99_s": pct(ttft, 99),
        "latency_p50_s": pct(lat, 50), "latency_p95_s": pct(lat, 95), "latency_p99_s": pct(lat, 99),
        "latency_mean_s": statistics.fmean(lat) if lat else None,
        "connect_p50_s": pct([r["connect"] for r in results if r["connect"] is not None], 50),
        "busy_latency_p50_s": pct([r["latency"] for r in results if not r["ok"] and r["kind"] == "busy"], 50),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="8,16,32")
    parser.add_argument("--requests", type=int, default=48, help="requests per level")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--adapter", default="upbeat-b0.1")
    parser.add_argument("--out", default="benchmarks/load.json")
    args = parser.parse_args()
    proc, url = start_app()
    try:
        rows = [level(url, int(c), args.requests, args.max_new_tokens, args.adapter) for c in args.clients.split(",")]
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    result = {"date": time.strftime("%Y-%m-%d"), "max_new_tokens": args.max_new_tokens, "server_peak_rss_mb": rss, "levels": rows}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{'clients':>7} {'ok':>4} {'req/s':>6} {'busy':>5} {'err':>4} {'ttft p50/p95/p99 s':>22} {'latency p50/p95/p99 s':>24}")
    for r in rows:
        t = "/".join(f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("ttft_p50_s", "ttft_p95_s", "ttft_p99_s"))
        lat = "/".join(f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("latency_p50_s", "latency_p95_s", "latency_p99_s"))
        print(f"{r['clients']:>7} {r['ok']:>4} {r['requests_per_s']:>6.2f} {r['busy_rejections']:>5} {r['errors']:>4} {t:>22} {lat:>24}")
    for r in rows:
        if r["busy_rejections"]:
            print(f"{r['clients']} clients: 'busy' answered {r['busy_latency_p50_s']:.2f} s after submit (median)")
    print("client connect (gradio_client.Client, fetches the app config) p50: "
          + ", ".join(f"{r['connect_p50_s']:.2f} s at {r['clients']} clients" for r in rows))
    print(f"server peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
