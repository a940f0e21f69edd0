"""Votes from the Side-by-side tab: "Prefer this one" under a column of the latest finished turn.

The chosen column beats each of the other two, stored as two pairwise votes (source "column") of the same kind
as a blind duel's: A and B are the two columns in the tab's order (base, realigned, tuned), the outcome says
which one was preferred. Each answer's settings regenerate it exactly: its λ, mode, temperature, top-p,
max_new_tokens and seed, plus the column, the turn index, `resumed_at` (token counts where "continue" decoded
further, with seed + count) and `history`: the same settings (and answer length in tokens) of this column's
earlier turns, whose answers (the column's own, from the prompts in `conversation`) it was conditioned on. The
vote's `conversation` is the preferred column's earlier turns, so the TRL export trains on what the winner saw.

Idempotency: the key is derived from the salted session hash, the whole conversation and the pair, so a
double click stores nothing new, and a later turn (or a continued one) is a new comparison.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from playground.chat.conversation import Conversation, Row
from playground.feedback.vote import FeedbackError, Vote
from playground.settings.request import COLUMNS

NO_TURN = ("conversation: no finished turn to vote on yet: send a message and wait for the three answers, "
           "then press \"Prefer this one\" under the best one")
STREAMING = "conversation: the last turn is still answering; wait for the three answers to finish, then vote"


def check_column(column: object) -> str:
    if column not in COLUMNS:
        raise FeedbackError(f"column: must be one of {', '.join(COLUMNS)}, got {column!r}")
    return str(column)


def last_finished_row(conv: object) -> Row:
    """The latest turn, once all three answers are finished; FeedbackError naming what is missing otherwise."""
    if not isinstance(conv, Conversation) or not conv.rows:
        raise FeedbackError(NO_TURN)
    row = conv.rows[-1]
    if row.streaming:
        raise FeedbackError(STREAMING)
    return row


def pairs(chosen: str) -> list[tuple[str, str]]:
    """(column A, column B) of each vote: the chosen column against each other one, in the tab's order."""
    return [(a, b) for i, a in enumerate(COLUMNS) for b in COLUMNS[i + 1:] if chosen in (a, b)]


def turn_digest(session_hash: str, conv: Conversation) -> str:
    """Identifies one session's latest turn with exactly these answers (and everything before it)."""
    rows = [[r.turn.prompt, r.turn.adapter, [r.cells[c].text for c in COLUMNS]] for r in conv.rows]
    data = json.dumps([session_hash, rows, _settings(conv.rows[-1], "realigned")], sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()


def _settings(row: Row, column: str) -> dict[str, Any]:
    d = row.column_decode(column)  # its own seed once regenerated alone
    out: dict[str, Any] = {"lambda": float(d.lam), "mode": d.mode, "temperature": float(d.temperature),
                           "top_p": float(d.top_p), "max_new_tokens": int(d.max_new_tokens), "seed": int(d.seed)}
    if row.cells[column].resumed_at:
        out["resumed_at"] = list(row.cells[column].resumed_at)
    return out


def answer_settings(conv: Conversation, column: str, count: Callable[[Sequence[int]], int]) -> dict[str, Any]:
    """Everything that regenerates `column`'s answer of the latest turn (see the module docstring)."""
    *before, last = conv.rows
    history = [{**_settings(r, column), "tokens": count(r.cells[column].tokens)} for r in before]
    return {**_settings(last, column), "column": column, "turn": len(before), "history": history}


def column_votes(conv: object, column: object, *, session_hash: str, base_model: str, adapter_hash: str,
                 count: Callable[[Sequence[int]], int], judge_scores: Mapping[str, Mapping[str, float]] | None = None
                 ) -> list[Vote]:
    """The two pairwise votes of "prefer `column`" on the latest finished turn of `conv`.

    `count(tokens)`: an answer's length in tokens without stop tokens (`Playground.answer_ids`);
    `judge_scores`: {judge: {column: score}} of the three answers (optional)."""
    chosen = check_column(column)
    row = last_finished_row(conv)
    assert isinstance(conv, Conversation)
    digest = turn_digest(session_hash, conv)
    earlier = conv.without_last_turn().histories[chosen]
    settings = {c: answer_settings(conv, c, count) for c in COLUMNS}
    votes = []
    for a, b in pairs(chosen):
        votes.append(Vote(
            idempotency_key=f"column-{digest[:40]}-{a}-{b}", session_hash=session_hash, base_model=base_model,
            adapter=row.turn.adapter, adapter_hash=adapter_hash, prompt=row.turn.prompt, conversation=earlier,
            answer_a=row.cells[a].text, answer_b=row.cells[b].text, outcome="a" if chosen == a else "b",
            source="column", tokens_a=count(row.cells[a].tokens), tokens_b=count(row.cells[b].tokens),
            settings_a=settings[a], settings_b=settings[b],
            judge_scores={j: [float(s[a]), float(s[b])] for j, s in (judge_scores or {}).items()}))
    return votes


def mark_preferred(conv: Conversation, column: str) -> Conversation:
    """A copy of `conv` whose latest turn records the preferred column (shown as "✓ Preferred")."""
    return Conversation([*conv.rows[:-1], replace(conv.rows[-1], preferred=check_column(column))])
