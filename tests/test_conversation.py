"""One user's conversation: per-column histories, state kept on bad input, deadline, regenerate."""
from __future__ import annotations

import dataclasses

import pytest

from playground import conversation
from playground.conversation import Conversation, run_turn
from playground.settings import LIMITS
from playground.validation import InputError

KNOBS = dict(adapter="a", kl_strength=0.05, mode="logits", temperature=0.0, top_p=1.0, max_new_tokens=6, seed=0)


def last(turns):
    out = None
    for out in turns:
        pass
    return out


def test_turn_appends_to_every_column_and_keeps_the_input_state(tiny_playground):
    conv = Conversation()
    new, answers = last(run_turn(tiny_playground, conv, "Hello there", KNOBS))
    assert conv.turns == 0 and new.turns == 1  # the caller's state object is untouched
    for column, answer in answers.items():
        assert new.histories[column][-1] == {"role": "assistant", "content": answer.text}
        assert "seed 0" in new.readouts[column][-1]
    again, _ = last(run_turn(tiny_playground, new, "And then?", KNOBS))
    assert again.turns == 2 and again.without_last_turn().histories == new.histories


def test_bad_input_leaves_the_conversation_as_it_was(tiny_playground):
    conv, _ = last(run_turn(tiny_playground, Conversation(), "Hello", KNOBS))
    before = dataclasses.replace(conv)
    with pytest.raises(InputError, match="temperature must be in"):
        last(run_turn(tiny_playground, conv, "Hi", {**KNOBS, "temperature": float("nan")} | {"temperature": -1}))
    assert conv.histories == before.histories and conv.turns == 1


def test_deadline_stops_a_long_answer(tiny_playground, monkeypatch):
    monkeypatch.setattr(conversation, "LIMITS", dataclasses.replace(LIMITS, request_timeout_s=0.0))
    _, answers = last(run_turn(tiny_playground, Conversation(), "Hello", {**KNOBS, "max_new_tokens": 200}))
    assert all(a.tokens == 1 for a in answers.values())
