"""The training pipeline's options as one typed config (TRL `DPOConfig` style): a help line per field saying
which way the knob moves the result. `models/train_adapter.py` builds its argument parser from it.
"""
from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from playground.registry import DEFAULT_BASE
from playground.settings.paths import REPO_ROOT

PROMPT_DIR = REPO_ROOT / "models" / "prompts"


def _opt(default: Any, help: str, group: str, choices: tuple | None = None) -> Any:
    return field(default=default, metadata={"help": help, "group": group, "choices": choices})


@dataclass
class TrainConfig:
    """Every recorded setting of a run (run.json); a value given on the command line overrides the recorded one."""

    # --- data: which answers are compared, and by whom
    judge: str | None = _opt(None, "AI judge that labels the pairs: upbeat | concise | on_topic | hf:<reward model> | votes "
                                   "(human votes from the feedback database)", "data")
    other_judge: str | None = _opt(None, "judge also reported in the evaluation (default: the other built-in)", "data")
    base: str = _opt(DEFAULT_BASE, "registry name, Hub id or local directory of the base model", "data")
    seed: int = _opt(0, "seed of sampling and training; the same seed reproduces the run", "data")
    prompts: str = _opt(str(PROMPT_DIR / "train.txt"), "training prompts, one per line", "data")
    limit: int | None = _opt(None, "use only the first N training prompts (fewer = faster, noisier)", "data")
    k: int = _opt(4, "answers sampled per prompt; more = wider best-vs-worst margins, slower sampling", "data")
    max_new_tokens: int = _opt(64, "answer length cap when sampling the pairs", "data")
    temperature: float = _opt(0.9, "sampling temperature for the pairs; higher = more varied pairs", "data")
    top_p: float = _opt(0.95, "nucleus sampling for the pairs; lower = safer answers", "data")
    gen_batch_size: int = _opt(16, "prompts per generate call (memory vs speed)", "data")
    min_margin: float = _opt(0.1, "drop pairs whose judge margin is below this; higher = fewer, clearer pairs", "data")
    pairs_from: str | None = _opt(None, "reuse pairs.jsonl of another run dir (same judge, another β)", "data")
    responses_from: str | None = _opt(None, "reuse the answers sampled by another run dir, re-scored by this judge", "data")
    votes_url: str | None = _opt(None, "with --judge votes: database URL of the votes (default: the app's own)", "data")
    # --- DPO
    beta: float = _opt(0.1, "DPO β; higher = the adapter stays closer to the base model", "DPO")
    steps: int | None = _opt(None, "max DPO steps (default: --epochs over the pairs); more = further from the base", "DPO")
    epochs: float = _opt(1.0, "passes over the pairs; more = closer to the KL-regularised optimum (and slower)", "DPO")
    lr: float = _opt(2e-4, "learning rate; higher = faster, less stable", "DPO")
    rank: int = _opt(16, "LoRA rank; higher = more capacity, bigger adapter (alpha = 2·rank unless --alpha)", "DPO")
    alpha: float = _opt(32, "LoRA alpha (scale = alpha / rank)", "DPO")
    dropout: float = _opt(0.05, "LoRA dropout", "DPO")
    batch_size: int = _opt(8, "pairs per step", "DPO")
    grad_accum: int = _opt(1, "gradient accumulation steps (effective batch = batch_size × grad_accum)", "DPO")
    max_length: int = _opt(192, "tokens per prompt + answer; longer = slower", "DPO")
    warmup_ratio: float = _opt(0.1, "share of steps spent warming up the learning rate", "DPO")
    bf16: bool = _opt(True, "bf16 autocast in DPO (faster on AMX CPUs); --no-bf16 trains in plain fp32", "DPO")
    activation_checkpointing: bool = _opt(True, "recompute activations in the backward pass (less memory, slower)", "DPO")
    # --- evaluation and export
    eval_prompts: str = _opt(str(PROMPT_DIR / "eval.txt"), "held-out prompts", "evaluation and export")
    eval_limit: int | None = _opt(None, "use only the first N held-out prompts", "evaluation and export")
    eval_samples: int = _opt(2, "samples per held-out prompt; more = tighter intervals", "evaluation and export")
    eval_max_new_tokens: int = _opt(64, "answer length cap in the evaluation", "evaluation and export")
    out: str | None = _opt(None, "export directory (default models/adapters/<name>/)", "evaluation and export")
    export_dtype: str = _opt("bfloat16", "dtype of the shipped LoRA weights", "evaluation and export", ("bfloat16", "float32"))


DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}


def _type(f) -> type:
    text = str(f.type)
    return int if text.startswith("int") else float if text.startswith("float") else str


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field, grouped, with its help line; unset options stay None (keep recorded)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(TrainConfig):
        group = groups.setdefault(f.metadata["group"], parser.add_argument_group(f.metadata["group"]))
        flag = "--" + f.name.replace("_", "-")
        text = f"{f.metadata['help']} (default {f.default})"
        if str(f.type) == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            group.add_argument(flag, type=_type(f), default=None, help=text, choices=f.metadata["choices"])
