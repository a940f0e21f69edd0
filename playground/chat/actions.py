"""What a Side-by-side event asks for: one `TurnAction` type, dispatched once (`ACTIONS`, `perform`, `preview`).

The tab's quick check builds a `TurnAction` (a new question carries its checked `ChatTurn`, whose
`DecodeSettings` the sliders made at the event's entry); it waits in a `gr.State` while the question is shown
(`preview`), then `perform` streams it. Every kind is one row of `ACTIONS`: what stays on screen before the
answers arrive, and the decoding it runs (chat/conversation.py). No gradio, no torch.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

from playground.chat.conversation import Conversation, continue_last, regenerate_column, regenerate_last, stream_turn
from playground.chat.turn import ChatTurn

if TYPE_CHECKING:
    from playground.service import Answer, Playground

ActionKind = Literal["send", "replay", "regenerate", "regenerate_column", "continue"]
Steps = Iterator[tuple[Conversation, "dict[str, Answer]"]]


@dataclass(frozen=True)
class TurnAction:
    """One checked chat action: a new question (send, replay: `turn`) or a change to the last turn's answers."""

    kind: ActionKind
    turn: ChatTurn | None = None  # send, replay: the new question with its checked settings
    upto: int | None = None  # send: the turns kept before it (an edited question replaces it and the rest); None = all
    column: str | None = None  # regenerate_column: which column
    kl_strength: float | None = None  # the β the user set (None: λ was set; the tab and share links set λ)


class Kind(NamedTuple):
    """One action kind: the conversation shown above the question while it waits (None: the answers change in
    place), and the decoding it runs."""

    before: Callable[[Conversation, TurnAction], Conversation] | None
    run: Callable[["Playground", Conversation, TurnAction, Callable[[], bool]], Steps]


def _ask(pg, conv: Conversation, a: TurnAction, stop) -> Steps:
    """A new question after the conversation it continues (send: its first `upto` turns; replay: none)."""
    return stream_turn(pg, ACTIONS[a.kind].before(conv, a), a.turn, stop, a.kl_strength)


ACTIONS: dict[str, Kind] = {
    "send": Kind(lambda conv, a: conv.upto(a.upto), _ask),
    "replay": Kind(lambda conv, a: Conversation(), _ask),
    "regenerate": Kind(lambda conv, a: conv.without_last_turn(), lambda pg, conv, a, stop: regenerate_last(pg, conv, stop)),
    "regenerate_column": Kind(None, lambda pg, conv, a, stop: regenerate_column(pg, conv, a.column, stop)),
    "continue": Kind(None, lambda pg, conv, a, stop: continue_last(pg, conv, stop)),
}


def kept(conv: Conversation, action: TurnAction) -> Conversation:
    """The conversation a new question continues (its turn-count limit is checked against it)."""
    before = ACTIONS[action.kind].before
    return before(conv, action) if before is not None else conv


def preview(conv: Conversation, action: TurnAction) -> tuple[Conversation, str] | None:
    """What to show while the action waits for the model: the turns kept and the question asked, or None when
    the answers of the last turn change in place (continue, one column regenerated)."""
    if ACTIONS[action.kind].before is None:
        return None
    question = action.turn.prompt if action.turn is not None else conv.rows[-1].turn.prompt
    return kept(conv, action), question


def perform(pg: Playground, conv: Conversation, action: TurnAction, should_stop: Callable[[], bool] = lambda: False) -> Steps:
    """Stream the action into a copy of `conv` (the one dispatch on its kind)."""
    return ACTIONS[action.kind].run(pg, conv, action, should_stop)
