"""Per-request parameters: the knobs one answer, sweep or diffusion request carries, and the caps on them.

Each knob's comment says which way it moves the output. The UI reads its defaults and slider ranges from
here, and `playground.settings.validation` turns raw input (UI event, Gradio API, CLI) into these objects
once, checked against `Limits` (Gradio's API skips slider limits); the checked object then rides with its
request down to the sampler. Stdlib only.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from playground.settings.paths import REPO_ROOT

COLUMNS = ("base", "realigned", "tuned")  # the side-by-side view: base model; λ-realigned; tuned as trained (λ = 1)
MODES = ("logits", "weights")


# The sweep's controls (each row says which): "dera" = λ logit mixing, "weights" = LoRA delta × λ (ExPO),
# "bon" = best-of-n selection by the proxy judge, "cfg" = prompt guidance γ (LM classifier-free guidance).
CONTROLS = ("dera", "weights", "bon", "cfg")


@dataclass(frozen=True)
class DecodeSettings:
    """One answer's knobs: the single shape that a chat turn, a sweep cell, the token view and a vote carry.

    Build it with `playground.settings.validation.decode_settings(...)` (checks every field once); the engine's
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
    temperatures: tuple[float, ...] = (DEFAULT_DECODE.temperature, 1.0)
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
    """One checked trade-off sweep (built by `playground.settings.validation.sweep_settings`): a grid of decode settings."""

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
    """One classifier-free-guidance request. Build it with `playground.settings.validation.guidance_settings(...)`."""

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

