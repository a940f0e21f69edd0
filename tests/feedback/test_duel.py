"""DuelService on the tiny playground with a real SQLite vote store: what is stored regenerates each answer,
votes are idempotent and bound to their session, and bad or unavailable votes are refused clearly."""
from __future__ import annotations

import pytest

from playground.feedback.config import sqlite_url
from playground.settings.votes import FeedbackSettings
from playground.feedback.duel import DuelService
from playground.feedback.store import VoteStore
from playground.feedback.vote import FeedbackError, FeedbackUnavailable, hash_session
from playground.settings.validation import InputError, decode_settings

SALT = "duel-test-salt"


@pytest.fixture
def feedback_settings(tmp_path):
    return FeedbackSettings(database_url=sqlite_url(tmp_path / "votes.sqlite3"), data_dir=tmp_path, salt=SALT)


@pytest.fixture
def service(tiny_playground, feedback_settings):
    s = DuelService(tiny_playground, lambda: VoteStore.open(feedback_settings), limits=feedback_settings,
                    max_new_tokens=6)
    yield s
    s.close()


def regenerate(pg, prompt, adapter, settings):
    """Decode one answer alone from its stored settings."""
    d = decode_settings(lam=settings["lambda"], mode=settings["mode"], temperature=settings["temperature"],
                        top_p=settings["top_p"], max_new_tokens=settings["max_new_tokens"], seed=settings["seed"])
    *_, last = pg.stream([pg.request(pg.encode(prompt), adapter, d)])
    return pg.text(last[0].tokens)


def test_a_vote_stores_settings_that_regenerate_each_answer(service, tiny_playground, feedback_settings):
    duel = service.start("Tell me about cats.", "a", 0.9, "session-1", seed=3)
    assert duel.settings_a["lambda"] != duel.settings_b["lambda"]
    assert set(duel.judge_scores) == {"upbeat", "concise", "on_topic"}
    vote_id, reveal = service.vote(duel.duel_id, "a", "session-1")
    assert reveal["a"]["lambda"] == duel.settings_a["lambda"] and reveal["outcome"] == "a"
    assert reveal["vote_id"] == vote_id
    with VoteStore.open(feedback_settings) as store:
        [stored] = store.votes()
    assert stored.id == vote_id and stored.idempotency_key == duel.duel_id and stored.source == "duel"
    assert stored.session_hash == hash_session("session-1", SALT)
    assert stored.adapter == "a" and len(stored.adapter_hash) == 64
    assert stored.judge_scores == duel.judge_scores
    for answer, settings, tokens in ((stored.answer_a, stored.settings_a, stored.tokens_a),
                                     (stored.answer_b, stored.settings_b, stored.tokens_b)):
        assert regenerate(tiny_playground, stored.prompt, stored.adapter, settings) == answer
        assert 0 <= tokens <= settings["max_new_tokens"]


def test_the_same_seed_draws_the_same_duel(service):
    one = service.start("Hi there", "b", 0.7, "s", seed=11)
    two = service.start("Hi there", "b", 0.7, "s", seed=11)
    assert (one.settings_a, one.settings_b, one.answer_a, one.answer_b) == (
        two.settings_a, two.settings_b, two.answer_a, two.answer_b)
    assert one.duel_id != two.duel_id


def test_a_double_vote_is_idempotent_and_a_changed_vote_refused(service, feedback_settings):
    duel = service.start("Hello", "a", 0.7, "s1", seed=1)
    first, _ = service.vote(duel.duel_id, "tie", "s1")
    again, _ = service.vote(duel.duel_id, "tie", "s1")
    assert again == first
    with pytest.raises(FeedbackError, match="already voted"):
        service.vote(duel.duel_id, "b", "s1")
    with VoteStore.open(feedback_settings) as store:
        assert store.count() == 1


def test_refusals(service):
    duel = service.start("Hello", "a", 0.7, "s1", seed=2)
    with pytest.raises(FeedbackError, match="another session"):
        service.vote(duel.duel_id, "a", "s2")
    with pytest.raises(FeedbackError, match="unknown or expired duel"):
        service.vote("no-such-duel", "a", "s1")
    with pytest.raises(FeedbackError, match="outcome: must be one of"):
        service.vote(duel.duel_id, "A is better", "s1")
    with pytest.raises(FeedbackError, match="generate two answers first"):
        service.vote("", "a", "s1")
    with pytest.raises(InputError, match="prompt"):
        service.start("   ", "a", 0.7, "s1")
    with pytest.raises(InputError, match="adapter"):
        service.start("Hello", "nope", 0.7, "s1")
    with pytest.raises(InputError, match="temperature"):
        service.start("Hello", "a", 9, "s1")


def test_an_expired_duel_is_refused(tiny_playground, feedback_settings):
    now = [0.0]
    s = DuelService(tiny_playground, lambda: VoteStore.open(feedback_settings), limits=feedback_settings,
                    max_new_tokens=2, clock=lambda: now[0])
    duel = s.start("Hello", "a", 0.7, "s1", seed=0)
    now[0] = feedback_settings.duel_expiry_s + 1
    with pytest.raises(FeedbackError, match="expired"):
        s.vote(duel.duel_id, "a", "s1")


def test_pending_duels_are_bounded(tiny_playground, feedback_settings):
    s = DuelService(tiny_playground, lambda: VoteStore.open(feedback_settings), limits=feedback_settings,
                    max_new_tokens=1, max_pending=2)
    duels = [s.start("Hello", "a", 0.7, "s1", seed=i) for i in range(3)]
    assert s.pending(duels[0].duel_id) is None and s.pending(duels[2].duel_id) is not None


def test_an_unavailable_database_refuses_votes_but_duels_still_run(tiny_playground, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    bad = FeedbackSettings(database_url=sqlite_url(blocker / "votes.sqlite3"), data_dir=tmp_path, salt=SALT)
    s = DuelService(tiny_playground, lambda: VoteStore.open(bad), limits=bad, max_new_tokens=2)
    duel = s.start("Hello", "a", 0.7, "s1", seed=0)
    with pytest.raises(FeedbackUnavailable, match="Votes cannot be stored"):
        s.vote(duel.duel_id, "a", "s1")

    def broken():
        raise OSError("disk on fire")

    s2 = DuelService(tiny_playground, broken, limits=bad, max_new_tokens=2)
    duel = s2.start("Hello", "a", 0.7, "s1", seed=0)
    with pytest.raises(FeedbackUnavailable, match="disk on fire"):
        s2.vote(duel.duel_id, "b", "s1")
    assert s2.start("Hello again", "b", 0.7, "s1", seed=1).answer_a is not None


def test_duels_started_together_equal_duels_started_alone(service):
    prompts = ["Hello", "Tell me about cats.", "Any tips for a rainy day?"]
    together = service.start_many(prompts, "a", 0.9, "s1", seeds=[5, 6, 7])
    alone = [service.start(p, "a", 0.9, "s1", seed=k) for p, k in zip(prompts, [5, 6, 7], strict=True)]
    for t, a in zip(together, alone, strict=True):
        assert (t.prompt, t.settings_a, t.settings_b, t.answer_a, t.answer_b) == (
            a.prompt, a.settings_a, a.settings_b, a.answer_a, a.answer_b)
        assert {j: pytest.approx(v, abs=1e-6) for j, v in a.judge_scores.items()} == t.judge_scores
        assert service.pending(t.duel_id) is t
    with pytest.raises(FeedbackError, match="one seed"):
        service.start_many(prompts, "a", 0.9, "s1", seeds=[1])
