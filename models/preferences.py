"""RLAIF preference data and held-out evaluation for the DPO adapters (used by models/train_adapter.py).

    prompts ──sample_responses──▶ k answers per prompt ──judge.score──▶ rewards
            ──make_pairs──▶ {prompt, chosen = best, rejected = worst, margin} ──DPO──▶ LoRA adapter
    held-out prompts ──evaluate(base, tuned)──▶ judge reward (95% CI), other judge, distinct-2, embedding diversity

Everything here is plain functions over a transformers causal LM and tokenizer; no file I/O.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from playground.tradeoff.metrics import distinct_n, mean_ci95, semantic_diversity

# Fixed sampling settings of the held-out evaluation (the app's defaults, shorter answers).
EVAL_TEMPERATURE = 0.7
EVAL_TOP_P = 0.95
EVAL_MAX_NEW_TOKENS = 64


def chat_prompt(tokenizer, prompt: str) -> str:
    """The text the model continues for one user turn: the chat template with the assistant header appended.

    A tokenizer without a chat template (a plain LM) gets the raw prompt and a newline.
    """
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt + "\n"


def _adds_special_tokens(tokenizer, texts: Sequence[str]) -> bool:
    """False when every text already starts with BOS (the chat template wrote it), so it is not added twice."""
    bos = tokenizer.bos_token
    return not (bos and all(t.startswith(bos) for t in texts))


@contextmanager
def _left_padding(tokenizer):
    """Decoder-only batched generation needs left padding; restore the tokenizer's setting afterwards."""
    old = tokenizer.padding_side
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        yield
    finally:
        tokenizer.padding_side = old


def sample_responses(
    model,
    tokenizer,
    prompts: Sequence[str],
    k: int = 4,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
    top_p: float = 1.0,
    progress: Callable[[int, int, float], None] | None = None,
) -> list[list[str]]:
    """k sampled answers per prompt: `responses[i][j]` is answer j to prompts[i] (special tokens removed, stripped).

    Prompts go through `chat_prompt`, are left-padded in batches of `batch_size` prompts and answered with
    `generate(do_sample=True, num_return_sequences=k)` (top-k off). Batch b is seeded with seed + b, so the
    same call reproduces the same text. `progress(done_prompts, total_prompts, seconds)` is called per batch.
    """
    if k < 1 or batch_size < 1:
        raise ValueError(f"k and batch_size must be >= 1, got k={k}, batch_size={batch_size}")
    model.eval()
    device = next(model.parameters()).device
    out: list[list[str]] = []
    start = time.perf_counter()
    with _left_padding(tokenizer), torch.inference_mode():
        for b, lo in enumerate(range(0, len(prompts), batch_size)):
            texts = [chat_prompt(tokenizer, p) for p in prompts[lo:lo + batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=_adds_special_tokens(tokenizer, texts))
            enc = {key: value.to(device) for key, value in enc.items()}
            torch.manual_seed(seed + b)
            gen = model.generate(
                **enc, do_sample=True, temperature=temperature, top_p=top_p, top_k=0, max_new_tokens=max_new_tokens,
                num_return_sequences=k, pad_token_id=tokenizer.pad_token_id,
            )
            new = gen[:, enc["input_ids"].shape[1]:]
            decoded = [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
            out.extend(decoded[i * k:(i + 1) * k] for i in range(len(texts)))
            if progress is not None:
                progress(len(out), len(prompts), time.perf_counter() - start)
    return out


def make_pairs(
    prompts: Sequence[str],
    responses: Sequence[Sequence[str]],
    scores: Sequence[Sequence[float]],
    min_margin: float = 0.0,
) -> list[dict[str, Any]]:
    """One preference pair per prompt: chosen = its best-scored answer, rejected = its worst.

    A prompt is dropped when margin = score(best) − score(worst) is below `min_margin` or not positive (a near
    or exact tie says nothing about the preference), when best and worst are the same text, or when the
    best answer is empty. Ties in rank go to the earlier answer.
    """
    if not (len(prompts) == len(responses) == len(scores)):
        raise ValueError(f"got {len(prompts)} prompts, {len(responses)} response lists and {len(scores)} score lists")
    pairs = []
    for prompt, answers, values in zip(prompts, responses, scores):
        values = np.asarray(values, dtype=np.float64)
        if len(answers) != len(values):
            raise ValueError(f"prompt {prompt!r}: {len(answers)} responses but {len(values)} scores")
        if len(answers) < 2:
            continue
        best, worst = int(np.argmax(values)), int(np.argmin(values))
        margin = float(values[best] - values[worst])
        chosen, rejected = answers[best], answers[worst]
        if margin <= 0 or margin < min_margin or chosen == rejected or not chosen.strip():
            continue
        pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "margin": margin,
                      "chosen_score": float(values[best]), "rejected_score": float(values[worst])})
    return pairs


def _ci(values: Sequence[float]) -> list[float]:
    mean, half = mean_ci95(values)
    return [round(mean, 4), round(half, 4)]


def _flat_scores(judge, prompts: Sequence[str], responses: list[list[str]]) -> np.ndarray:
    """[n_prompts, samples] rewards."""
    k = len(responses[0]) if responses else 0
    flat_p = [p for p in prompts for _ in range(k)]
    flat_r = [r for rs in responses for r in rs]
    return np.asarray(judge.score(flat_p, flat_r), dtype=np.float64).reshape(len(prompts), k)


def evaluate(
    base_model,
    tuned_model,
    tokenizer,
    prompts: Sequence[str],
    judge,
    other_judge=None,
    samples: int = 2,
    seed: int = 0,
    max_new_tokens: int = EVAL_MAX_NEW_TOKENS,
    temperature: float = EVAL_TEMPERATURE,
    top_p: float = EVAL_TOP_P,
    batch_size: int = 16,
    progress: Callable[[str, int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Held-out comparison of base and tuned model at fixed sampling settings (same seeds for both).

    Every statistic is first computed per prompt (mean over its `samples` answers; distinct-2 and mean pairwise
    embedding cosine distance over its answers), then averaged over prompts with a 95% Student-t interval,
    reported as [mean, half-width]. `reward_gain` is the paired per-prompt difference tuned − base of the
    judge's reward. The result also holds every sampled answer under "samples" (one record per prompt).
    """
    if samples < 2:
        raise ValueError("evaluate needs samples >= 2 per prompt (diversity is measured within a prompt)")
    result: dict[str, Any] = {
        "judge": judge.name, "other_judge": getattr(other_judge, "name", None), "n_prompts": len(prompts),
        "samples_per_prompt": samples, "seed": seed,
        "sampling": {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens},
    }
    per_prompt: dict[str, dict[str, np.ndarray]] = {}
    texts: dict[str, list[list[str]]] = {}
    for label, model in (("base", base_model), ("tuned", tuned_model)):
        report = None if progress is None else (lambda d, n, s, label=label: progress(label, d, n, s))
        responses = sample_responses(model, tokenizer, prompts, k=samples, max_new_tokens=max_new_tokens,
                                     temperature=temperature, seed=seed, batch_size=batch_size, top_p=top_p,
                                     progress=report)
        stats = {
            "reward": _flat_scores(judge, prompts, responses),
            "distinct2": np.array([[distinct_n(rs, 2)] for rs in responses]),
            "semantic_diversity": np.array([[semantic_diversity(rs)] for rs in responses]),
            "words": np.array([[len(r.split()) for r in rs] for rs in responses], dtype=np.float64),
        }
        if other_judge is not None:
            stats["other_reward"] = _flat_scores(other_judge, prompts, responses)
        per_prompt[label] = {key: value.mean(axis=1) for key, value in stats.items()}
        texts[label] = responses
        result[label] = {key: _ci(value) for key, value in per_prompt[label].items()}
        result[label]["reward_per_sample"] = stats["reward"].round(4).tolist()
    result["reward_gain"] = _ci(per_prompt["tuned"]["reward"] - per_prompt["base"]["reward"])
    lo_tuned = result["tuned"]["reward"][0] - result["tuned"]["reward"][1]
    hi_base = result["base"]["reward"][0] + result["base"]["reward"][1]
    result["ci_separated"] = bool(lo_tuned > hi_base)
    result["samples"] = [
        {"prompt": p, "base": texts["base"][i], "tuned": texts["tuned"][i],
         "base_reward": result["base"]["reward_per_sample"][i], "tuned_reward": result["tuned"]["reward_per_sample"][i]}
        for i, p in enumerate(prompts)
    ]
    for label in ("base", "tuned"):
        del result[label]["reward_per_sample"]
    return result


def summary_line(evaluation: dict[str, Any]) -> str:
    """One human line: judge reward base → tuned (±CI), gain, other judge, diversity."""
    b, t = evaluation["base"], evaluation["tuned"]
    fmt = lambda ci: f"{ci[0]:+.3f} ± {ci[1]:.3f}"  # noqa: E731
    line = (f"{evaluation['judge']}: base {fmt(b['reward'])} → tuned {fmt(t['reward'])} "
            f"(gain {fmt(evaluation['reward_gain'])}); ")
    if "other_reward" in b:
        line += f"{evaluation['other_judge']}: {fmt(b['other_reward'])} → {fmt(t['other_reward'])}; "
    line += (f"distinct-2 {b['distinct2'][0]:.3f} → {t['distinct2'][0]:.3f}; "
             f"embedding diversity {b['semantic_diversity'][0]:.3f} → {t['semantic_diversity'][0]:.3f}; "
             f"words {b['words'][0]:.1f} → {t['words'][0]:.1f}")
    return line


__all__ = ["chat_prompt", "sample_responses", "make_pairs", "evaluate", "summary_line"]
