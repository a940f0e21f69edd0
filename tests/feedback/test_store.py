"""VoteStore on a real SQLite file and a real PostgreSQL server: idempotency, validation, concurrency,
migrations and a clear error when the database cannot be written."""
from __future__ import annotations

import threading
from datetime import UTC

import pytest
from sqlalchemy import create_engine, text

from playground.feedback.store import SCHEMA_VERSION, VoteStore
from playground.feedback.vote import FeedbackError, FeedbackUnavailable
from tests.feedback.conftest import _free_port
from tests.feedback.factory import make_vote, settings


@pytest.fixture
def store(store_url):
    with VoteStore(store_url) as s:
        yield s


def test_a_vote_round_trips_with_every_field(store):
    vote = make_vote()
    row_id, created = store.record(vote)
    assert created and store.count() == 1
    [back] = store.votes()
    assert back.id == row_id
    assert back.created_at is not None and back.created_at.tzinfo == UTC
    for name in ("idempotency_key", "session_hash", "prompt", "answer_a", "answer_b", "outcome", "source",
                 "tokens_a", "settings_a", "settings_b"):
        assert getattr(back, name) == getattr(vote, name), name
    assert back.conversation == list(vote.conversation)
    assert back.judge_scores == {"vader": [0.4, 0.1]}


def test_recording_the_same_vote_twice_stores_one_row(store):
    first = store.record(make_vote("click-1"))
    again = store.record(make_vote("click-1"))  # a retried request or a double click
    assert first == (first[0], True)
    assert again == (first[0], False)
    assert store.count() == 1


def test_a_reused_key_with_different_content_is_refused(store):
    store.record(make_vote("k", outcome="a"))
    with pytest.raises(FeedbackError, match="idempotency_key.*already used for a different vote"):
        store.record(make_vote("k", outcome="b"))
    assert [v.outcome for v in store.votes()] == ["a"]


@pytest.mark.parametrize("changes, field", [
    ({"outcome": "maybe"}, "outcome"),
    ({"source": "bot"}, "source"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "x" * 5000}, "prompt"),
    ({"answer_b": None}, "answer_b"),
    ({"session_hash": "10.0.0.1"}, "session_hash"),
    ({"idempotency_key": "  "}, "idempotency_key"),
    ({"tokens_a": -1}, "tokens_a"),
    ({"tokens_b": True}, "tokens_b"),
    ({"settings_a": {"lambda": 1.0}}, "settings_a"),
    ({"settings_b": settings(temperature=float("nan"))}, "settings_b.temperature"),
    ({"settings_b": settings(mode="magic")}, "settings_b.mode"),
    ({"conversation": [{"role": "robot", "content": "x"}]}, "conversation[0].role"),
    ({"conversation": "hello"}, "conversation"),
    ({"judge_scores": {"vader": [1.0]}}, "judge_scores['vader']"),
    ({"judge_scores": {"vader": [1.0, float("inf")]}}, "judge_scores['vader'] score_b"),
])
def test_a_bad_vote_is_refused_naming_the_field_and_nothing_is_stored(store, changes, field):
    with pytest.raises(FeedbackError) as info:
        store.record(make_vote(**changes))
    assert str(info.value).startswith(field), str(info.value)
    assert store.count() == 0


def test_32_concurrent_writers_store_exactly_640_votes(store):
    threads, per_thread = 32, 20
    barrier = threading.Barrier(threads)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer(t: int) -> None:
        try:
            barrier.wait()
            mine = [store.record(make_vote(f"t{t}-v{i}", outcome="ab"[i % 2])) for i in range(per_thread)]
            mine.append(store.record(make_vote("shared-key")))  # every thread double-clicks the same vote
            with lock:
                results.extend(mine)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors[:3]
    assert store.count() == threads * per_thread + 1
    assert sum(created for _, created in results) == threads * per_thread + 1  # "shared-key" created once
    keys = [v.idempotency_key for v in store.votes()]
    assert len(set(keys)) == len(keys)


def test_migrations_are_recorded_and_idempotent(store_url):
    with VoteStore(store_url) as first:
        assert first.schema_version() == SCHEMA_VERSION
        first.record(make_vote())
    with VoteStore(store_url) as second:  # opening again migrates nothing and keeps the votes
        assert second.migrate() == SCHEMA_VERSION
        assert second.count() == 1
    engine = create_engine(store_url)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version FROM schema_version ORDER BY version")).scalars().all()
    engine.dispose()
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_two_processes_opening_a_new_database_at_once_migrate_it_once(store_url):
    stores, errors = [], []

    def open_store() -> None:
        try:
            stores.append(VoteStore(store_url))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    openers = [threading.Thread(target=open_store) for _ in range(4)]
    for t in openers:
        t.start()
    for t in openers:
        t.join()
    assert not errors, errors
    assert all(s.schema_version() == SCHEMA_VERSION for s in stores)
    for s in stores:
        s.close()


def test_a_database_newer_than_the_app_is_refused(store_url):
    VoteStore(store_url).close()
    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_version (version, applied_at) VALUES (999, CURRENT_TIMESTAMP)"))
    engine.dispose()
    with pytest.raises(FeedbackUnavailable, match="schema version 999, newer than this app"):
        VoteStore(store_url).migrate()


def _read_only_url(store_url: str) -> str:
    """The same database, opened so that every write fails."""
    if store_url.startswith("sqlite"):
        path = store_url.removeprefix("sqlite:///")
        return f"sqlite:///file:{path}?mode=ro&uri=true"
    engine = create_engine(store_url)
    database = engine.url.database
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"ALTER DATABASE {database} SET default_transaction_read_only = on"))
    engine.dispose()
    return store_url


def test_a_read_only_database_gives_a_clear_unavailable_error(store_url):
    with VoteStore(store_url) as s:
        s.record(make_vote("before"))
    with VoteStore(_read_only_url(store_url)) as ro:
        assert ro.count() == 1  # reading still works
        with pytest.raises(FeedbackUnavailable, match="Votes cannot be saved: the vote database is read-only"):
            ro.record(make_vote("after"))
        assert ro.count() == 1


def test_an_sqlite_file_that_cannot_be_opened_gives_a_clear_unavailable_error(tmp_path):
    with pytest.raises(FeedbackUnavailable, match="Votes cannot be stored right now: the vote database .* "
                                                  "is unavailable .*unable to open database file"):
        VoteStore(f"sqlite:///{tmp_path / 'missing-dir' / 'votes.sqlite3'}")


def test_an_unreachable_postgres_server_gives_a_clear_unavailable_error():
    closed_port = f"postgresql://voter:hunter2@127.0.0.1:{_free_port()}/votes"  # nothing listens there
    with pytest.raises(FeedbackUnavailable, match="the vote database .*127.0.0.1.* is unavailable") as info:
        VoteStore(closed_port)
    assert "hunter2" not in str(info.value)  # the message never shows the password


def test_a_malformed_url_gives_a_clear_unavailable_error():
    with pytest.raises(FeedbackUnavailable, match="the vote database URL is not usable.*PLAYGROUND_DATABASE_URL"):
        VoteStore("nosuchdb://somewhere/votes")


def test_in_memory_sqlite_is_refused(tmp_path):
    with pytest.raises(FeedbackError, match="in-memory"):
        VoteStore("sqlite://")


def test_sqlite_runs_with_a_rollback_journal_full_sync_and_a_busy_timeout(tmp_path):
    """Not WAL: its memory-mapped -shm file SIGBUSes the process once it cannot be written (tests/feedback/test_faults.py)."""
    with VoteStore(f"sqlite:///{tmp_path / 'votes.sqlite3'}") as s, s.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "delete"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL: fsync at every commit
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 10_000
