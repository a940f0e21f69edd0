""""Prefer this one" in the Side-by-side tab, on the tiny playground with a real SQLite store: two pairwise votes
(source "column") whose settings regenerate every answer (later turns and continued answers too), idempotent on a
double click, refused clearly without a finished turn or a store, and chat keeps working."""
from __future__ import annotations

import pytest

from playground.chat.conversation import Conversation, Row, continue_last, run_turn
from playground.feedback.columns import column_votes, pairs
from playground.feedback.config import sqlite_url
from playground.feedback.duel import DuelService
from playground.feedback.store import VoteStore
from playground.feedback.vote import FeedbackError, FeedbackUnavailable, hash_session
from playground.settings.request import LIMITS
from playground.settings.votes import FeedbackSettings
from playground.settings.validation import decode_settings

SALT = "column-test-salt"
KNOBS = dict(adapter="a", kl_strength=0.05, mode="logits", temperature=0.9, top_p=0.95, max_new_tokens=6, seed=3)


def last(turns):
    """The conversation after the last streamed step."""
    return list(turns)[-1][0]


@pytest.fixture
def feedback_settings(tmp_path):
    return FeedbackSettings(database_url=sqlite_url(tmp_path / "votes.sqlite3"), data_dir=tmp_path, salt=SALT)


@pytest.fixture
def service(tiny_playground, feedback_settings):
    s = DuelService(tiny_playground, lambda: VoteStore.open(feedback_settings), limits=feedback_settings)
    yield s
    s.close()


def stored(feedback_settings):
    with VoteStore.open(feedback_settings) as store:
        return store.votes()


def decode(pg, prompt, history, adapter, s) -> str:
    """One answer from its stored settings: decoded, continued at each `resumed_at` (seed + count), cut to `tokens`."""
    knobs = {k: s[k] for k in ("mode", "temperature", "top_p", "max_new_tokens")}
    tokens: list[int] = []
    for cut in [*s.get("resumed_at", []), None]:
        seed = (s["seed"] + len(tokens)) % (LIMITS.max_seed + 1)
        ids = list(pg.encode(prompt, history)) + pg.answer_ids(tokens)
        *_, done = pg.stream([pg.request(ids, adapter, decode_settings(lam=s["lambda"], seed=seed, **knobs))])
        tokens = (tokens + list(done[0].tokens))[:cut]
    if "tokens" in s:
        tokens = pg.answer_ids(tokens)[:s["tokens"]]
    return pg.text(tokens)


def regenerate(pg, vote, settings) -> str:
    """A stored answer again: its column's earlier answers first (prompts from the conversation), then itself."""
    adapter = None if settings["column"] == "base" else vote.adapter
    prompts = [m["content"] for m in vote.conversation if m["role"] == "user"]
    history: list[dict] = []
    for prompt, earlier in zip(prompts, settings["history"], strict=True):
        history += [{"role": "user", "content": prompt},
                    {"role": "assistant", "content": decode(pg, prompt, history, adapter, earlier)}]
    return decode(pg, vote.prompt, history, adapter, settings)


def test_prefer_stores_two_column_votes_that_regenerate_each_answer(service, tiny_playground, feedback_settings):
    conv = last(run_turn(tiny_playground, Conversation(), "Hello there", KNOBS))
    conv = last(run_turn(tiny_playground, conv, "Tell me about cats.", {**KNOBS, "seed": 7, "kl_strength": 0.2}))
    ids = service.vote_columns(conv, "realigned", "session-1")
    votes = stored(feedback_settings)
    assert [v.id for v in votes] == ids and len(ids) == 2
    row = conv.rows[-1]
    for vote, (a, b) in zip(votes, [("base", "realigned"), ("realigned", "tuned")], strict=True):
        assert vote.source == "column" and vote.prompt == "Tell me about cats." and vote.adapter == "a"
        assert vote.outcome == ("a" if a == "realigned" else "b")
        assert (vote.answer_a, vote.answer_b) == (row.cells[a].text, row.cells[b].text)
        assert vote.settings_a["column"] == a and vote.settings_b["column"] == b and vote.settings_a["turn"] == 1
        assert vote.conversation == conv.without_last_turn().histories["realigned"]  # what the winner saw
        assert vote.session_hash == hash_session("session-1", SALT) and set(vote.judge_scores) == set(service.judges)
        for answer, settings in ((vote.answer_a, vote.settings_a), (vote.answer_b, vote.settings_b)):
            assert regenerate(tiny_playground, vote, settings) == answer
    assert votes[0].settings_b["lambda"] == pytest.approx(conv.rows[-1].turn.decode.lam)


def test_a_continued_answer_regenerates_from_its_resume_points(service, tiny_playground, feedback_settings):
    conv = last(run_turn(tiny_playground, Conversation(), "Hello", {**KNOBS, "max_new_tokens": 3}))
    conv = last(continue_last(tiny_playground, conv))
    assert any(cell.resumed_at == [3] for cell in conv.rows[-1].cells.values())
    service.vote_columns(conv, "tuned", "s1")
    for vote in stored(feedback_settings):
        assert vote.outcome == "b" and vote.settings_b["column"] == "tuned"
        for answer, settings in ((vote.answer_a, vote.settings_a), (vote.answer_b, vote.settings_b)):
            assert settings.get("resumed_at", []) == conv.rows[-1].cells[settings["column"]].resumed_at
            assert regenerate(tiny_playground, vote, settings) == answer


def test_a_double_click_stores_once_and_a_changed_vote_is_refused(service, tiny_playground, feedback_settings):
    conv = last(run_turn(tiny_playground, Conversation(), "Hello", KNOBS))
    first = service.vote_columns(conv, "base", "s1")
    assert service.vote_columns(conv, "base", "s1") == first
    with pytest.raises(FeedbackError, match="column: you already preferred 'base'"):
        service.vote_columns(conv, "tuned", "s1")
    assert len(stored(feedback_settings)) == 2
    other = service.vote_columns(conv, "tuned", "s2")  # another session: its own votes
    assert set(other).isdisjoint(first) and len(stored(feedback_settings)) == 4
    again = last(run_turn(tiny_playground, conv, "And then?", KNOBS))  # a later turn: a new comparison
    assert len(service.vote_columns(again, "base", "s1")) == 2 and len(stored(feedback_settings)) == 6


def test_refusals_name_what_is_missing(service, tiny_playground, feedback_settings):
    with pytest.raises(FeedbackError, match="conversation: no finished turn to vote on yet"):
        service.vote_columns(Conversation(), "base", "s1")
    with pytest.raises(FeedbackError, match="conversation: no finished turn"):
        service.vote_columns(None, "base", "s1")
    conv = last(run_turn(tiny_playground, Conversation(), "Hello", KNOBS))
    with pytest.raises(FeedbackError, match="column: must be one of base, realigned, tuned, got 'best'"):
        service.vote_columns(conv, "best", "s1")
    streaming = Conversation([*conv.rows, Row(conv.rows[-1].turn)])
    with pytest.raises(FeedbackError, match="still answering"):
        service.vote_columns(streaming, "base", "s1")
    with pytest.raises(FeedbackError, match="session_id"):
        service.vote_columns(conv, "base", "")
    assert stored(feedback_settings) == []


def test_an_unavailable_store_refuses_the_vote_and_chat_keeps_working(tiny_playground, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    bad = FeedbackSettings(database_url=sqlite_url(blocker / "votes.sqlite3"), data_dir=tmp_path, salt=SALT)
    s = DuelService(tiny_playground, lambda: VoteStore.open(bad), limits=bad)
    conv = last(run_turn(tiny_playground, Conversation(), "Hello", KNOBS))
    with pytest.raises(FeedbackUnavailable, match="Votes cannot be stored"):
        s.vote_columns(conv, "tuned", "s1")
    assert last(run_turn(tiny_playground, conv, "Still there?", KNOBS)).turns == 2


def test_pairs_and_keys_without_a_model(tiny_playground):
    assert pairs("base") == [("base", "realigned"), ("base", "tuned")]
    assert pairs("tuned") == [("base", "tuned"), ("realigned", "tuned")]
    conv = last(run_turn(tiny_playground, Conversation(), "Hello", KNOBS))
    kw = dict(session_hash="0" * 64, base_model="tiny", adapter_hash="h", count=len)
    one, two = column_votes(conv, "realigned", **kw), column_votes(conv, "realigned", **kw)
    assert [v.idempotency_key for v in one] == [v.idempotency_key for v in two]
    assert {v.idempotency_key for v in one}.isdisjoint(v.idempotency_key for v in column_votes(conv, "realigned", **{
        **kw, "session_hash": "1" * 64}))
    assert all(v.judge_scores == {} and set(v.settings_a) >= {"lambda", "seed", "history"} for v in one)
