"""Every limit and default of the playground, as typed dataclasses, with the direction each knob moves the output.

One place: the UI reads its defaults and slider ranges from here, and `playground.validation` turns raw
input (UI event, Gradio API, CLI) into these objects once, checked against `Limits` (Gradio's API skips
slider limits). Nothing here imports torch, gradio or another playground module at import time (the human
feedback part, `FeedbackSettings` and `TrainingSettings`, lives in `settings_votes.py` and is re-exported here;
their `from_env` calls the stdlib-only `playground.datadir` for the data directory's files).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("base", "realigned", "tuned")  # the side-by-side view: base model; λ-realigned; tuned as trained (λ = 1)
MODES = ("logits", "weights")
# The sweep's controls (each row says which): "dera" = λ logit mixing, "weights" = LoRA delta × λ (ExPO),
# "bon" = best-of-n selection by the proxy judge, "cfg" = prompt guidance γ (LM classifier-free guidance).
CONTROLS = ("dera", "weights", "bon", "cfg")


def cache_dir() -> Path:
    """Where converted weights and other derived files live (outside git). Override with PLAYGROUND_CACHE."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "controllability-playground"
    path = Path(os.environ.get("PLAYGROUND_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


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
class DecodeSettings:
    """One answer's knobs: the single shape that a chat turn, a sweep cell, the token view and a vote carry.

    Build it with `playground.validation.decode_settings(...)` (checks every field once); the engine's
    `Request` is made from it by `Playground.request`.
    """

    # λ = β_train / β, the realignment strength. 0 = the base model, 1 = the tuned model as trained,
    # > 1 extrapolates past it (further from the base model: more aligned, usually less diverse).
    lam: float = 0.5
    # "logits": decoding-time realignment ℓ = ℓ_base + λ(ℓ_tuned − ℓ_base) (the KL-regularised optimum).
    # "weights": scale the LoRA delta by λ (one forward, cheaper, not the KL-optimal policy).
    mode: str = "logits"
    # Sampling temperature. Higher = more random and more diverse; 0 = greedy (always the top token).
    temperature: float = 0.7
    # Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p.
    # Lower = safer, less diverse; 1.0 = no truncation.
    top_p: float = 0.95
    # Upper bound on the answer's length in tokens. Higher = longer answers, slower.
    max_new_tokens: int = 160
    # Random seed; the same seed and settings reproduce the same text, whatever else is decoded alongside.
    seed: int = 0


def nominal_beta(beta_train: float, lam: float) -> float:
    """β = β_train / λ (∞ for λ = 0). Nominal: exact only for adapters trained to the KL-regularised optimum."""
    return beta_train / lam if lam > 0 else float("inf")


@dataclass(frozen=True)
class Limits:
    """Server-side caps for every request. Shown in the UI; enforced for UI, API and CLI."""

    max_prompt_chars: int = 4000  # characters are capped before tokenising
    max_prompt_tokens: int = 1024  # then tokens (after the chat template)
    max_new_tokens: int = 256
    min_lambda: float = 0.0  # λ = 0 is the base model
    max_lambda: float = 8.0  # λ > 1 extrapolates; past ~8 outputs degenerate
    min_kl_strength: float = 0.01  # β; λ = β_train/β must also be within the λ limits
    max_kl_strength: float = 100.0
    max_temperature: float = 2.0
    max_samples_per_setting: int = 16
    max_sweep_rows: int = 128  # settings × samples per prompt processed in one batch
    max_sweep_prompts: int = 64
    max_sweep_values: int = 12  # λ (or β) values, and temperatures, in one sweep
    max_history_turns: int = 8
    max_diffusion_steps: int = 200
    max_diffusion_images: int = 64
    max_guidance: float = 20.0  # classifier-free guidance scale w
    max_guidance_scales: int = 12  # values of w in one diffusion sweep
    max_cfg_scale: float = 10.0  # LM prompt guidance γ; past ~5 answers on these small models degenerate
    max_bon_n: int = 16  # best-of-n: candidates drawn per kept answer
    max_seed: int = 2**31 - 1
    request_timeout_s: float = 120.0  # wall-clock limit per chat request; frees the slot
    sweep_timeout_s: float = 900.0  # wall-clock limit of a sweep (Gradio applies time_limit to streaming events only)
    max_upload_bytes: int = 256_000  # an uploaded prompts file
    # A sweep (or probe) must finish on this hardware: its cost rows × tokens is estimated from the measured
    # batched speed and refused above the budget, with the estimate shown (one visitor cannot hold the server).
    max_job_seconds: float = 600.0
    # KV cache of one job: rows × (prompt + answer tokens) × bytes per token-row, refused above this budget.
    max_job_kv_bytes: int = 3_000_000_000


LIMITS = Limits()
DEFAULT_DECODE = DecodeSettings()


@dataclass(frozen=True)
class ChatDefaults:
    """The Side-by-side tab's starting point."""

    # The slider starts at β = beta_factor · β_train, i.e. λ = 1/beta_factor = 0.5: halfway between base and tuned.
    beta_factor: float = 2.0
    # The KL slider's range, in multiples of β_train (upper) and from β_train / max_lambda (lower).
    beta_max_factor: float = 20.0
    examples: tuple[str, ...] = (
        "Give me a tip for a rainy day.",
        "What do you think about learning to cook?",
        "How should I spend a free Sunday?",
        "Tell me about keeping a small garden.",
        "My train is late again. Any advice?",
    )


@dataclass(frozen=True)
class SweepDefaults:
    """The trade-off explorer's defaults (CLI and tab)."""

    # λ grid. Higher λ = further from the base model.
    lambdas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    # Temperatures. Higher = more diverse, usually lower reward.
    temperatures: tuple[float, ...] = (0.7, 1.0)
    # Samples per prompt per setting. More = steadier estimates, slower.
    samples: int = 4
    # Shorter than a chat answer: a sweep decodes prompts × settings × samples of them.
    max_new_tokens: int = 64
    # No nucleus truncation, so the temperature alone sets the randomness.
    top_p: float = 1.0
    # How many of models/prompts/eval.txt the default sweep uses.
    prompt_count: int = 8
    # Share of the progress bar spent decoding; the rest is judging and metrics.
    decode_share: float = 0.9


@dataclass(frozen=True)
class SweepSettings:
    """One checked trade-off sweep (built by `playground.validation.sweep_settings`): a grid of decode settings."""

    # The LoRA adapter to realign, and the β it was trained with (λ = β_train / β).
    adapter: str
    beta_train: float
    # Prompts to answer. More prompts = steadier averages (intervals are bootstrapped over prompts); time grows linearly.
    prompts: tuple[str, ...]
    # λ values, sorted. Higher λ = further from the base model: more aligned, usually less diverse, larger KL.
    lambdas: tuple[float, ...]
    # Sampling temperatures, sorted. Higher = more random and diverse, usually lower reward; 0 = greedy.
    temperatures: tuple[float, ...]
    # Samples per prompt per (λ, T). More = steadier reward and diversity estimates, slower.
    samples: int
    # Everything else of each answer (mode, top_p, max_new_tokens, seed); λ and T are set per cell.
    decode: DecodeSettings
    # Judge whose reward is reported (the adapter's own: the proxy it was trained on) and a held-out judge.
    judge: str
    heldout_judge: str
    # Which control varies (CONTROLS): "dera"/"weights" sweep `lambdas`; "bon" sweeps `ns` and "cfg" `gammas`
    # on the policy at lambdas[0] (one value; 0 = the base model).
    control: str = "dera"
    # Best-of-n sizes, sorted. Higher n = more reward under the judge that selects, more KL (≤ log n − (n−1)/n),
    # n× the decoding cost. The candidates of a smaller n are the first of the larger one's (common random numbers).
    ns: tuple[int, ...] = (1,)
    # Prompt-guidance scales γ, sorted. 1 = the plain policy; higher = follows the prompt more, less diverse; 0 = ignores it.
    gammas: tuple[float, ...] = (1.0,)
    # What the unconditional branch of prompt guidance reads instead of the user's text ("" = an empty user turn).
    negative_prompt: str = ""

    def cell(self, lam: float, temperature: float, sample: int) -> DecodeSettings:
        """The decode settings of one (λ, T, sample k): seed + k, common random numbers across settings."""
        return replace(self.decode, lam=lam, temperature=temperature, seed=self.decode.seed + sample)

    @property
    def per_prompt(self) -> int:
        """Answers decoded per prompt: λ × T × samples (dera, weights), T × samples × max n (bon), γ × T × samples (cfg)."""
        knob = {"bon": max(self.ns), "cfg": len(self.gammas)}.get(self.control, len(self.lambdas))
        return knob * len(self.temperatures) * self.samples

    @property
    def rows(self) -> int:
        """Answers to decode: prompts × per_prompt."""
        return len(self.prompts) * self.per_prompt


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


CHAT = ChatDefaults()
SWEEP = SweepDefaults()
EVAL_PROMPTS = REPO_ROOT / "models" / "prompts" / "eval.txt"
FALLBACK_PROMPTS = (
    "Give me a tip for a rainy day.", "What do you think about learning to cook?",
    "How should I spend a free Sunday?", "Tell me about keeping a small garden.",
    "My train is late again. Any advice?", "Describe your ideal breakfast.",
    "How can I get better at remembering names?", "What should I know before adopting a cat?",
)  # used when models/prompts/eval.txt is absent


SCHEDULERS = {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler", "euler": "EulerDiscreteScheduler"}  # name -> diffusers class


@dataclass(frozen=True)
class GuidanceSettings:
    """One classifier-free-guidance request. Build it with `playground.validation.guidance_settings(...)`."""

    # Which digit y to condition on (0–9).
    digit: int = 3
    # Guidance scale w. Higher w = samples more typical of the digit, less diverse; 0 = unconditional
    # (ignores the digit), 1 = plain conditional model, > 1 extrapolates past it.
    guidance_scale: float = 3.0
    # Images drawn at once. More = better estimates of accuracy / diversity, slower.
    num_samples: int = 16
    # Denoising steps. More = cleaner samples, slower (time is linear in steps).
    steps: int = 50
    # "ddim" (deterministic, good at few steps), "ddpm" (stochastic, needs more steps), "euler" (ODE, k-diffusion σ).
    scheduler: str = "ddim"
    # Random seed; the same seed and settings reproduce the same images (and the same x_T across w).
    seed: int = 0


DEFAULT_GUIDANCE = GuidanceSettings()
GUIDANCE_SCALES = (0.0, 1.0, 2.0, 4.0, 8.0)  # the default sweep of w
GUIDANCE_PROGRESS = (8, 6)  # the tab's x̂_0 strip: samples shown × frames


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
    # A long job (sweep, probe, DeRa check, duel) belongs to a client (playground/job_owners.py): one whose result
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
    # (gc + glibc malloc_trim, playground/memory.py), so RSS falls back after a crowd. Lower: sooner, more trims.
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


# Human feedback (the vote store, training on votes): defined in settings_votes.py, re-exported here.
from playground.settings_votes import (APP_DIR_NAME, DB_FILE_NAME, FEEDBACK_LIMITS, SALT_FILE_NAME,  # noqa: E402,F401
                                       SPACE_DATA_DIR, TRAINED_DIR_NAME, TRAINING, FeedbackSettings, TrainingSettings)
