"""One user's side-by-side conversation as turn rows: each row is one prompt and its three answers.

Plain data and functions, no gradio: the app keeps a `Conversation` in `gr.State` (per browser session,
never global) and renders what the generators here yield. A turn is checked up front (`check_turn`, no
model needed), then streamed (`stream_turn`); a cut or stopped answer can be continued in place
(`continue_last`); Regenerate draws the next seed for that turn only (`regenerate_last`), or for one column
of it (`regenerate_column`, that column's own seed).
"""
from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

from playground.chat.readouts import (  # noqa: F401  (re-exported)
    answer_warning, lambda_label, live_readout, readout_parts, readout_text)
from playground.chat.turn import ChatTurn, build_turn
from playground.settings.request import COLUMNS, LIMITS, DecodeSettings
from playground.settings.validation import InputError, check_choice, check_prompt_tokens

if TYPE_CHECKING:  # the model (torch) loads after the UI is served; this module is needed to build the UI
    from playground.service import Answer, Playground

TITLES = {"base": "Base model (λ = 0)", "realigned": "Realigned (λ from the slider)", "tuned": "Tuned as trained (λ = 1)"}
# The chat's default answer length: long enough that most answers of the small model end on their own.
CHAT_MAX_NEW_TOKENS = LIMITS.max_new_tokens
# Past this a prompt is refused in the chat: the 135M model returns (almost) nothing for such prompts and the
# three columns spend many seconds reading it first.
USEFUL_PROMPT_CHARS = 2000
STOPPED, TIME_LIMIT = "stopped", "time limit reached"  # an answer ended early by Stop / by the request deadline
clock = time.monotonic  # the request deadline's clock (tests step their own)
Knobs = Mapping[str, object]  # adapter, kl_strength (or lam), mode, temperature, top_p, max_new_tokens, seed


@dataclass
class Cell:
    """One column's answer in one turn."""

    text: str = ""
    tokens: list[int] = field(default_factory=list)
    shifted: list[bool] = field(default_factory=list)  # per token: the base model's top token differs
    answer: Answer | None = None
    marks: list[tuple[str, bool]] = field(default_factory=list)  # (token text, shifted), once done
    parts: list[tuple[str, str]] = field(default_factory=list)  # readout (text, explanation), once done
    warning: str = ""
    done: bool = False
    truncated: bool = False  # ended at the token limit
    stopped: bool = False  # Stop (or the time limit) ended it early
    timed_out: bool = False  # the request's time limit ended it, not the Stop button
    resumed_at: list[int] = field(default_factory=list)  # token counts where "continue" decoded further (seed + count)
    seed: int | None = None  # this column's own seed once it was regenerated alone (None: the turn's seed)

    @property
    def can_continue(self) -> bool:
        return self.done and (self.truncated or self.stopped)

    @property
    def cut_reason(self) -> str:
        """Why a finished answer can be continued: "token limit", "time limit reached", "stopped" (Stop), or ""."""
        if not self.can_continue:
            return ""
        return "token limit" if self.truncated else TIME_LIMIT if self.timed_out else STOPPED

    @property
    def live(self) -> str:
        """While streaming: tokens so far and tok/s ("" before the first token and once done)."""
        return live_readout(self.answer) if self.answer is not None and not self.done else ""

    @property
    def readout(self) -> str:
        if self.parts:
            return readout_text(self.parts, self.warning, self.truncated)
        return "" if self.done else f"… {self.live}".rstrip()


@dataclass
class Row:
    turn: ChatTurn
    cells: dict[str, Cell] = field(default_factory=lambda: {c: Cell() for c in COLUMNS})
    kl_strength: float | None = None  # the β the user set (None when λ was given directly)
    preferred: str | None = None  # the column the user preferred ("Prefer this one"), once the vote is stored

    @property
    def streaming(self) -> bool:
        return not all(c.done for c in self.cells.values())

    def column_turn(self, column: str) -> ChatTurn:
        """The turn as `column` decoded it: the turn's settings, with the column's own seed once regenerated alone."""
        seed = self.cells[column].seed
        return self.turn if seed is None else replace(self.turn, decode=replace(self.turn.decode, seed=seed))

    def column_decode(self, column: str):
        """The decode settings `column`'s answer was made with (λ per column, its own seed)."""
        return self.column_turn(column).column(column)


@dataclass
class Conversation:
    """Turn rows; each column continues its own dialogue (the model sees its own earlier answers)."""

    rows: list[Row] = field(default_factory=list)

    @property
    def turns(self) -> int:
        return len(self.rows)

    @property
    def last(self) -> ChatTurn | None:
        return self.rows[-1].turn if self.rows else None

    @property
    def histories(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {c: [] for c in COLUMNS}
        for row in self.rows:
            for c in COLUMNS:
                out[c] += [{"role": "user", "content": row.turn.prompt}, {"role": "assistant", "content": row.cells[c].text}]
        return out

    @property
    def readouts(self) -> dict[str, list[str]]:
        return {c: [row.cells[c].readout for row in self.rows] for c in COLUMNS}

    def display(self, column: str) -> list[dict]:
        """Chat messages of one column (the API's form): each answer followed by its readout line."""
        out = []
        for row in self.rows:
            cell = row.cells[column]
            out.append({"role": "user", "content": row.turn.prompt})
            content = f"{cell.text}\n\n<sub>{cell.readout}</sub>" if cell.readout else cell.text
            out.append({"role": "assistant", "content": content})
        return out

    def without_last_turn(self) -> "Conversation":
        return Conversation(copy.deepcopy(self.rows[:-1]))

    def upto(self, turns: int | None) -> "Conversation":
        """The first `turns` rows (None: all), e.g. before an edited question is sent again."""
        return self if turns is None else Conversation(copy.deepcopy(self.rows[:turns]))


def check_turn(adapters: Mapping, conv: Conversation, prompt: object, knobs: Knobs) -> ChatTurn:
    """Every check that needs no model (prompt, raw knobs, conversation length); `adapters` may be the registry's."""
    knobs = dict(knobs)
    return turn_with(adapters, conv, prompt, knobs.pop("adapter", None), knobs)


def turn_with(adapters: Mapping, conv: Conversation, prompt: object, adapter: object,
              decode: DecodeSettings | Knobs) -> ChatTurn:
    """The next turn of `conv`: its length checked, then the turn built (chat/turn.py `build_turn`) from checked
    settings (the tab's sliders, made a `DecodeSettings` at the event's entry) or raw knobs."""
    if conv.turns >= LIMITS.max_history_turns:
        raise InputError(f"the conversation has {conv.turns} turns; the limit is {LIMITS.max_history_turns}. "
                         "Press Clear to start over")
    return build_turn(adapters, prompt, adapter, decode, useful_chars=USEFUL_PROMPT_CHARS)


class StopFlags:
    """Stop requests per browser session: the Stop button sets one, the decoding loop polls it."""

    def __init__(self) -> None:
        self._set: dict[str, float] = {}
        self._lock = threading.Lock()

    def clear(self, key: str) -> None:
        with self._lock:
            self._set.pop(key, None)

    def request(self, key: str) -> None:
        with self._lock:
            if len(self._set) > 10_000:  # forgotten flags of sessions long gone
                self._set.clear()
            self._set[key] = time.monotonic()

    def checker(self, key: str) -> Callable[[], bool]:
        return lambda: key in self._set


def run_turn(pg: Playground, conv: Conversation, prompt: str, knobs: Knobs,
             should_stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[Conversation, dict[str, Answer]]]:
    """Check, then stream one turn into a copy of `conv`; the caller's state is never half-updated."""
    s = check_turn(pg.adapters, conv, prompt, knobs)
    yield from stream_turn(pg, conv, s, should_stop, kl_strength=knobs.get("kl_strength"))


def stream_turn(pg: Playground, conv: Conversation, s: ChatTurn, should_stop: Callable[[], bool] = lambda: False,
                kl_strength: object = None, timed: bool = True) -> Iterator[tuple[Conversation, dict[str, Answer]]]:
    """The side-by-side decoder: the three columns of turn `s` decode together after `conv` (each column continues
    its own dialogue) into a copy of it; judged when done. `timed`: within the request's time limit (the CLI: no)."""
    reqs = pg.requests(s, conv.histories)  # checks every column's prompt tokens before anything streams
    new = copy.deepcopy(conv)
    new.rows.append(Row(s, kl_strength=float(kl_strength) if kl_strength is not None else None))  # type: ignore[arg-type]
    yield from _decode(pg, new, reqs, should_stop, timed)


def continue_last(pg: Playground, conv: Conversation,
                  should_stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[Conversation, dict[str, Answer]]]:
    """Decode further the last turn's answers that were cut at the token limit or stopped."""
    row = conv.rows[-1] if conv.rows else None
    if row is None or not any(c.can_continue for c in row.cells.values()):
        raise InputError("nothing to continue: the last answers ended on their own")
    before = conv.without_last_turn().histories
    reqs = {}
    for c, cell in row.cells.items():
        if cell.can_continue:
            ids = list(pg.encode(row.turn.prompt, before[c])) + pg.answer_ids(cell.tokens)
            check_prompt_tokens(len(ids))
            d = row.column_decode(c)  # fresh random draws for the new part: the seed moves on by the tokens so far
            d = replace(d, seed=(d.seed + len(cell.tokens)) % (LIMITS.max_seed + 1))
            reqs[c] = pg.request(ids, row.turn.adapter if c != "base" else None, d)
    new = copy.deepcopy(conv)
    new.rows[-1].preferred = None  # longer answers: a new comparison
    yield from _decode(pg, new, reqs, should_stop)


def regenerate_last(pg: Playground, conv: Conversation,
                    should_stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[Conversation, dict[str, Answer]]]:
    """The last turn again with the next seed (for this turn only; the seed box is not changed)."""
    if not conv.rows:
        raise InputError("nothing to regenerate yet; send a message first")
    row = conv.rows[-1]
    seed = row.turn.decode.seed + 1
    if seed > LIMITS.max_seed:
        raise InputError(f"seed {seed} is past the limit {LIMITS.max_seed}")
    s = replace(row.turn, decode=replace(row.turn.decode, seed=seed))
    yield from stream_turn(pg, conv.without_last_turn(), s, should_stop, kl_strength=row.kl_strength)


def regenerate_column(pg: Playground, conv: Conversation, column: object,
                      should_stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[Conversation, dict[str, Answer]]]:
    """One column of the last turn again with its next seed; the other two answers stay as they are."""
    column = check_choice("column", column, COLUMNS)
    if not conv.rows:
        raise InputError("nothing to regenerate yet; send a message first")
    row = conv.rows[-1]
    seed = row.column_decode(column).seed + 1
    if seed > LIMITS.max_seed:
        raise InputError(f"seed {seed} is past the limit {LIMITS.max_seed}")
    before = conv.without_last_turn().histories[column]
    new = copy.deepcopy(conv)
    new.rows[-1].cells[column] = Cell(seed=seed)
    new.rows[-1].preferred = None  # a new answer: a new comparison
    d = new.rows[-1].column_decode(column)
    ids = pg.encode(row.turn.prompt, before)  # checks the prompt's token count
    yield from _decode(pg, new, {column: pg.request(ids, row.turn.adapter if column != "base" else None, d)}, should_stop)


def _merged(prev: Cell, a: Answer, text: str) -> Answer:
    """A continued answer: the earlier part and the new tokens as one answer (`text`: of all its tokens)."""
    if prev.answer is None or not prev.tokens:
        return replace(a, text=text)
    old, n = prev.answer, prev.answer.tokens + a.tokens
    return replace(a, text=text, tokens=n, kl_to_base_sum=old.kl_to_base_sum + a.kl_to_base_sum,
                   kl_to_base=(old.kl_to_base_sum + a.kl_to_base_sum) / n if n else 0.0,
                   entropy=(old.entropy * old.tokens + a.entropy * a.tokens) / n if n else 0.0,
                   shifted_share=(old.shifted_share * old.tokens + a.shifted_share * a.tokens) / n if n else 0.0,
                   first_token_s=old.first_token_s)


def token_marks(pieces: list[str], shifted: list[bool]) -> list[tuple[str, bool]]:
    """(text, shifted) per shown piece: a character split over tokens is one mark on the token that completes it,
    highlighted when any of its tokens was shifted; held-back tokens (and an incomplete character at the end)
    add no mark."""
    out, carry = [], False
    for piece, flag in zip(pieces, shifted):
        if not piece:
            carry = carry or flag
            continue
        out.append((piece, flag or carry))
        carry = False
    return out


def _decode(pg: Playground, new: Conversation, reqs: dict, should_stop: Callable[[], bool],
            timed: bool = True) -> Iterator[tuple[Conversation, dict[str, Answer]]]:
    """Stream `reqs` (column -> engine request) into the last row of `new`, then judge and finish the cells."""
    row = new.rows[-1]
    s, cols = row.turn, list(reqs)
    prev = {c: copy.deepcopy(row.cells[c]) for c in cols}
    for c in cols:
        resumed = prev[c].resumed_at + [len(prev[c].tokens)] if prev[c].tokens else prev[c].resumed_at
        row.cells[c] = replace(prev[c], done=False, truncated=False, stopped=False, timed_out=False, parts=[], marks=[],
                               warning="",
                               resumed_at=resumed)
    deadline = clock() + LIMITS.request_timeout_s if timed else None  # frees the model even if nobody cancels
    ended: dict[str, str] = {}  # "why": STOPPED (the user's Stop) or TIME_LIMIT (the deadline), whichever came first

    def stop() -> bool:
        if "why" not in ended:
            if should_stop():
                ended["why"] = STOPPED
            elif deadline is not None and clock() > deadline:
                ended["why"] = TIME_LIMIT
        return "why" in ended

    answers: dict[str, Answer] = {}
    # Incremental text per column (a continued answer's earlier tokens first): a character split over tokens
    # shows once complete, never as "�", and only new tokens are decoded at each step.
    texts = {c: pg.detokenizer().feed(prev[c].tokens) for c in cols}
    for streams in pg.stream([reqs[c] for c in cols], should_stop=stop):
        for c, st in zip(cols, streams):
            cell = row.cells[c]
            cell.tokens = prev[c].tokens + list(st.tokens)
            cell.shifted = prev[c].shifted + list(st.shifted)
            text = texts[c].feed(cell.tokens).text
            answers[c] = _merged(prev[c], pg.answer(st, c, row.column_turn(c), text), text)
            cell.text, cell.answer = answers[c].text, answers[c]
        yield new, answers
    for c in cols:
        if c not in answers:  # stopped before the first token (deadline or Stop): an empty, finished answer
            from playground.lm.request import Stream

            answers[c] = _merged(prev[c], pg.answer(Stream(done=True), c, row.column_turn(c), texts[c].text), texts[c].text)
    pg.add_rewards(s, answers)
    judge = pg.adapters[s.adapter].judge
    for c in cols:
        cell, a = row.cells[c], answers[c]
        cell.done, cell.truncated = True, a.truncated
        cell.stopped = "why" in ended and not a.done
        cell.timed_out = cell.stopped and ended["why"] == TIME_LIMIT
        keep = [f for t, f in zip(cell.tokens, cell.shifted) if not pg.is_stop(t)]
        cell.marks = token_marks(texts[c].feed(cell.tokens).pieces, keep)
        cell.parts = readout_parts(a, c, judge)
        cell.warning = answer_warning(a, cell.stopped, cell.timed_out)
    yield new, answers
