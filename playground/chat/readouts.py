"""Readouts in plain words: what each number under an answer means, and warnings at the knobs' extremes.

Each readout is a list of (text shown, explanation on hover) parts, so the UI can show the explanation
as a tooltip and the API can join the texts into one line. No gradio, no torch.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from playground.settings.request import LIMITS, nominal_beta

if TYPE_CHECKING:
    from playground.service import Answer

# What each judge measures, in a few words, and a longer hover text.
JUDGE_SHORT = {"upbeat": "positive tone", "concise": "short & on-topic", "on_topic": "on-topic"}
JUDGE_MEANS = {
    "upbeat": "positive tone (VADER sentiment, −1…+1), not quality: a cheerful wrong answer scores high",
    "concise": "short and on-topic (MiniLM similarity to the question − a length penalty, −1.5…1), not correctness",
    "on_topic": "on-topic (MiniLM similarity of answer and question, −1…1), not correctness",
}
KL_MEANS = ("drift from the base model: mean per-token KL(π ‖ π_base) in nats. 0 = the base model's own choices; "
            "above ≈ 0.5 the text often turns repetitive or odd")
ENTROPY_MEANS = ("randomness: mean entropy (nats) of the distribution each token was drawn from. Higher = more random; "
                 "temperature and top-p move it; ≈ 0 = almost deterministic")
LAMBDA_MEANS = "λ = β_train / β mixes the two models' next-token scores: 0 = base model, 1 = tuned model, > 1 goes past it"
SPEED_MEANS = "answer length in tokens (word pieces) and decoding speed on this server"
WEIGHTS_MEAN = {"int4": "int4, the model file's own 4-bit blocks", "bfloat16": "bfloat16", "float32": "float32"}
SEED_MEANS = "the same seed and settings give the same text, token for token"
FAR_KL = 0.5  # nats/token: past this the answer is far from the base model

Part = tuple[str, str]  # (text, explanation)


def lambda_label(lam: float, beta: float) -> str:
    beta_text = "∞" if math.isinf(beta) else f"{beta:.3g}"
    return f"λ = β_train/β = {lam:.3g} (β = {beta_text})"


def beta_label(lam: float, beta_train: float) -> str:
    """Beside the λ knob: where λ sits between the two models, and the nominal KL strength β = β_train/λ."""
    beta = nominal_beta(beta_train, lam)
    where = ("the base model alone" if lam == 0 else "the tuned model as trained" if lam == 1
             else "extrapolated past the tuned model" if lam > 1 else "between base and tuned")
    beta_text = "∞" if math.isinf(beta) else f"{beta:.3g}"
    return f"λ {lam:.3g}: {where} · β = β_train/λ = {beta_text} (nominal KL strength; β_train = {beta_train:g})"


def judge_info(judge: str) -> str:
    """One line for the info box: what the adapter's judge scores."""
    return f"**Judge score** = {JUDGE_MEANS.get(judge, judge)}."


def readout_parts(answer: Answer, column: str, judge: str = "") -> list[Part]:
    """The readout under one answer, part by part, each with its explanation."""
    st = answer.settings
    if column == "base":
        policy = ("base model", "λ = 0: the base model alone, the reference the other columns are compared with")
    elif column == "realigned":
        policy = (f"λ {st['lambda']:.3g} ({st['mode']})", LAMBDA_MEANS)
    else:
        policy = ("tuned, λ 1", "the preference-tuned adapter as trained (λ = 1)")
    parts = [policy,
             (f"drift {answer.kl_to_base:.2f} nats/token", KL_MEANS),
             (f"randomness {answer.entropy:.2f} nats", ENTROPY_MEANS)]
    if answer.reward is not None:
        parts.append((f"{JUDGE_SHORT.get(judge, judge or 'judge')} {answer.reward:+.2f}",
                      f"the adapter's judge '{judge}': {JUDGE_MEANS.get(judge, judge)}"))
    weights = st.get("weights")
    parts.append((f"{answer.tokens} tokens, {answer.tokens_per_s:.0f} tok/s",
                  SPEED_MEANS + (f" (weight path: {WEIGHTS_MEAN.get(weights, weights)})" if weights else "")))
    parts.append((f"T {st['temperature']:g}, top-p {st['top_p']:g}, seed {st['seed']}", SEED_MEANS))
    return parts


def live_readout(answer: Answer) -> str:
    """While an answer streams: its length so far and the decoding speed (the full readout follows when it is done)."""
    return f"{answer.tokens} tokens · {answer.tokens_per_s:.0f} tok/s"


def answer_warning(answer: Answer, stopped: bool = False, timed_out: bool = False) -> str:
    """One short warning for an answer, or ''. `stopped`: it ended early; `timed_out`: by the request's time limit
    (labelled as such, not as a Stop nobody pressed)."""
    if stopped:
        return "time limit reached" if timed_out else "stopped"
    if answer.kl_to_base > FAR_KL:
        return "far from the base model: expect repetitive or odd text"
    return ""


def readout_text(parts: list[Part], warning: str = "", truncated: bool = False) -> str:
    """The readout as one plain line (the API's and the CLI's form)."""
    text = " · ".join(p for p, _ in parts)
    if warning:
        text += f" · ⚠️ {warning}"
    if truncated:
        text += " · ✂️ cut at the token limit (continue to go on)"
    return text


def readout(answer: Answer, column: str, judge: str = "") -> str:
    return readout_text(readout_parts(answer, column, judge), answer_warning(answer), answer.truncated)


def settings_warning(lam: float, temperature: float, top_p: float, max_new_tokens: int) -> str:
    """A one-line warning when a knob sits at an extreme, or ''."""
    notes = []
    if lam >= 0.75 * LIMITS.max_lambda:
        notes.append(f"λ {lam:.3g} is far past the tuned model (λ 1): expect repetitive or odd text")
    elif lam > 2:
        notes.append(f"λ {lam:.3g} extrapolates past the tuned model: answers may turn repetitive")
    elif lam < 0.1:
        notes.append(f"λ {lam:.3g}: the realigned column is almost the base model")
    if temperature >= 1.5:
        notes.append(f"temperature {temperature:g} is near random: expect garbled text")
    elif temperature == 0:
        notes.append("temperature 0 is greedy: the seed has no effect")
    if top_p < 0.3:
        notes.append(f"top-p {top_p:g} keeps only the few likeliest tokens")
    if max_new_tokens < 64:
        notes.append(f"{max_new_tokens} tokens: most answers will be cut off")
    return "⚠️ " + "; ".join(notes) if notes else ""
