"""One user's conversation: per-column histories, state kept on bad input, deadline, regenerate."""
from __future__ import annotations

import dataclasses

import pytest

from playground.chat import conversation
from playground.chat.conversation import Conversation, run_turn
from playground.settings.request import COLUMNS, LIMITS
from playground.settings.validation import InputError

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
    assert all(a.tokens <= 1 and a.done for a in answers.values())  # stopped at (or before) the first token


def stepping_clock(ticks_before_deadline: int):
    """A clock for the request deadline: 0 for the first calls (the deadline is set, then checked), then far past it."""
    calls = {"n": 0}

    def clock() -> float:
        calls["n"] += 1
        return 0.0 if calls["n"] <= ticks_before_deadline else 1e9

    return clock


def test_an_answer_cut_by_the_deadline_says_time_limit_reached(tiny_playground, monkeypatch):
    from ui.transcript import render

    monkeypatch.setattr(conversation, "clock", stepping_clock(4))  # set + three checks, then the deadline passed
    conv, answers = last(run_turn(tiny_playground, Conversation(), "Hello", {**KNOBS, "max_new_tokens": 200}))
    html = render(conv)
    for c, cell in conv.rows[-1].cells.items():
        assert 0 < answers[c].tokens < 10 and cell.can_continue
        assert cell.timed_out and cell.cut_reason == "time limit reached" and cell.warning == "time limit reached"
        assert "time limit reached" in conv.readouts[c][-1] and "stopped" not in conv.readouts[c][-1]
    assert "(time limit reached — continue)" in html and "stopped" not in html  # nobody pressed Stop


def test_an_answer_ended_by_stop_says_stopped(tiny_playground, monkeypatch):
    from ui.transcript import render

    monkeypatch.setattr(conversation, "clock", stepping_clock(10_000))  # the deadline never passes here
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    conv, _ = last(run_turn(tiny_playground, Conversation(), "Hello", {**KNOBS, "max_new_tokens": 200}, stop_after_three))
    for cell in conv.rows[-1].cells.values():
        assert cell.stopped and not cell.timed_out and cell.cut_reason == "stopped" and cell.warning == "stopped"
    assert "(stopped — continue)" in render(conv) and "time limit" not in render(conv)


def test_streaming_answers_show_a_live_token_count_and_speed(tiny_playground):
    import re

    from ui.transcript import render

    counts: dict[str, list[int]] = {c: [] for c in COLUMNS}
    for conv, answers in run_turn(tiny_playground, Conversation(), "Hello", {**KNOBS, "max_new_tokens": 6}):
        html = render(conv)
        for c, cell in conv.rows[-1].cells.items():
            if cell.done:
                continue
            assert cell.live == f"{answers[c].tokens} tokens · {answers[c].tokens_per_s:.0f} tok/s"
            assert f'<div class="ro-live">{cell.live}</div>' in html and cell.readout == f"… {cell.live}"
            counts[c].append(answers[c].tokens)
    for c, seen in counts.items():  # more tokens at each update while it streamed (the scheduler coalesces
        assert seen and seen[0] >= 1 and all(a < b for a, b in zip(seen, seen[1:])), c  # steps a slow reader missed)
    assert "ro-live" not in render(conv)  # done: the full readout replaces it
    assert all(re.search(r"\d+ tokens, \d+ tok/s", r[-1]) for r in conv.readouts.values())


def test_continue_extends_a_cut_answer_in_place(tiny_playground):
    from playground.chat.conversation import continue_last

    conv, answers = last(run_turn(tiny_playground, Conversation(), "Hello", {**KNOBS, "max_new_tokens": 4}))
    cut = [c for c, a in answers.items() if a.truncated]
    assert cut and all(conv.rows[-1].cells[c].can_continue for c in cut)
    more, _ = last(continue_last(tiny_playground, conv))
    assert more.turns == 1
    for c in cut:
        before, after = conv.rows[-1].cells[c], more.rows[-1].cells[c]
        assert after.tokens[:4] == before.tokens and len(after.tokens) > 4
        assert after.text.startswith(before.text) and after.answer.tokens == len(after.tokens)
    with pytest.raises(InputError, match="nothing to continue"):
        last(continue_last(tiny_playground, Conversation()))


def test_regenerate_uses_the_next_seed_for_that_turn_only(tiny_playground):
    from playground.chat.conversation import regenerate_last

    conv, _ = last(run_turn(tiny_playground, Conversation(), "Hello", {**KNOBS, "temperature": 1.0}))
    again, _ = last(regenerate_last(tiny_playground, conv))
    assert again.turns == 1 and again.last.decode.seed == 1 and again.last.prompt == "Hello"
    assert again.histories != conv.histories


def test_stop_ends_decoding_and_marks_the_answers(tiny_playground):
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    conv, answers = last(run_turn(tiny_playground, Conversation(), "Hello", {**KNOBS, "max_new_tokens": 200}, stop_after_three))
    assert all(a.tokens < 10 for a in answers.values())
    assert all(cell.stopped and cell.can_continue for cell in conv.rows[-1].cells.values())
    assert all("stopped" in r[-1] for r in conv.readouts.values())


def test_a_prompt_too_long_to_be_useful_is_refused_before_the_model(tiny_playground):
    from playground.chat.conversation import USEFUL_PROMPT_CHARS, check_turn

    with pytest.raises(InputError, match="shorten it"):
        check_turn(tiny_playground.adapters, Conversation(), "x" * (USEFUL_PROMPT_CHARS + 1), KNOBS)


def test_highlight_marks_line_up_with_the_answer(tiny_playground):
    conv, _ = last(run_turn(tiny_playground, Conversation(), "Hello", {**KNOBS, "kl_strength": 0.0125}))
    for c, cell in conv.rows[-1].cells.items():
        assert "".join(t for t, _ in cell.marks) == cell.text
        assert c != "base" or not any(s for _, s in cell.marks)  # the base model never departs from itself
