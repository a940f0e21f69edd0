"""Server configuration: the weight path, the queue and its pools, the decode loop's caps, the estimates of cost.

Per-request knobs live in `playground.settings.request`; the vote store and training in
`playground.settings.votes`. Stdlib only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from playground.settings.request import Limits

WEIGHT_PATHS = ("auto", "int4", "bfloat16", "float32")


def model_dtype_name() -> str:
    """The decoder's weight path, from PLAYGROUND_DTYPE: "auto" (default), "int4", "bfloat16" or "float32".

    "int4" multiplies by the GGUF's own Q4_1 blocks (torch's CPU int4 kernel; fastest: it reads a quarter of
    the bytes); "auto" takes it where the base model ships Q4_1 blocks and the kernel runs, and otherwise
    bfloat16 on CPUs with native bf16 matmuls (AMX / AVX512-BF16), float32 elsewhere. "float32" matches
    transformers/peft bit for bit. Readouts (KL, entropy, the λ-mix) come from float32 logits on every path.
    """
    name = os.environ.get("PLAYGROUND_DTYPE", "auto")
    if name not in WEIGHT_PATHS:
        raise ValueError(f"PLAYGROUND_DTYPE must be one of {', '.join(WEIGHT_PATHS)}; got {name!r}")
    return name


@dataclass(frozen=True)
class Throughput:
    """Measured on the 2-core reference CPU (bfloat16, benchmarks/results.json): used for estimates, not limits."""

    sweep_row_tokens_per_s: float = 200.0  # batched realigned decoding, 16–64 rows (2 forward rows each)
    kv_bytes_per_token_row: int = 19_500  # peak RSS per prompt row and context token (30 layers, 3 KV heads)
    chars_per_token: float = 3.0  # a prompt's tokens ≈ characters / 3 (English), for the estimate before tokenizing
    step_floor_s: float = 0.05  # one decoding step of a small batch (≈ 30 tok/s for one realigned stream): few rows
    # cannot go faster than tokens × this, whatever the throughput
    job_overhead_s: float = 15.0  # judging, embeddings for diversity, bootstrap intervals and plots after decoding


THROUGHPUT = Throughput()


def job_estimate(rows: int, prompt_chars: int, max_new_tokens: int) -> tuple[float, int]:
    """(seconds, KV bytes) a batched job of `rows` answers needs on the reference CPU."""
    decode = max(rows * max_new_tokens / THROUGHPUT.sweep_row_tokens_per_s, max_new_tokens * THROUGHPUT.step_floor_s)
    seconds = decode + THROUGHPUT.job_overhead_s
    context = prompt_chars / THROUGHPUT.chars_per_token + max_new_tokens
    kv = int(2 * min(rows, Limits().max_sweep_rows) * context * THROUGHPUT.kv_bytes_per_token_row)
    return seconds, kv


@dataclass(frozen=True)
class ServeSettings:
    """Queue, concurrency and exposure of the Gradio app."""

    queue_max_size: int = 32  # requests waiting beyond this get "busy, try again" at once
    # Interactive LM events (chat turns, duels, token view) handed to the scheduler together; it batches them
    # into one decode loop, so this bounds waiting there, not compute (its own caps: SchedulerSettings).
    lm_concurrency: int = 16
    # Long LM jobs (sweeps, probes) have their own pool, so chat keeps its slots whatever the jobs do,
    # and one browser session runs at most `jobs_per_session` of them at a time.
    job_concurrency: int = 1
    jobs_per_session: int = 1
    diffusion_concurrency: int = 1  # diffusion events have their own pool so neither starves the other
    vote_concurrency: int = 4  # "Prefer this one": judge three answers and store two votes, beside the chat's pool
    load_wait_s: float = 300.0  # a request waits this long for the model (a cold start converts the GGUF: ~30 s)
    delete_cache_s: int = 3600  # files handed to users (exports, images) leave Gradio's cache after this
    # A long job runs in a worker thread while its event handler beats every `job_heartbeat_s`; when Gradio
    # stops pulling the handler (the client cancelled or disconnected) for `job_stale_s`, the job stops.
    job_heartbeat_s: float = 0.2
    job_stale_s: float = 1.5
    # A long job (sweep, probe, DeRa check, duel) belongs to a client (playground/runtime/job_owners.py): one whose result
    # stream is not open (never opened, or closed) for `job_listener_grace_s` is cancelled (checked every
    # `job_watch_s`), and one client address (request.client.host, whatever session hashes it sends) has at most
    # `jobs_per_client` of them queued or running; more are refused at once (429). 0: no per-client cap.
    job_listener_grace_s: float = 5.0
    job_watch_s: float = 0.5
    jobs_per_client: int = 2
    max_file_size: str = "1mb"  # uploads (a prompts file is at most Limits.max_upload_bytes anyway)
    max_body_bytes: int = 2_000_000  # any HTTP request body; larger ones get 413 before they are read
    # Bind address: 127.0.0.1 unless on a Space (SPACE_ID set: 0.0.0.0 is required there), GRADIO_SERVER_NAME
    # is set, or PLAYGROUND_LISTEN=1 opens it to the network.
    local_host: str = "127.0.0.1"
    public_host: str = "0.0.0.0"
    # A Ray cluster the Trade-off tab's sweeps and control comparisons are decoded on, read from
    # PLAYGROUND_RAY_ADDRESS at startup: local (a throwaway cluster here), auto (the running one) or HOST:PORT;
    # needs requirements-ray.txt (docs/distributed.md). Unset, the default and what a public Space has: in process.
    ray_address: str | None = field(default_factory=lambda: os.environ.get("PLAYGROUND_RAY_ADDRESS") or None)


SERVE = ServeSettings()


@dataclass(frozen=True)
class SchedulerSettings:
    """The continuous-batching decode loop (playground/lm/scheduler.py): batch size, fairness and memory caps."""

    # Forward rows decoded together (a realigned request takes 2, a chat turn 5). Higher: more requests share
    # each step (more throughput), each step is slower (higher per-token latency).
    max_rows: int = 192
    # Of those, bulk submissions (sweeps) may hold at most this many; the rest stays free for chat turns.
    # Lower: chat during a sweep starts sooner, the sweep takes longer.
    bulk_rows: int = 128
    # A bulk submission joins in chunks of this many requests (lower: finer interleaving, more prefills).
    bulk_chunk: int = 16
    # Prompt tokens prefilled per step (at least one join). Lower: shorter stalls for running rows, slower joins.
    prefill_tokens: int = 512
    # Submissions with more requests than this count as bulk (a chat turn has 3, a duel 2).
    bulk_threshold: int = 8
    # The KV cache grows only within this many MB (rows × longest row); beyond it requests wait.
    max_kv_mb: int = 2048
    # Of that, sweeps may fill all but this many MB, so a chat turn (5 rows) can join a running sweep at once.
    chat_kv_reserve_mb: int = 768
    # KV width classes (columns): a row's cache slot is as wide as the smallest class that holds its prompt and
    # new tokens (wider rows: one pool for the rest), so chat rows beside long sweep rows stay narrow. More
    # classes: less memory per row, a few more attention calls per step.
    kv_widths: tuple[int, ...] = (128, 256, 512, 1024)
    # Submissions waiting to start; beyond it "busy, try again in N s".
    max_waiting: int = 32
    # Concurrent submissions (waiting or running) per client key.
    max_per_client: int = 4
    # When the loop has had nothing to do for this long after decoding, it returns the freed heap to the OS
    # (gc + glibc malloc_trim, playground/runtime/memory.py), so RSS falls back after a crowd. Lower: sooner, more trims.
    idle_trim_s: float = 0.5


SCHEDULER = SchedulerSettings()


def server_name(env: dict | None = None) -> str:
    """Where the app binds: loopback by default; all interfaces on a Space or when asked (see ServeSettings)."""
    env = dict(os.environ) if env is None else env
    if env.get("GRADIO_SERVER_NAME"):
        return env["GRADIO_SERVER_NAME"]
    if env.get("SPACE_ID") or env.get("PLAYGROUND_LISTEN") == "1":
        return SERVE.public_host
    return SERVE.local_host

