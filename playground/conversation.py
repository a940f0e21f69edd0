"""One user's side-by-side conversation: per-column histories, turns, regenerate, and readouts.

Plain data and functions, no gradio: app.py keeps a `Conversation` in `gr.State` (per browser session,
never global) and renders what `run_turn` yields.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

from playground.settings import COLUMNS, LIMITS
from playground.validation import InputError

if TYPE_CHECKING:  # the model (torch) loads after the UI is served; this module is needed to build the UI
    from playground.service import Answer, ChatTurn, Playground

TITLES = {"base": "Base model (λ = 0)", "realigned": "Realigned (λ = β_train/β from the slider)",
          "tuned": "Tuned as trained (λ = 1)"}


@dataclass
class Conversation:
    """Each column continues its own dialogue (the model sees its own earlier answers)."""

    histories: dict[str, list[dict]] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    readouts: dict[str, list[str]] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    last: ChatTurn | None = None

    @property
    def turns(self) -> int:
        return sum(1 for m in self.histories["base"] if m["role"] == "user")

    def display(self, column: str) -> list[dict]:
        """Chat messages for the UI: each answer followed by its readout line."""
        out, answer_i = [], 0
        for m in self.histories[column]:
            content = m["content"]
            if m["role"] == "assistant":
                readout = self.readouts[column][answer_i] if answer_i < len(self.readouts[column]) else ""
                content = f"{content}\n\n<sub>{readout}</sub>" if readout else content
                answer_i += 1
            out.append({"role": m["role"], "content": content})
        return out

    def without_last_turn(self) -> "Conversation":
        new = copy.deepcopy(self)
        for c in COLUMNS:
            h = new.histories[c]
            while h and h[-1]["role"] != "user":
                h.pop()
            if h:
                h.pop()
            if new.readouts[c]:
                new.readouts[c].pop()
        return new


def lambda_label(lam: float, beta: float) -> str:
    beta_text = "∞" if math.isinf(beta) else f"{beta:.3g}"
    return f"λ = β_train/β = {lam:.3g} (β = {beta_text})"


JUDGE_MEANS = {"upbeat": "positive tone (VADER), not quality", "concise": "short and on-topic (MiniLM)",
               "on_topic": "on-topic (MiniLM similarity)"}
FAR_KL = 0.5  # nats/token: past this the answer is far from the base model


def readout(answer: Answer, column: str, judge: str = "") -> str:
    """Plain words: how far the answer moved from the base model, how random it was, what the judge says."""
    st = answer.settings
    means = JUDGE_MEANS.get(judge, judge)
    reward = "" if answer.reward is None else f" · {judge or 'judge'} score {answer.reward:+.2f} ({means})"
    policy = "base model" if column == "base" else f"λ {st['lambda']:.3g} ({st['mode']})" if column == "realigned" else "tuned, λ 1"
    far = " · ⚠️ far from the base model: expect repetitive or odd text" if answer.kl_to_base > FAR_KL else ""
    cut = " · ✂️ cut at the token limit (Continue to go on)" if answer.truncated else ""
    return (f"{policy} · drift from base {answer.kl_to_base:.2f} nats/token (KL) · randomness {answer.entropy:.2f} nats "
            f"(entropy){reward} · {answer.tokens} tokens, {answer.tokens_per_s:.0f} tok/s · T {st['temperature']:g}, "
            f"top-p {st['top_p']:g}, seed {st['seed']}{far}{cut}")


def run_turn(pg: Playground, conv: Conversation, prompt: str, knobs: dict,
             should_stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[Conversation, dict[str, Answer]]]:
    """Validate, then stream one turn into a copy of `conv`; the caller's state is never half-updated.

    knobs: adapter, kl_strength, mode, temperature, top_p, max_new_tokens, seed.
    """
    if conv.turns >= LIMITS.max_history_turns:
        raise InputError(f"the conversation has {conv.turns} turns; the limit is {LIMITS.max_history_turns}. Press Clear to start over")
    s = pg.turn(prompt, **knobs)
    histories = {c: list(conv.histories[c]) for c in COLUMNS}
    pg.requests(s, histories)  # validates prompt length for every column before anything streams
    judge = pg.adapters[s.adapter].judge
    new = copy.deepcopy(conv)
    new.last = s
    for c in COLUMNS:
        new.histories[c].append({"role": "user", "content": s.prompt})
        new.histories[c].append({"role": "assistant", "content": ""})
        new.readouts[c].append("")
    deadline = time.monotonic() + LIMITS.request_timeout_s  # frees the model even if nobody cancels

    def stop() -> bool:
        return should_stop() or time.monotonic() > deadline

    for answers in pg.stream_side_by_side(s, histories, should_stop=stop):
        for c, a in answers.items():
            new.histories[c][-1]["content"] = a.text
            new.readouts[c][-1] = readout(a, c, judge) if a.done or a.reward is not None else "…"
        yield new, answers
