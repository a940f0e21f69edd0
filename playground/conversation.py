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
    from playground.service import Answer, Playground, SideBySide

TITLES = {"base": "Base model (λ = 0)", "realigned": "Realigned (λ = β_train/β from the slider)",
          "tuned": "Tuned as trained (λ = 1)"}


@dataclass
class Conversation:
    """Each column continues its own dialogue (the model sees its own earlier answers)."""

    histories: dict[str, list[dict]] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    readouts: dict[str, list[str]] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    last: SideBySide | None = None

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


def readout(answer: Answer, column: str) -> str:
    """One line: what the answer cost and how far it moved, plus the settings that reproduce it."""
    st = answer.settings
    reward = "–" if answer.reward is None else f"{answer.reward:+.3f}"
    policy = "base model" if column == "base" else f"λ {st['lambda']:.3g} ({st['mode']})" if column == "realigned" else "λ 1"
    return (f"{answer.tokens} tokens · {answer.tokens_per_s:.1f} tok/s · KL to base {answer.kl_to_base:.3f} nats/token · "
            f"entropy {answer.entropy:.2f} · reward {reward} · {policy} · adapter {st['adapter']} · "
            f"T {st['temperature']:g} · top-p {st['top_p']:g} · seed {st['seed']}")


def run_turn(pg: Playground, conv: Conversation, prompt: str, knobs: dict,
             should_stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[Conversation, dict[str, Answer]]]:
    """Validate, then stream one turn into a copy of `conv`; the caller's state is never half-updated.

    knobs: adapter, kl_strength, mode, temperature, top_p, max_new_tokens, seed.
    """
    if conv.turns >= LIMITS.max_history_turns:
        raise InputError(f"the conversation has {conv.turns} turns; the limit is {LIMITS.max_history_turns}. Press Clear to start over")
    s = pg.settings(prompt, **knobs)
    histories = {c: list(conv.histories[c]) for c in COLUMNS}
    pg.requests(s, histories)  # validates prompt length for every column before anything streams
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
            new.readouts[c][-1] = readout(a, c) if a.done or a.reward is not None else "…"
        yield new, answers
