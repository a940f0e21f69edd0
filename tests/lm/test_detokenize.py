"""Text in every script: answers decoded token by token never show a "�" the model did not produce.

On the shipped tokenizer (SmolLM2's byte-level BPE), one Korean, Chinese, accented or emoji character
often spans several tokens. The text of a growing answer holds an incomplete character back until its
last token is there (streaming), a token's piece in the token-marks view is "" until the token that
completes the character (which carries all of it), and an answer cut inside a character ends before it.
"""
from __future__ import annotations

import pytest

from playground.lm.detokenize import REPLACEMENT, Detokenizer, pieces, text

KOREAN = "비 오는 날을 위한 팁을 하나 알려주세요"
SAMPLES = {
    "korean": KOREAN + ". 우산을 꼭 챙기세요!",
    "chinese": "下雨天有什么建议？记得带伞，注意安全。",
    "accented": "Crème brûlée à la façon de Françoise, señor Müller — naïve Ångström",
    "emoji": "Have fun 🙂👍🏽 — rain 🌧️ and family 👨‍👩‍👧!",
    "mixed": "Tip: 비가 오면 ☔ take 伞 and café au lait ☕.",
}


@pytest.fixture(scope="module")
def tok(shipped_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(shipped_tokenizer_dir)


def ids_of(tok, s: str) -> list[int]:
    return tok.encode(s, add_special_tokens=False)


def test_the_shipped_tokenizer_splits_these_characters_over_tokens(tok):
    """The premise: decoding single tokens of these texts gives "�" (so prefix-by-prefix decoding would too)."""
    for name, s in SAMPLES.items():
        if name != "accented":  # Latin-1 letters are mostly whole tokens; the other scripts are not
            assert any(REPLACEMENT in tok.decode([i]) for i in ids_of(tok, s)), name


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("use_decode_stream", [True, False], ids=["DecodeStream", "python"])
def test_pieces_join_to_the_decoded_answer_without_replacement_characters(tok, name, use_decode_stream):
    ids = ids_of(tok, SAMPLES[name])
    d = Detokenizer(tok, use_decode_stream=use_decode_stream).feed(ids)
    assert len(d.pieces) == len(ids)  # one piece per token
    assert not any(REPLACEMENT in p for p in d.pieces)
    assert "".join(d.pieces) == d.text == tok.decode(ids, skip_special_tokens=True) == SAMPLES[name]
    assert d.held == 0


def test_a_split_character_lands_on_the_token_that_completes_it(tok):
    ids = ids_of(tok, "비")
    assert len(ids) == 3  # three byte tokens
    assert pieces(tok, ids) == ["", "", "비"]


@pytest.mark.parametrize("name", SAMPLES)
def test_streaming_text_never_shows_a_half_decoded_character(tok, name):
    """Fed one token at a time (as the chat streams), every intermediate text is a clean prefix of the answer."""
    full = SAMPLES[name]
    ids = ids_of(tok, full)
    d = Detokenizer(tok)
    shown = []
    for k in range(1, len(ids) + 1):
        shown.append(d.feed(ids[:k]).text)
        assert REPLACEMENT not in shown[-1]
        assert full.startswith(shown[-1])
    assert shown == sorted(shown, key=len) and shown[-1] == full  # text only grows, and ends complete


@pytest.mark.parametrize("name", SAMPLES)
def test_an_answer_cut_inside_a_character_ends_before_it(tok, name):
    """Cut at any token (the token limit, Stop, the deadline): no trailing "�", only the incomplete character dropped."""
    full = SAMPLES[name]
    ids = ids_of(tok, full)
    for k in range(len(ids) + 1):
        cut = text(tok, ids[:k])
        raw = tok.decode(ids[:k], skip_special_tokens=True)
        assert REPLACEMENT not in cut and full.startswith(cut)
        complete = raw.rstrip(REPLACEMENT)  # what decode gives, less its incomplete character
        assert complete.startswith(cut) and complete[len(cut):].strip() == ""  # a space in its token goes with it


def test_stop_tokens_are_left_out_and_a_new_answer_starts_over(tok):
    stop = [tok.eos_token_id]
    ids = ids_of(tok, KOREAN)
    d = Detokenizer(tok, stop)
    assert d.feed(ids + stop).text == KOREAN and len(d.pieces) == len(ids)
    other = ids_of(tok, "下雨天")
    assert d.feed(other).text == "下雨天"  # not an extension of the last list: decoded afresh


def test_a_replacement_character_the_model_produced_is_kept(tok):
    """Only incomplete characters are held back: a "�" inside the answer (the model's own) shows as decoded."""
    ids = ids_of(tok, "a \ufffd b")
    assert text(tok, ids) == tok.decode(ids) == "a \ufffd b"
    stray = ids_of(tok, "비")[1:] + ids_of(tok, " ok")  # continuation bytes without their lead byte, then text
    assert text(tok, stray) == tok.decode(stray)


# --- the playground and the chat on the shipped tokenizer (tiny random model, scripted answers) -----------

def scripted(pg, script: list[int], stop_id: int):
    """A stand-in for `pg.stream` whose every answer is `script` (continuing where a request's prompt ends in it),
    one token per step, cut at the request's max_new_tokens; ends with `stop_id` when the script is done."""
    from playground.lm.request import Stream

    def stream(requests, should_stop=lambda: False):
        todo = []
        for r in requests:
            start = max((k for k in range(len(script) + 1) if k == 0 or tuple(r.prompt_ids[-k:]) == tuple(script[:k])))
            todo.append((script[start:] + [stop_id])[:r.settings.max_new_tokens])
        streams = [Stream(elapsed_s=0.01) for _ in requests]
        for step in range(max(len(t) for t in todo)):
            if should_stop():
                return
            for st, t in zip(streams, todo):
                if step < len(t):
                    st.tokens.append(t[step])
                    st.kl.append(0.1)
                    st.entropy.append(0.5)
                    st.shifted.append(step % 2 == 1)
                st.done = len(st.tokens) == len(t)
            yield [s.copy() for s in streams]

    return stream


def test_the_playground_text_and_pieces_use_the_shipped_tokenizer(tiny_playground):
    pg = tiny_playground
    answer = ids_of(pg._tokenizer, SAMPLES["korean"]) + pg._stop_ids[:1]
    assert pg.text(answer) == SAMPLES["korean"] and "".join(pg.pieces(answer)) == SAMPLES["korean"]
    assert pg.text(answer[:1]) == ""  # the first byte of "비": nothing to show yet


def test_a_korean_turn_streams_and_finishes_without_replacement_characters(tiny_playground, monkeypatch):
    from playground.chat.conversation import Conversation, continue_last, run_turn
    from ui.transcript import render

    pg = tiny_playground
    answer = SAMPLES["korean"]
    script = ids_of(pg._tokenizer, answer)
    monkeypatch.setattr(pg, "stream", scripted(pg, script, pg._stop_ids[0]))
    monkeypatch.setattr(pg, "add_rewards", lambda t, answers: None)  # no judge model needed
    cut_at = max(k for k in range(len(script)) if pg._tokenizer.decode(script[:k]).endswith(REPLACEMENT))
    knobs = dict(adapter="a", kl_strength=0.05, mode="logits", temperature=0.7, top_p=0.95, seed=0,
                 max_new_tokens=cut_at)  # the token limit falls inside a character
    steps = []
    for conv, _ in run_turn(pg, Conversation(), KOREAN, knobs):
        steps.append(render(conv))
        for cell in conv.rows[-1].cells.values():
            assert REPLACEMENT not in cell.text and answer.startswith(cell.text)
    assert len(steps) > cut_at - 1 and not any(REPLACEMENT in html for html in steps)
    row = conv.rows[-1]
    for cell in row.cells.values():  # cut at the limit inside a character: it ends before that character
        assert cell.truncated and cell.text == pg._tokenizer.decode(script[:cut_at]).rstrip(REPLACEMENT).rstrip()
        assert "".join(t for t, _ in cell.marks) == cell.text
        assert not any(REPLACEMENT in t for t, _ in cell.marks)
    for conv, _ in continue_last(pg, conv):  # continue completes the held-back character
        assert REPLACEMENT not in render(conv)
    for cell in conv.rows[-1].cells.values():
        assert cell.done and not cell.truncated and cell.text == answer
        assert "".join(t for t, _ in cell.marks) == answer


def test_token_marks_put_a_split_character_on_one_mark():
    from playground.chat.conversation import token_marks

    assert token_marks(["", "", "비", " 오"], [True, False, False, False]) == [("비", True), (" 오", False)]
    assert token_marks(["a", ""], [False, True]) == [("a", False)]  # an incomplete character at the end: no mark


def test_the_chat_api_answers_korean_without_replacement_characters(tiny_playground, monkeypatch):
    """Through the launched app (gradio_client /chat): the Korean turn's transcript, every column."""
    from gradio_client import Client

    from tests.test_app import serve

    pg = tiny_playground
    answer = "비가 오면 우산을 챙기고, 따뜻한 차를 마셔 보세요 ☔🍵"
    script = ids_of(pg._tokenizer, answer)
    monkeypatch.setattr(pg, "stream", scripted(pg, script, pg._stop_ids[0]))
    monkeypatch.setattr(pg, "add_rewards", lambda t, answers: None)
    demo, url = serve(pg)
    try:
        out = Client(url, verbose=False).predict(KOREAN, "a", 0.05, "logits", 0.7, 0.95, len(script) + 1, 0,
                                                 api_name="/chat")
    finally:
        demo.close()
    for column in out[:3]:
        assert column[0]["content"] == KOREAN
        assert column[1]["content"].startswith(answer + "\n\n")
        assert REPLACEMENT not in str(column)
