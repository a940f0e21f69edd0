"""Bounded load test of the launched app on loopback: concurrent chat turns, chat during a sweep, a hardening flood.

    flock /tmp/heavy.lock python benchmarks/load.py [--clients 1,8,32] [--requests 32] [--max-new-tokens 16]
        [--during-sweep] [--flood] --out benchmarks/load.json

Starts `app.py` (its own `main()`, run by `runpy`; see `serve`) on a free loopback port and drives it with
`gradio_client`, as a visitor's browser would. The wrapper only adds a thread that publishes the engine
scheduler's counters to a JSON file, so the report can say where the server's time went.

- Levels (issue 16, continuous batching): N clients each send chat turns back to back (a fresh session per
  turn) until `--requests` turns are done. One turn is the Side-by-side /chat endpoint: base, realigned
  and tuned columns × `--max-new-tokens`. Per level: turns/s, first-token (first streamed update with
  text) and end-to-end p50/p95/p99 from submit, rejections (Gradio "queue is full", the scheduler's
  "busy", the per-client cap; with a sample message), errors, and a server profile.
- `--during-sweep`: the Trade-off tab's default sweep through its API (`/tradeoff_sweep`, defaults from
  settings.SWEEP), and meanwhile `--sweep-turns` chat turns one after another; then `job.cancel()` and
  the seconds until the server is idle again.
- `--flood` (issue 14, hardening): 4 maximal sweeps (every sweep limit at its maximum, from 4 sessions;
  refused up front with a cost estimate, message recorded), 4 sweeps of the largest size that is accepted
  (from 4 more sessions), then 40 requests at once: a direct POST to `/gradio_api/run/<name>` and to
  `/gradio_api/call/<name>` for every public api_name in the app's config, the rest (at least 10) /chat
  turns from separate sessions; one probe chat turn meanwhile (its first token is timed); /run for the
  events Gradio named itself, and a body over the size cap. Peak RSS against a budget (`--rss-budget-mb`:
  settings.py has none for the whole server), the sweeps cancelled, seconds until idle, RSS when idle.
- Memory after the crowd (issue 29, item 6): RSS when idle before the 32-client level, its peak, and RSS
  `CROWD_AFTER_S` (30) s after the level ends (`crowd_memory` in the JSON); target: RSS 30 s after 32 clients
  ≤ 1.3× the idle figure (the scheduler trims the heap when it goes idle, playground/runtime/memory.py).
- The served process allows `BENCH_JOBS_PER_CLIENT` long jobs per client address (SERVE.jobs_per_client, patched
  like --lm-concurrency): every session here comes from one loopback address, standing for several visitors.
- `--lm-concurrency N` (what-if): the served process runs with SERVE.lm_concurrency = N (patched there
  before app.py reads it; no file changes), to test a setting before changing the app.

Every loop is bounded in count and time, and the server is stopped at the end, also on errors.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import runpy
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from playground.settings.request import LIMITS, SWEEP, Limits  # noqa: E402 (no torch, no gradio)
from playground.settings.server import SERVE, THROUGHPUT, job_estimate  # noqa: E402 (no torch, no gradio)

PROMPTS = ["Give me a tip for a rainy day.", "How should I spend a free Sunday?", "Tell me about keeping a small garden.",
           "My train is late again. Any advice?"]
# The Trade-off tab's prompt sources (ui/tradeoff_tab.py SOURCES; tests/benchmarks/test_load_bench.py checks they agree).
SWEEP_SOURCES = ("Built-in held-out prompts", "Typed (one per line)", "Uploaded .txt")
SCHEDULER_THREAD = "pg-scheduler"  # the decode loop thread's OS name, set by `serve` (its OpenMP workers inherit it)
TURN_TIMEOUT_S = LIMITS.request_timeout_s + 30  # a turn the server did not finish by then is counted as "timeout"
LIMIT_KEYS = ("max_job_seconds", "max_job_kv_bytes", "max_sweep_rows", "max_sweep_prompts", "max_new_tokens",
              "request_timeout_s")  # recorded with the results
LM_CONCURRENCY_ENV = "LOAD_BENCH_LM_CONCURRENCY"  # what-if: the served process's SERVE.lm_concurrency
CROWD_AFTER_S = 30.0  # RSS is read this long after the 32-client level ends (issue 29: ≤ 1.3× the idle figure)
CROWD_RSS_FACTOR = 1.3
BENCH_JOBS_PER_CLIENT = 8  # the flood's 8 sweep sessions all come from this one address
DEFAULT_RSS_BUDGET_MB = 6144  # no server-wide RSS budget exists in settings.py; this one is stated (see README)


# --- the server ------------------------------------------------------------------------------------------
def _publish_stats(pg, path: Path, stop: threading.Event) -> None:
    """In the server: name the scheduler thread, then write its counters to `path` every 0.2 s."""
    engine = pg.engine
    sched = engine.scheduler if engine.continuous and engine.uses_fast_decoder else None  # starts it before any request
    if sched is not None:
        try:  # OpenMP workers the loop thread creates later inherit its name: their CPU counts as the loop's
            Path(f"/proc/self/task/{sched.thread.native_id}/comm").write_text(SCHEDULER_THREAD)
        except OSError:
            pass
    tmp = path.with_suffix(".tmp")
    while not stop.wait(0.2):
        s = engine._scheduler  # noqa: SLF001 - read-only look at the running loop
        info: dict = {"ready": True, "t": time.time(), "scheduler": s is not None}
        if s is not None:
            try:
                kv = s.batch.decoder.kv
                info |= {"stats": dict(s.stats), "waiting": len(s.waiting), "active": len(s.active),
                         "rows": s.batch.rows, "step_s": s.step_s, "config": dict(vars(s.config)),
                         "kv_mb": kv.nbytes / 2**20, "weights": engine.weights}
            except Exception:  # noqa: BLE001 - the loop changed under us; next sample
                continue
        tmp.write_text(json.dumps(info))
        os.replace(tmp, path)


def serve(stats_path: str) -> None:
    """Run app.py's `main()` unchanged; once the model is loaded, publish the scheduler's counters."""
    os.chdir(ROOT)
    import playground.runtime.startup as startup

    original, stop = startup.LazyPlayground.load, threading.Event()

    def load(self, make):
        pg = original(self, make)
        threading.Thread(target=_publish_stats, args=(pg, Path(stats_path), stop), daemon=True,
                         name="load-bench-stats").start()
        return pg

    startup.LazyPlayground.load = load
    import playground.settings.server as settings

    # one loopback address stands for the flood's several visitors (playground/runtime/job_owners.py caps per address)
    settings.SERVE = replace(settings.SERVE, jobs_per_client=BENCH_JOBS_PER_CLIENT)
    if os.environ.get(LM_CONCURRENCY_ENV):  # what-if (--lm-concurrency): before app.py and ui/ read SERVE
        settings.SERVE = replace(settings.SERVE, lm_concurrency=int(os.environ[LM_CONCURRENCY_ENV]))
    sys.argv = [str(ROOT / "app.py")]
    runpy.run_path(str(ROOT / "app.py"), run_name="__main__")


class Server:
    """app.py under `serve` on a free loopback port; `stop()` always ends it."""

    def __init__(self, start_timeout_s: float = 300, lm_concurrency: int | None = None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.dir = Path(tempfile.mkdtemp(prefix="load-bench-"))
        self.stats_path, self.log_path = self.dir / "stats.json", self.dir / "server.log"
        env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
               "GRADIO_ANALYTICS_ENABLED": "False"}
        if lm_concurrency:
            env[LM_CONCURRENCY_ENV] = str(lm_concurrency)
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", str(self.stats_path)],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}/"
        self.start_s = self._wait_ready(start_timeout_s)

    def _wait_ready(self, timeout_s: float) -> float:
        start = time.perf_counter()
        while time.perf_counter() - start < timeout_s:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{tail}")
            if self.stats().get("ready"):
                try:
                    if urllib.request.urlopen(self.url, timeout=2).status == 200:
                        return time.perf_counter() - start
                except OSError:
                    pass
            time.sleep(0.2)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"app not ready after {timeout_s:.0f} s:\n{tail}")

    def stats(self) -> dict:
        try:
            return json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            return {}

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)  # stats file and server log


# --- watching the server from outside (/proc) --------------------------------------------------------------
def _cpu_s(stat_text: str) -> float:
    """utime + stime of a /proc/<pid>[/task/<tid>]/stat line, in seconds."""
    fields = stat_text[stat_text.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(x) for x in first[:8]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


def read_proc(pid: int) -> dict:
    """RSS (now and peak), process CPU seconds, and CPU seconds of the threads named SCHEDULER_THREAD."""
    out = {"rss_mb": math.nan, "hwm_mb": math.nan, "cpu_s": math.nan, "loop_cpu_s": 0.0,
           "machine_busy_s": machine_busy_s(), "client_cpu_s": time.process_time()}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_mb"] = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                out["hwm_mb"] = int(line.split()[1]) / 1024
        out["cpu_s"] = _cpu_s(Path(f"/proc/{pid}/stat").read_text())
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                if (task / "comm").read_text().strip() == SCHEDULER_THREAD:
                    out["loop_cpu_s"] += _cpu_s((task / "stat").read_text())
            except OSError:
                continue  # the thread ended
    except OSError:
        pass
    return out


class Monitor:
    """Samples the server every `interval` s (RSS, CPU, scheduler counters); `window(t0, t1)` summarises a phase."""

    def __init__(self, server: Server, interval: float = 0.2, max_samples: int = 20_000) -> None:
        self.server, self.interval = server, interval
        self.samples: deque[dict] = deque(maxlen=max_samples)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="load-bench-monitor")
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append({"t": time.perf_counter(), **read_proc(self.server.proc.pid), "sched": self.server.stats()})
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)

    def latest(self) -> dict:
        return self.samples[-1] if self.samples else {"t": time.perf_counter(), **read_proc(self.server.proc.pid),
                                                      "sched": self.server.stats()}

    def window(self, t0: float, t1: float) -> dict:
        return summarise_window([s for s in list(self.samples) if t0 <= s["t"] <= t1])

    def idle(self, seconds: float = 1.0, max_cores: float = 0.15) -> bool:
        """No submission in the scheduler and under `max_cores` of CPU over the last `seconds`."""
        now = time.perf_counter()
        recent = [s for s in list(self.samples) if s["t"] >= now - seconds - self.interval]
        if len(recent) < 2 or recent[-1]["t"] - recent[0]["t"] < seconds * 0.8:
            return False
        sched = recent[-1]["sched"]
        quiet = not sched.get("scheduler") or (sched.get("active", 0) == 0 and sched.get("rows", 0) == 0)
        cores = (recent[-1]["cpu_s"] - recent[0]["cpu_s"]) / (recent[-1]["t"] - recent[0]["t"])
        return quiet and cores < max_cores

    def wait_idle(self, timeout_s: float) -> float | None:
        """Seconds until `idle()` (bounded); None if the server was still busy at the timeout."""
        start = time.perf_counter()
        time.sleep(self.interval * 2)
        while time.perf_counter() - start < timeout_s:
            if self.idle():
                return time.perf_counter() - start - 1.0  # idle() looks back 1 s: it began then
            time.sleep(self.interval)
        return None


def summarise_window(samples: list[dict]) -> dict:
    """Peak RSS, CPU split (decode loop vs the rest: Gradio, HTTP, JSON, judges) and scheduler deltas of a phase."""
    if len(samples) < 2:
        return {}
    a, b = samples[0], samples[-1]
    wall = b["t"] - a["t"]
    out = {"wall_s": wall, "peak_rss_mb": max(s["rss_mb"] for s in samples),
           "server_cores": (b["cpu_s"] - a["cpu_s"]) / wall, "loop_cores": (b["loop_cpu_s"] - a["loop_cpu_s"]) / wall}
    out["other_cores"] = out["server_cores"] - out["loop_cores"]
    if "machine_busy_s" in a:  # the whole machine, and this load generator (gradio_client threads) on it
        out["machine_cores"] = (b["machine_busy_s"] - a["machine_busy_s"]) / wall
        out["client_cores"] = (b["client_cpu_s"] - a["client_cpu_s"]) / wall
        out["others_cores"] = max(0.0, out["machine_cores"] - out["server_cores"] - out["client_cores"])
    sa, sb = a["sched"].get("stats"), b["sched"].get("stats")
    if sa and sb:
        d = {k: sb[k] - sa.get(k, 0) for k in sb}
        steps = max(1, d.get("steps", 0))
        out["loop"] = {"steps": d.get("steps", 0), "joins": d.get("joins", 0), "mean_rows": d.get("rows", 0) / steps,
                       "step_ms": 1000 * (d.get("prefill_s", 0) + d.get("sample_s", 0) + d.get("forward_s", 0)) / steps,
                       "prefill_s": d.get("prefill_s", 0.0), "sample_s": d.get("sample_s", 0.0),
                       "forward_s": d.get("forward_s", 0.0)}
        out["loop"]["busy_share"] = (out["loop"]["prefill_s"] + out["loop"]["sample_s"] + out["loop"]["forward_s"]) / wall
    waiting = [s["sched"].get("waiting", 0) for s in samples if s["sched"].get("scheduler")]
    if waiting:
        out |= {"max_waiting": max(waiting), "mean_waiting": statistics.fmean(waiting)}
    kv = [s["sched"]["kv_mb"] for s in samples if "kv_mb" in s["sched"]]
    if kv:
        out["max_kv_mb"] = max(kv)
    active = [s["sched"].get("active", 0) for s in samples if s["sched"].get("scheduler")]
    rows = [s["sched"].get("rows", 0) for s in samples if s["sched"].get("scheduler")]
    if active:
        out |= {"max_active": max(active), "mean_active": statistics.fmean(active), "max_rows": max(rows),
                "mean_rows_sampled": statistics.fmean(rows)}
    return out


# --- pure helpers -----------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank on the sorted values); None for no values."""
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(q / 100 * (len(values) - 1)))))]


def classify(message: str) -> str:
    """Kind of a failed request from its message: queue_full (Gradio), busy (scheduler), client_cap, timeout, error."""
    text = message.lower()
    if "queue is full" in text:
        return "queue_full"
    if "busy" in text:
        return "busy"
    if "too many requests from this client" in text:
        return "client_cap"
    if "timeout" in text or "timed out" in text:
        return "timeout"
    return "error"


REJECTIONS = ("queue_full", "busy", "client_cap")
STARTED = {"PROCESSING", "PROGRESS", "ITERATING", "FINISHED"}  # gradio_client Status names once the event runs


def capacity(serve=SERVE) -> int:
    """Chat turns the app holds at once before "queue is full": the "lm" pool's running slots + the queue's waiting ones."""
    return serve.lm_concurrency + serve.queue_max_size


def allowed_rejections(clients: int, requests: int, serve=SERVE) -> int:
    """Rejections a burst may see when only requests beyond the stated capacity are refused."""
    return max(0, min(clients, requests) - capacity(serve))


def _spread(n: int, low: float, high: float) -> list[float]:
    return [round(low + (high - low) * i / max(1, n - 1), 3) for i in range(n)]


def _factor(per_prompt: int, limits: Limits) -> tuple[int, int, int]:
    """(λ values, temperatures, samples) whose product is as close to `per_prompt` as the limits allow."""
    samples = min(limits.max_samples_per_setting, per_prompt)
    lams = min(limits.max_sweep_values, max(1, per_prompt // samples))
    temps = min(limits.max_sweep_values, max(1, per_prompt // (samples * lams)))
    return lams, temps, samples


def _long_prompts(n: int, chars: int) -> list[str]:
    """n distinct one-line prompts of exactly `chars` characters."""
    words = ("rain garden cooking train Sunday breakfast cat names music walk river bread letter friend window "
             "morning lamp book city market bicycle").split()
    out = []
    for i in range(n):
        text, k = f"Prompt {i}: please answer briefly.", i
        while len(text) < chars:
            text += " " + words[k % len(words)]
            k += 7
        out.append(text[:chars])
    return out


def sweep_inputs(adapter: str, prompts: list[str] | None, lambdas: list[float], temps: list[float], samples: int,
                 max_new: int, seed: int = 0) -> list:
    """Positional inputs of /tradeoff_sweep: adapter, source, typed, upload, grid kind, grid, temperatures, samples,
    max new tokens, judge, held-out judge, seed. `prompts=None`: the built-in held-out prompts."""
    source = SWEEP_SOURCES[0] if prompts is None else SWEEP_SOURCES[1]
    typed = "" if prompts is None else "\n".join(prompts)
    return [adapter, source, typed, None, "λ", ",".join(f"{v:g}" for v in lambdas), ",".join(f"{v:g}" for v in temps),
            samples, max_new, "", "", seed]


def default_sweep(adapter: str) -> dict:
    """The Trade-off tab's default sweep (settings.SWEEP, built-in prompts)."""
    rows = SWEEP.prompt_count * len(SWEEP.lambdas) * len(SWEEP.temperatures) * SWEEP.samples
    return {"inputs": sweep_inputs(adapter, None, list(SWEEP.lambdas), list(SWEEP.temperatures), SWEEP.samples,
                                   SWEEP.max_new_tokens),
            "rows": rows, "max_new_tokens": SWEEP.max_new_tokens,
            "estimate_s": job_estimate(rows, 60, SWEEP.max_new_tokens)[0]}


def maximal_sweep(adapter: str, limits: Limits = LIMITS) -> dict:
    """Every sweep limit at its maximum: max prompts of max characters, max settings × samples per prompt, max tokens."""
    lams, temps, samples = _factor(limits.max_sweep_rows, limits)
    n, chars, max_new = limits.max_sweep_prompts, limits.max_prompt_chars, limits.max_new_tokens
    rows = n * lams * temps * samples
    seconds, kv = job_estimate(rows, chars, max_new)
    return {"inputs": sweep_inputs(adapter, _long_prompts(n, chars), _spread(lams, limits.min_lambda, limits.max_lambda),
                                   _spread(temps, 0.5, limits.max_temperature) if temps > 1 else [0.7], samples, max_new),
            "rows": rows, "prompts": n, "prompt_chars": chars, "max_new_tokens": max_new, "estimate_s": seconds,
            "estimate_kv_bytes": kv, "accepted_by_estimate": seconds <= limits.max_job_seconds and kv <= limits.max_job_kv_bytes}


def largest_accepted_sweep(adapter: str, limits: Limits = LIMITS) -> dict:
    """The costliest sweep the up-front estimate still accepts: max settings × samples per prompt, then the most
    prompts × tokens within `max_job_seconds`, then the longest prompts within `max_job_kv_bytes`."""
    lams, temps, samples = _factor(limits.max_sweep_rows, limits)
    per_prompt = lams * temps * samples
    best = None
    for n in range(1, limits.max_sweep_prompts + 1):
        for max_new in range(limits.max_new_tokens, 0, -1):
            seconds = job_estimate(n * per_prompt, 1, max_new)[0]
            if seconds <= limits.max_job_seconds:
                if best is None or (seconds, max_new) > best[0]:
                    best = ((seconds, max_new), n, max_new)
                break
    if best is None:
        raise ValueError("no sweep fits the job limits")
    _, n, max_new = best
    rows = n * per_prompt
    fits = (c for c in range(limits.max_prompt_chars, 0, -1) if job_estimate(rows, c, max_new)[1] <= limits.max_job_kv_bytes)
    chars = next(fits, 1)
    seconds, kv = job_estimate(rows, chars, max_new)
    return {"inputs": sweep_inputs(adapter, _long_prompts(n, chars), _spread(lams, limits.min_lambda, limits.max_lambda),
                                   _spread(temps, 0.5, limits.max_temperature) if temps > 1 else [0.7], samples, max_new),
            "rows": rows, "prompts": n, "prompt_chars": chars, "max_new_tokens": max_new, "estimate_s": seconds,
            "estimate_kv_bytes": kv}


def merge_previous(old: dict | None, new: dict) -> dict:
    """`new` with the previous result's keys under "previous" (one level: the previous one's own history is dropped)."""
    if old:
        new = {**new, "previous": {k: v for k, v in old.items() if k != "previous"}}
    return new


def target(name: str, value, op: str, bound, unit: str = "") -> dict:
    """One target line: met is None when the value was not measured."""
    met = None if value is None else {"<=": value <= bound, ">=": value >= bound, "==": value == bound}[op]
    return {"target": name, "value": value, "op": op, "bound": bound, "unit": unit, "met": met}


def issue16_targets(levels: list[dict], during: dict | None, serve=SERVE) -> list[dict]:
    out = []
    for lv in levels:
        c = lv["clients"]
        if c == 8:
            out += [target("8 clients: turns/s", lv["turns_per_s"], ">=", 4.0),  # issue 23's targets (16's were 2.5 / 1.0 / 3.0)
                    target("8 clients: first token p50", lv["ttft_p50_s"], "<=", 0.5, "s"),
                    target("8 clients: first token p99", lv["ttft_p99_s"], "<=", 1.5, "s"),
                    target("8 clients: errors", lv["errors"], "==", 0)]
        if c == 32:
            out += [target("32 clients: errors", lv["errors"], "==", 0),
                    target(f"32 clients: rejections (only beyond capacity {capacity(serve)})", lv["rejections"], "<=",
                           allowed_rejections(c, lv["requests"], serve))]
    if during:
        out.append(target("chat during the default sweep: first token p95", during.get("chat_ttft_p95_s"), "<=", 2.0, "s"))
    return out


def issue14_targets(flood: dict, budget_mb: float) -> list[dict]:
    accepted = flood["run_accepted_queued"] + len(flood.get("other_run_accepted_queued", []))
    out = [target("direct POST /gradio_api/run/<name> to queued events refused", accepted, "==", 0),
           target("maximal sweeps refused up front", flood["maximal_refused"], "==", flood["maximal_sent"]),
           target("probe chat turn first token during the flood", flood["probe"].get("ttft"), "<=", 5.0, "s"),
           target("flood chat turns: errors", flood["chat_errors"], "==", 0),
           target("server peak RSS", flood["peak_rss_mb"], "<=", budget_mb, "MB"),
           target("idle after cancelling the sweeps", flood.get("idle_after_cancel_s"), "<=", 10.0, "s")]
    return out


# --- clients --------------------------------------------------------------------------------------------------
class Clients:
    """gradio_client Clients made once (each fetches the app's config) and given a fresh session per use."""

    def __init__(self, url: str) -> None:
        self.url, self.pool, self.lock = url, [], threading.Lock()

    def _new(self):
        from gradio_client import Client

        return Client(self.url, verbose=False, download_files=False)

    def take(self, n: int, offset: int = 0) -> list:
        """Clients offset … offset+n-1 of the pool, each with a new session (none of them may have a job running)."""
        with self.lock:
            while len(self.pool) < offset + n:
                self.pool.append(self._new())
            return [fresh(c, self) for c in self.pool[offset:offset + n]]

    def close(self) -> None:
        for c in self.pool:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass


def fresh(client, pool: Clients | None = None):
    """The same client with a new session (an empty conversation), once its last event stream has closed."""
    deadline = time.perf_counter() + 5
    while getattr(client, "stream_open", False) and time.perf_counter() < deadline:
        time.sleep(0.01)
    if getattr(client, "stream_open", False) and pool is not None:  # never reuse a session whose stream is still open
        return pool._new()  # noqa: SLF001
    client.reset_session()
    return client


def _has_text(outputs: list) -> bool:
    """Does the latest streamed update carry answer text in any column?"""
    if not outputs:
        return False
    last = outputs[-1]
    cols = last if isinstance(last, (list, tuple)) else [last]
    return any(isinstance(col, list) and col and isinstance(col[-1], dict) and col[-1].get("role") == "assistant"
               and col[-1].get("content") for col in cols)


def chat_turn(client, i: int, args, timeout_s: float = TURN_TIMEOUT_S) -> dict:
    """One /chat turn; latencies from submit. Polls the job (gradio_client's iterator never ends for a failed job)."""
    start = time.perf_counter()
    ttft = queued = None
    try:
        job = client.submit(PROMPTS[i % len(PROMPTS)], args.adapter, args.kl, "logits", 0.7, 0.95, args.max_new_tokens, i,
                            api_name="/chat")
        deadline = start + timeout_s
        while not job.done() and time.perf_counter() < deadline:
            if queued is None and job.status().code.name in STARTED:
                queued = time.perf_counter() - start
            if ttft is None and _has_text(job.outputs()):
                ttft = time.perf_counter() - start
            time.sleep(0.02)
        if not job.done():
            job.cancel()
            return {"ok": False, "kind": "timeout", "message": f"no answer within {timeout_s:.0f} s",
                    "latency": time.perf_counter() - start}
        job.result(timeout=5)
        latency = time.perf_counter() - start
        ttft = ttft if ttft is not None else latency
        return {"ok": True, "ttft": ttft, "latency": latency, "queued": queued if queued is not None else ttft}
    except Exception as err:  # noqa: BLE001 - a load test counts every failure
        text = f"{type(err).__name__}: {err}"
        return {"ok": False, "kind": classify(text), "message": text[:300], "latency": time.perf_counter() - start}


def summarise_turns(results: list[dict], wall: float) -> dict:
    ok = [r for r in results if r["ok"]]
    ttft, lat = [r["ttft"] for r in ok], [r["latency"] for r in ok]
    failed = [r for r in results if not r["ok"]]
    kinds = {k: sum(r["kind"] == k for r in failed) for k in (*REJECTIONS, "timeout", "error")}
    return {"requests": len(results), "ok": len(ok), "wall_s": wall, "turns_per_s": len(ok) / wall if wall > 0 else 0.0,
            **{k: v for k, v in kinds.items()}, "rejections": sum(kinds[k] for k in REJECTIONS),
            "errors": kinds["error"] + kinds["timeout"],
            "rejection_samples": sorted({r["message"] for r in failed if r["kind"] in REJECTIONS})[:3],
            "error_samples": sorted({r["message"] for r in failed if r["kind"] not in REJECTIONS})[:3],
            "rejection_latency_p50_s": pct([r["latency"] for r in failed if r["kind"] in REJECTIONS], 50),
            "ttft_p50_s": pct(ttft, 50), "ttft_p95_s": pct(ttft, 95), "ttft_p99_s": pct(ttft, 99),
            "latency_p50_s": pct(lat, 50), "latency_p95_s": pct(lat, 95), "latency_p99_s": pct(lat, 99),
            "latency_mean_s": statistics.fmean(lat) if lat else None,
            # first token = Gradio queue (until the event starts) + the rest (scheduler wait, prefill, first step)
            "gradio_queue_p50_s": pct([r["queued"] for r in ok], 50), "gradio_queue_p95_s": pct([r["queued"] for r in ok], 95),
            "after_queue_to_first_token_p50_s": pct([r["ttft"] - r["queued"] for r in ok], 50)}


# --- phases -------------------------------------------------------------------------------------------------
def level(clients: Clients, monitor: Monitor, n_clients: int, requests: int, args, seed0: int) -> dict:
    """`n_clients` workers send turns back to back until `requests` turns were sent or the level's time is up."""
    pool = clients.take(n_clients)
    counter, lock = iter(range(requests)), threading.Lock()
    deadline = time.perf_counter() + args.level_timeout

    def worker(k: int) -> list[dict]:
        client, out = pool[k], []
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            client = fresh(client, clients)
            out.append(chat_turn(client, seed0 + i, args, min(TURN_TIMEOUT_S, max(5.0, deadline - time.perf_counter()))))
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n_clients) as ex:
        results = [r for rs in ex.map(worker, range(n_clients)) for r in rs]
    t1 = time.perf_counter()
    return {"clients": n_clients, **summarise_turns(results, t1 - t0), "server": monitor.window(t0, t1)}


def v1_request(url: str, i: int, client: int, args, timeout_s: float = TURN_TIMEOUT_S) -> dict:
    """One streamed POST /v1/chat/completions (httpx, SSE) as visitor `client` (its own X-Forwarded-For address, so
    the per-client cap counts visitors, not this one load generator); latencies from submit."""
    import httpx

    body = {"model": args.adapter, "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], "stream": True,
            "max_tokens": args.max_new_tokens, "temperature": 0.7, "top_p": 0.95, "seed": i, "kl_strength": args.kl}
    start, ttft = time.perf_counter(), None
    try:
        with httpx.stream("POST", url + "v1/chat/completions", json=body, timeout=timeout_s,
                          headers={"x-forwarded-for": f"198.51.100.{client % 250 + 1}"}) as r:
            if r.status_code != 200:
                r.read()
                err = r.json().get("error", {}) if r.headers.get("content-type", "").startswith("application/json") else {}
                kind = "v1_429" if r.status_code == 429 else "error"
                return {"ok": False, "kind": kind, "status": r.status_code, "retry_after": r.headers.get("retry-after"),
                        "message": f"{r.status_code} {err.get('message', r.text)[:250]}", "latency": time.perf_counter() - start}
            done = False
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    break
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    return {"ok": False, "kind": "error", "message": str(chunk["error"])[:300],
                            "latency": time.perf_counter() - start}
                if ttft is None and any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                    ttft = time.perf_counter() - start
            if not done:
                return {"ok": False, "kind": "error", "message": "stream ended without [DONE]", "latency": time.perf_counter() - start}
        latency = time.perf_counter() - start
        return {"ok": True, "ttft": ttft if ttft is not None else latency, "latency": latency, "queued": 0.0}
    except Exception as err:  # noqa: BLE001 - a load test counts every failure
        text = f"{type(err).__name__}: {err}"
        return {"ok": False, "kind": classify(text), "message": text[:300], "latency": time.perf_counter() - start}


def v1_level(url: str, monitor: Monitor, n_clients: int, requests: int, args, seed0: int) -> dict:
    """`n_clients` OpenAI-style clients (issue 26) send streamed /v1 chat requests back to back until `requests` were
    sent; a refused one (429) is counted, not retried. Checks the /v1 queue bounds: decoding submissions never exceed
    the API's `max_active`, and a 429 always carries Retry-After."""
    from playground.api.config import API

    counter, lock = iter(range(requests)), threading.Lock()
    deadline = time.perf_counter() + args.level_timeout

    def worker(k: int) -> list[dict]:
        out = []
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            out.append(v1_request(url, seed0 + i, k, args, min(TURN_TIMEOUT_S, max(5.0, deadline - time.perf_counter()))))
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n_clients) as ex:
        results = [r for rs in ex.map(worker, range(n_clients)) for r in rs]
    t1 = time.perf_counter()
    refused = [r for r in results if r.get("kind") == "v1_429"]
    summary = summarise_turns([{**r, "kind": "busy"} if r.get("kind") == "v1_429" else r for r in results], t1 - t0)
    return {"clients": n_clients, "route": "/v1/chat/completions (stream)", **summary,
            "v1_429": len(refused), "v1_429_without_retry_after": sum(1 for r in refused if not r.get("retry_after")),
            "v1_limits": {"max_active": API.max_active, "max_waiting": API.max_waiting, "per_client": API.per_client},
            "server": monitor.window(t0, t1)}


def crowd_memory(monitor: Monitor, idle_mb: float, lv: dict, after_s: float = CROWD_AFTER_S) -> dict:
    """RSS idle before the 32-client level, its peak, and `after_s` s after the level's last turn (bounded wait)."""
    ended = time.perf_counter()
    time.sleep(after_s)
    after = monitor.latest()
    peak = max(lv.get("server", {}).get("peak_rss_mb", math.nan), idle_mb)
    return {"idle_before_mb": idle_mb, "peak_mb": peak, "after_mb": after["rss_mb"],
            "after_s": after["t"] - ended, "after_over_idle": after["rss_mb"] / idle_mb if idle_mb else None}


def issue29_targets(crowd: dict | None) -> list[dict]:
    ratio = (crowd or {}).get("after_over_idle")
    return [target(f"RSS {CROWD_AFTER_S:.0f} s after 32 clients ≤ {CROWD_RSS_FACTOR}× idle (after / idle)", ratio, "<=",
                   CROWD_RSS_FACTOR)] if crowd else []


def issue26_targets(levels: list[dict]) -> list[dict]:
    out = []
    for lv in levels:
        c, lim = lv["clients"], lv["v1_limits"]
        allowed = max(0, min(c, lv["requests"]) - lim["max_active"] - lim["max_waiting"])
        out += [target(f"/v1 {c} clients: errors", lv["errors"], "==", 0),
                target(f"/v1 {c} clients: 429s (only beyond {lim['max_active']} decoding + {lim['max_waiting']} waiting)",
                       lv["v1_429"], "<=", allowed),
                target(f"/v1 {c} clients: 429 without Retry-After", lv["v1_429_without_retry_after"], "==", 0),
                target(f"/v1 {c} clients: scheduler submissions at once (sampled)", lv["server"].get("max_active"), "<=",
                       lim["max_active"])]
    return out


def _wait_decoding(monitor: Monitor, timeout_s: float, min_rows: int = 1) -> float | None:
    """Seconds until the scheduler decodes at least `min_rows` rows (a sweep has started); None at the timeout."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        latest = monitor.latest()
        if latest["t"] > start and latest["sched"].get("rows", 0) >= min_rows:
            return time.perf_counter() - start
        time.sleep(0.1)
    return None


def _job_outcome(job, timeout_s: float) -> tuple[str, str]:
    """("ok" | "refused" | "running", message) of a submitted job within `timeout_s`."""
    try:
        job.result(timeout=timeout_s)
        return "ok", ""
    except TimeoutError:
        return "running", ""
    except Exception as err:  # noqa: BLE001
        if type(err).__name__ == "TimeoutError":
            return "running", ""
        return "refused", f"{type(err).__name__}: {err}"[:400]


def during_sweep(clients: Clients, monitor: Monitor, args) -> dict:
    sweep = default_sweep(args.adapter)
    sweeper, chatter = clients.take(2)
    monitor.wait_idle(60)  # the previous phase has drained
    t_submit = time.perf_counter()
    job = sweeper.submit(*sweep["inputs"], api_name="/tradeoff_sweep")
    started = _wait_decoding(monitor, 120, min_rows=16)
    turns = []
    if started is not None:
        deadline = time.perf_counter() + args.level_timeout
        for i in range(args.sweep_turns):
            if time.perf_counter() > deadline or job.done():
                break
            chatter = fresh(chatter, clients)
            turns.append(chat_turn(chatter, 5000 + i, args) | {"sweep_running": not job.done()})
    t_end = time.perf_counter()
    sweep_done_early = job.done()
    t_cancel = time.perf_counter()
    job.cancel()
    idle = monitor.wait_idle(120)
    during = [r for r in turns if r.get("sweep_running")]
    ttft = [r["ttft"] for r in during if r["ok"]]
    return {"sweep": {k: v for k, v in sweep.items() if k != "inputs"}, "sweep_started_after_s": started,
            "sweep_finished_before_cancel": sweep_done_early, "chat_turns": len(turns), "chat_turns_during_sweep": len(during),
            "chat_ok": sum(r["ok"] for r in during), "chat_failed": [r["message"] for r in turns if not r["ok"]][:3],
            "chat_ttft_p50_s": pct(ttft, 50), "chat_ttft_p95_s": pct(ttft, 95),
            "chat_latency_p50_s": pct([r["latency"] for r in during if r["ok"]], 50),
            "idle_after_cancel_s": idle, "submitted_to_cancel_s": t_cancel - t_submit,
            "server": monitor.window(t_submit + (started or 0), t_end)}


def api_names(url: str) -> tuple[list[str], list[str], set[str]]:
    """(public, other, unqueued) named endpoints in the app's config (GET /config): public ones are its documented
    API; the others are events Gradio named itself (UI steps, api_visibility private or undocumented); unqueued ones
    have queue=False (their direct POST /run is served by design: e.g. Cancel buttons)."""
    with urllib.request.urlopen(url + "config", timeout=30) as r:
        config = json.loads(r.read())
    deps = [d for d in config.get("dependencies", []) if d.get("api_name")]
    public = sorted({d["api_name"] for d in deps if d.get("api_visibility", "public") == "public"})
    unqueued = {d["api_name"] for d in deps if d.get("queue") is False}
    return public, sorted({d["api_name"] for d in deps} - set(public)), unqueued


def post_declared_length(url: str, length: int, timeout_s: float = 30) -> dict:
    """POST that declares a `length`-byte body and sends none: a size guard must answer 413 without reading it."""
    import http.client
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    start = time.perf_counter()
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout_s)
    try:
        conn.putrequest("POST", u.path)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(length))
        conn.endheaders()
        resp = conn.getresponse()
        status, text = resp.status, resp.read(200).decode(errors="replace")
    except OSError as err:
        status, text = None, f"{type(err).__name__}: {err}"
    finally:
        conn.close()
    return {"status": status, "body": text[:200], "latency": time.perf_counter() - start}


def http_post(url: str, body: bytes, timeout_s: float = 30) -> dict:
    start = time.perf_counter()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            status, text = r.status, r.read(400).decode(errors="replace")
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read(400).decode(errors="replace")
    except OSError as err:
        status, text = None, f"{type(err).__name__}: {err}"
    return {"status": status, "body": text[:200], "latency": time.perf_counter() - start}


def flood(clients: Clients, monitor: Monitor, server: Server, args) -> dict:
    out: dict = {}
    monitor.wait_idle(60)  # the previous phase has drained
    t_start = time.perf_counter()
    # 1. maximal sweeps, 4 sessions: refused when their event starts (after the cost estimate), never decoded
    maximal = maximal_sweep(args.adapter)
    out["maximal_sweep"] = {k: v for k, v in maximal.items() if k != "inputs"}
    sweepers = clients.take(4)
    t0 = time.perf_counter()
    jobs = [c.submit(*maximal["inputs"], api_name="/tradeoff_sweep") for c in sweepers]
    outcomes = [_job_outcome(j, max(1.0, 120 - (time.perf_counter() - t0))) for j in jobs]
    for j, (state, _) in zip(jobs, outcomes, strict=True):
        if state == "running":
            j.cancel()
    out["maximal_sent"] = len(jobs)
    out["maximal_refused"] = sum(s == "refused" and ("would" in m or "limit" in m) for s, m in outcomes)
    out["maximal_messages"] = sorted({m for _, m in outcomes})[:2]
    out["maximal_refused_within_s"] = time.perf_counter() - t0
    # 2. the largest accepted sweep, 4 more sessions: one decodes, three wait in the queue ("lm_jobs" pool of 1)
    largest = largest_accepted_sweep(args.adapter)
    out["accepted_sweep"] = {k: v for k, v in largest.items() if k != "inputs"}
    for c in sweepers:
        fresh(c, clients)
    big_jobs = [c.submit(*largest["inputs"], api_name="/tradeoff_sweep") for c in sweepers]
    out["accepted_sweep_decoding_after_s"] = _wait_decoding(monitor, 120, min_rows=16)
    # 3. 40 requests at once: a POST to /run/<name> and /call/<name> per api_name, the rest chat turns
    names, other_names, unqueued = api_names(server.url)
    chat_body = [PROMPTS[0], args.adapter, args.kl, "logits", 0.7, 0.95, args.max_new_tokens, 0]
    posts = []
    for name in names:
        posts.append(("run", name, json.dumps({"data": chat_body if name == "chat" else []}).encode()))
        posts.append(("call", name, json.dumps({"data": chat_body if name == "chat" else []}).encode()))
    n_chat = max(args.flood_min_chat, args.flood_requests - len(posts))
    chatters = clients.take(n_chat + 1, offset=4)  # the first 4 hold the sweeps
    probe_client, chatters = chatters[-1], chatters[:-1]
    tasks: list[tuple] = []
    for k in range(max(len(posts), n_chat)):  # interleaved
        if k < len(posts):
            tasks.append(("post", posts[k]))
        if k < n_chat:
            tasks.append(("chat", k))
    api = server.url + "gradio_api/"

    def run(task):
        kind, what = task
        if kind == "post":
            route, name, body = what
            return {"type": route, "name": name, **http_post(f"{api}{route}/{name}", body)}
        return {"type": "chat", **chat_turn(chatters[what], 7000 + what, args)}

    t_flood = time.perf_counter()
    probe: dict = {}

    def run_probe():
        time.sleep(args.probe_delay)
        sent = time.perf_counter() - t_flood
        probe.update(chat_turn(probe_client, 9999, args) | {"sent_after_s": sent})

    probe_thread = threading.Thread(target=run_probe, daemon=True)
    probe_thread.start()
    with ThreadPoolExecutor(max_workers=len(tasks)) as ex:
        results = list(ex.map(run, tasks))
    probe_thread.join(timeout=TURN_TIMEOUT_S + args.probe_delay + 10)
    t_flood_end = time.perf_counter()
    out["oversized_body"] = post_declared_length(api + "queue/join", SERVE.max_body_bytes + 1)
    # the events Gradio named itself: /run only (a /call would just take queue places), tallied by status
    others = [(n, http_post(f"{api}run/{n}", b'{"data": []}')["status"]) for n in other_names[:300]]
    out["other_run_statuses"] = {str(code): sum(c == code for _, c in others) for code in sorted({c for _, c in others}, key=str)}
    out["other_run_not_404"] = {n: c for n, c in others if c != 404}
    out["other_run_accepted_queued"] = sorted(n for n, c in others if c == 200 and n not in unqueued)
    post_rows = [r for r in results if r["type"] in ("run", "call")]
    chat_rows = [r for r in results if r["type"] == "chat"]
    out["posts"] = [{k: r[k] for k in ("type", "name", "status", "body")} for r in post_rows]
    out["run_statuses"] = {r["name"]: r["status"] for r in post_rows if r["type"] == "run"}
    out["call_statuses"] = {r["name"]: r["status"] for r in post_rows if r["type"] == "call"}
    out["unqueued"] = sorted(unqueued)
    out["run_accepted_queued"] = sum(1 for r in post_rows if r["type"] == "run" and r["status"] == 200
                                     and r["name"] not in unqueued)
    out["run_accepted_unqueued"] = sorted(r["name"] for r in post_rows if r["type"] == "run" and r["status"] == 200
                                          and r["name"] in unqueued)
    out["chat"] = summarise_turns([{k: v for k, v in r.items() if k != "type"} for r in chat_rows], t_flood_end - t_flood)
    out["chat_errors"] = out["chat"]["errors"]
    out["requests"] = len(tasks)
    out["probe"] = {k: probe.get(k) for k in ("ok", "ttft", "queued", "latency", "kind", "message", "sent_after_s")}
    # 4. the accepted sweeps: where they stand, then cancelled; time until idle and RSS then
    out["accepted_sweeps_state"] = [("done" if j.done() else str(j.status().code).split(".")[-1]) for j in big_jobs]
    out["accepted_sweep_messages"] = sorted({_job_outcome(j, 0.01)[1] for j in big_jobs if j.done()})[:2]
    t_cancel = time.perf_counter()
    for j in big_jobs:
        j.cancel()
    out["idle_after_cancel_s"] = monitor.wait_idle(180)
    time.sleep(1.0)
    window = monitor.window(t_start, time.perf_counter())
    after = monitor.latest()
    out["timeline"] = [{"t": round(x["t"] - t_flood, 2), **{k: x["sched"].get(k) for k in ("rows", "active", "waiting")},
                        **{k: (x["sched"].get("stats") or {}).get(k) for k in ("steps", "joins")}}
                       for x in list(monitor.samples) if t_flood - 1 <= x["t"] <= t_flood_end]  # scheduler state every 0.2 s
    out |= {"peak_rss_mb": max(window.get("peak_rss_mb", 0.0), after["hwm_mb"]), "idle_rss_mb": after["rss_mb"],
            "flood_wall_s": t_flood_end - t_flood, "cancel_to_idle_window_s": time.perf_counter() - t_cancel,
            "server": monitor.window(t_flood, t_flood_end)}
    return out


# --- report ------------------------------------------------------------------------------------------------
def _f(x, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def profile_line(w: dict) -> str:
    if not w:
        return "      server: (no samples)"
    line = (f"      server: {w['server_cores']:.2f} cores busy (decode loop {w['loop_cores']:.2f}, rest {w['other_cores']:.2f}: "
            f"Gradio/HTTP/JSON/judges), peak RSS {w['peak_rss_mb']:.0f} MB")
    if "machine_cores" in w:
        line += (f"; machine {w['machine_cores']:.2f} of {os.cpu_count()} cores busy: this load generator "
                 f"{w['client_cores']:.2f}, other processes {w['others_cores']:.2f}"
                 + (" (CONTENDED: other jobs took CPU from the server)" if w["others_cores"] > 0.3 else ""))
    if "loop" in w:
        lp = w["loop"]
        line += (f"\n      loop: {lp['steps']} steps × {lp['step_ms']:.0f} ms, {lp['mean_rows']:.0f} rows/step, "
                 f"{lp['joins']} joins;"
                 f" prefill {lp['prefill_s']:.1f} s, sample {lp['sample_s']:.1f} s, forward {lp['forward_s']:.1f} s"
                 f" ({lp['busy_share']:.0%} of the wall)")
    if "max_active" in w:
        line += (f"; submissions in the scheduler: max {w['max_active']}, mean {w['mean_active']:.1f} "
                 f"(waiting to join: mean {w.get('mean_waiting', 0):.1f})")
    if "max_kv_mb" in w:
        line += f"; KV cache up to {w['max_kv_mb']:.0f} MB allocated"
    return line


def _latency_cells(lv: dict) -> tuple[str, str]:
    """A level's first-token and end-to-end p50/p95/p99 as table cells."""
    return ("/".join(_f(lv[k]) for k in ("ttft_p50_s", "ttft_p95_s", "ttft_p99_s")),
            "/".join(_f(lv[k]) for k in ("latency_p50_s", "latency_p95_s", "latency_p99_s")))


def print_report(r: dict) -> None:
    s = r["settings"]
    print(f"Controllability Playground under load ({r['date']}): app.py on loopback, started in {r['server_start_s']:.1f} s")
    print(f"weights {r.get('weights', r.get('dtype'))} (the decoder's path; readouts float32); chat turn = Side-by-side /chat: 3 columns × {r['max_new_tokens']} new tokens, "
          f"{r['adapter']} at β {r['kl']:g}, T 0.7")
    if s.get("what_if_lm_concurrency"):
        print(f"WHAT-IF: the served process ran with SERVE.lm_concurrency = {s['what_if_lm_concurrency']} (app files unchanged)")
    print(f"serve: lm_concurrency {s['serve']['lm_concurrency']} running + queue_max_size {s['serve']['queue_max_size']} waiting "
          f"= capacity {s['capacity']} turns; scheduler {s.get('scheduler')}")
    if r.get("levels"):
        print("\nIssue 16 — concurrent chat turns")
        print(f"{'clients':>7} {'turns':>5} {'ok':>4} {'turns/s':>7} {'rejected':>8} {'err':>4} "
              f"{'first token p50/p95/p99 s':>26} {'end-to-end p50/p95/p99 s':>25}")
        for lv in r["levels"]:
            t, e = _latency_cells(lv)
            print(f"{lv['clients']:>7} {lv['requests']:>5} {lv['ok']:>4} {lv['turns_per_s']:>7.2f} {lv['rejections']:>8} "
                  f"{lv['errors']:>4} {t:>26} {e:>25}")
            print(f"      first token = Gradio queue p50 {_f(lv['gradio_queue_p50_s'])} s (p95 {_f(lv['gradio_queue_p95_s'])}) "
                  f"+ scheduler wait, prefill and first step p50 {_f(lv['after_queue_to_first_token_p50_s'])} s")
            print(profile_line(lv.get("server", {})))
            if lv["rejections"]:
                print(f"      rejected ({lv['queue_full']} queue full, {lv['busy']} scheduler busy, "
                      f"{lv['client_cap']} client cap),"
                      f" answered {_f(lv['rejection_latency_p50_s'])} s after submit (median): {lv['rejection_samples'][:1]}")
            if lv["error_samples"]:
                print(f"      errors: {lv['error_samples']}")
    if crowd := r.get("crowd_memory"):
        print(f"\nIssue 29 — memory after the crowd: idle {crowd['idle_before_mb']:.0f} MB before 32 clients, peak "
              f"{crowd['peak_mb']:.0f} MB, {crowd['after_mb']:.0f} MB {crowd['after_s']:.0f} s after "
              f"({_f(crowd['after_over_idle'])}× idle)")
    if r.get("v1_levels"):
        print("\nIssue 26 — OpenAI-compatible /v1/chat/completions (streamed, one realigned answer each)")
        print(f"{'clients':>7} {'reqs':>5} {'ok':>4} {'req/s':>7} {'429':>5} {'err':>4} "
              f"{'first token p50/p95/p99 s':>26} {'end-to-end p50/p95/p99 s':>25}")
        for lv in r["v1_levels"]:
            t, e = _latency_cells(lv)
            print(f"{lv['clients']:>7} {lv['requests']:>5} {lv['ok']:>4} {lv['turns_per_s']:>7.2f} {lv['v1_429']:>5} "
                  f"{lv['errors']:>4} {t:>26} {e:>25}")
            print(profile_line(lv.get("server", {})))
            if lv["error_samples"]:
                print(f"      errors: {lv['error_samples']}")
    d = r.get("during_sweep")
    if d:
        sw = d["sweep"]
        print(f"\nChat during the default sweep ({sw['rows']} answers × {sw['max_new_tokens']} tokens, estimate "
              f"{sw['estimate_s']:.0f} s; decoding after {_f(d['sweep_started_after_s'], 1)} s)")
        print(f"  {d['chat_turns_during_sweep']} turns one after another: first token p50/p95 {_f(d['chat_ttft_p50_s'])}/"
              f"{_f(d['chat_ttft_p95_s'])} s, end-to-end p50 {_f(d['chat_latency_p50_s'])} s; "
              f"failed: {d['chat_failed'] or 'none'}")
        print(f"  sweep cancelled (job.cancel()) after {d['submitted_to_cancel_s']:.0f} s; server idle "
              f"{_f(d['idle_after_cancel_s'], 1)} s later"
              + (" (the sweep had already ended)" if d["sweep_finished_before_cancel"] else ""))
        print(profile_line(d.get("server", {})).replace("      ", "  ", 1))
    f = r.get("flood")
    if f:
        m, a = f["maximal_sweep"], f["accepted_sweep"]
        print("\nIssue 14 — flood")
        print(f"  maximal sweep ({m['prompts']} prompts × {m['prompt_chars']} chars, {m['rows']} answers × "
              f"{m['max_new_tokens']} tokens, "
              f"estimate {m['estimate_s'] / 60:.0f} min, KV {m['estimate_kv_bytes'] / 1e9:.1f} GB) ×4 sessions: "
              f"{f['maximal_refused']}/{f['maximal_sent']} refused within {f['maximal_refused_within_s']:.1f} s")
        for msg in f["maximal_messages"]:
            print(f"    “{msg}”")
        print(f"  largest accepted sweep ({a['prompts']} prompts × {a['prompt_chars']} chars, {a['rows']} answers × "
              f"{a['max_new_tokens']} tokens, estimate {a['estimate_s']:.0f} s, KV {a['estimate_kv_bytes'] / 1e9:.2f} GB) ×4 "
              f"sessions: decoding after {_f(f['accepted_sweep_decoding_after_s'], 1)} s; "
              f"at the end: {f['accepted_sweeps_state']}")
        for msg in f["accepted_sweep_messages"]:
            print(f"    “{msg}”")
        print(f"  {f['requests']} requests at once ({len(f['posts'])} direct POSTs, {f['chat']['requests']} /chat turns, "
              f"separate sessions), over in {f['flood_wall_s']:.1f} s:")
        print("    POST /gradio_api/run/<name>:  " + ", ".join(f"{k} {v}" for k, v in f["run_statuses"].items()))
        print("    POST /gradio_api/call/<name>: " + ", ".join(f"{k} {v}" for k, v in f["call_statuses"].items()))
        if f["run_accepted_unqueued"]:
            print(f"    (/run accepted for queue=False events: {', '.join(f['run_accepted_unqueued'])})")
        print(f"    POST /gradio_api/run/<name> for the {sum(f['other_run_statuses'].values())} events Gradio named itself "
              f"(not public): {f['other_run_statuses']}; not 404: {f['other_run_not_404'] or 'none'}")
        ob = f["oversized_body"]
        print(f"    POST /gradio_api/queue/join with a body over {SERVE.max_body_bytes} bytes: {ob['status']}")
        c = f["chat"]
        print(f"    /chat turns: {c['ok']} ok, {c['rejections']} rejected ({c['queue_full']} queue full, {c['busy']} busy, "
              f"{c['client_cap']} client cap), {c['errors']} errors; "
              f"first token p50/p95 {_f(c['ttft_p50_s'])}/{_f(c['ttft_p95_s'])} s"
              + f" (Gradio queue p50 {_f(c['gradio_queue_p50_s'])} s)"
              + (f"; rejected: {c['rejection_samples'][:1]}" if c["rejection_samples"] else "")
              + (f"; errors: {c['error_samples']}" if c["error_samples"] else ""))
        p = f["probe"]
        print(f"  probe turn (sent {_f(p.get('sent_after_s'), 1)} s into the flood): "
              + (f"first token {_f(p['ttft'])} s (of which Gradio queue {_f(p.get('queued'))} s), end-to-end {_f(p['latency'])} s"
               if p.get("ok")
                 else f"failed ({p.get('kind')}): {p.get('message')}"))
        print(profile_line(f.get("server", {})).replace("      ", "  ", 1))
        print(f"  sweeps cancelled: server idle {_f(f['idle_after_cancel_s'], 1)} s later; peak RSS {f['peak_rss_mb']:.0f} MB "
              f"(budget {r['rss_budget_mb']:.0f} MB), RSS when idle after the flood {f['idle_rss_mb']:.0f} MB "
              f"(before: {r['rss_before_flood_mb']:.0f} MB)")
    print(f"\nserver peak RSS over the whole run {r['server_peak_rss_mb']:.0f} MB")
    if r["targets"]:
        print("\nTargets")
        for t in r["targets"]:
            mark = {True: "MET ", False: "MISS", None: "n/a "}[t["met"]]
            v = t["value"]
            shown = _f(v) if isinstance(v, float) else str(v)
            print(f"  [{mark}] {t['target']}: {shown}{(' ' + t['unit']) if t['unit'] else ''} (target {t['op']} {t['bound']})")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,8,32", help="client levels, comma-separated ('' for none)")
    parser.add_argument("--requests", type=int, default=32, help="turns per level (at most 8 at one client)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--adapter", default="upbeat-b0.1")
    parser.add_argument("--kl", type=float, default=0.2, help="KL strength β (0.2 = λ 0.5 for upbeat-b0.1, the tab's default)")
    parser.add_argument("--level-timeout", type=float, default=240, help="seconds a level may take at most")
    parser.add_argument("--during-sweep", action="store_true", help="chat turns while the default sweep runs")
    parser.add_argument("--sweep-turns", type=int, default=10)
    parser.add_argument("--flood", action="store_true", help="the issue-14 flood")
    parser.add_argument("--flood-requests", type=int, default=40, help="direct POSTs + chat turns sent at once")
    parser.add_argument("--flood-min-chat", type=int, default=10, help="at least this many of them are chat turns")
    parser.add_argument("--probe-delay", type=float, default=1.0, help="seconds into the flood the probe turn is sent")
    parser.add_argument("--rss-budget-mb", type=float, default=DEFAULT_RSS_BUDGET_MB)
    parser.add_argument("--lm-concurrency", type=int, default=None,
                        help="what-if: serve with this SERVE.lm_concurrency (patched in the served process only)")
    parser.add_argument("--v1-clients", default="", help="OpenAI /v1 client levels (issue 26), comma-separated")
    parser.add_argument("--out", default="benchmarks/load.json")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",") if c.strip()]
    serve_settings = replace(SERVE, lm_concurrency=args.lm_concurrency) if args.lm_concurrency else SERVE
    server = Server(lm_concurrency=args.lm_concurrency)
    monitor = Monitor(server)
    clients = Clients(server.url)
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "max_new_tokens": args.max_new_tokens, "adapter": args.adapter,
                    "kl": args.kl, "server_start_s": server.start_s, "rss_budget_mb": args.rss_budget_mb}
    try:
        sched = server.stats().get("config")
        result["weights"] = server.stats().get("weights")
        result["settings"] = {"serve": asdict(serve_settings), "capacity": capacity(serve_settings), "scheduler": sched,
                              "what_if_lm_concurrency": args.lm_concurrency,
                              "limits": {k: getattr(LIMITS, k) for k in LIMIT_KEYS},
                              "throughput": asdict(THROUGHPUT)}
        chat_turn(clients.take(1)[0], 0, args)  # warm-up (weight packing, first allocations), not counted
        rows, seed0 = [], 100
        for n in levels:
            if n == 32:
                monitor.wait_idle(60)
                idle_mb = monitor.latest()["rss_mb"]
            rows.append(level(clients, monitor, n, min(args.requests, 8) if n == 1 else args.requests, args, seed0))
            seed0 += 1000
            if n == 32:
                result["crowd_memory"] = crowd_memory(monitor, idle_mb, rows[-1])
        result["levels"] = rows
        v1 = []
        for n in [int(c) for c in args.v1_clients.split(",") if c.strip()]:
            v1.append(v1_level(server.url, monitor, n, args.requests, args, seed0))
            seed0 += 1000
        if v1:
            result["v1_levels"] = v1
        if args.during_sweep:
            result["during_sweep"] = during_sweep(clients, monitor, args)
        result["rss_before_flood_mb"] = monitor.latest()["rss_mb"]
        if args.flood:
            result["flood"] = flood(clients, monitor, server, args)
        result["server_peak_rss_mb"] = monitor.latest()["hwm_mb"]
    finally:
        monitor.stop()
        clients.close()
        server.stop()
    result["targets"] = issue16_targets(result.get("levels", []), result.get("during_sweep"), serve_settings)
    if "flood" in result:
        result["targets"] += issue14_targets(result["flood"], args.rss_budget_mb)
    result["targets"] += issue26_targets(result.get("v1_levels", []))
    result["targets"] += issue29_targets(result.get("crowd_memory"))
    out = Path(args.out)
    old = None
    if out.is_file():
        try:
            old = json.loads(out.read_text())
        except ValueError:
            old = None
    out.write_text(json.dumps(merge_previous(old, result), indent=2, default=str))
    print_report(result)


if __name__ == "__main__":
    main()
