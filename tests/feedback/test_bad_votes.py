"""Bad votes are refused with a clear message and store nothing; a vote database that is down or read-only
makes voting fail clearly while the chat keeps answering (through the launched app, SQLite and PostgreSQL)."""
from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from playground.feedback.config import sqlite_url
from playground.settings.votes import FeedbackSettings
from playground.feedback.duel import DuelService
from playground.feedback.store import VoteStore
from playground.feedback.vote import FeedbackError
from tests.test_app import free_port, serve

CHAT = ("Tell me about cats.", "a", 0.05, "logits", 0.7, 0.95, 2, 0)  # /chat: the Side-by-side tab's API


@pytest.fixture
def launched(tiny_playground, monkeypatch):
    """Start the whole app in this process (env read at build/vote time); yields a function making clients."""
    from gradio_client import Client

    monkeypatch.setenv("PLAYGROUND_VOTE_SALT", "bad-votes-salt")
    monkeypatch.setenv("PLAYGROUND_DUEL_MAX_NEW_TOKENS", "2")
    demos = []

    def start():
        demo, url = serve(tiny_playground)
        demos.append(demo)
        return lambda: Client(url, verbose=False)

    yield start
    for demo in demos:
        demo.close()


def _count(url: str) -> int:
    with VoteStore(url) as store:
        return store.count()


# --- refusals, on the service (a fake clock for expiry) ------------------------------------------------

def test_each_bad_vote_is_refused_clearly_and_stores_nothing(tiny_playground, tmp_path):
    now = [0.0]
    limits = FeedbackSettings(database_url=sqlite_url(tmp_path / "v.sqlite3"), data_dir=tmp_path, salt="s")
    s = DuelService(tiny_playground, lambda: VoteStore.open(limits), limits=limits, max_new_tokens=2,
                    clock=lambda: now[0])
    mine = s.start("Hello", "a", 0.7, "me", seed=1)
    theirs = s.start("Hi", "a", 0.7, "them", seed=2)
    refusals = [
        (("no-such-duel", "a", "me"), "unknown or expired duel: generate two new answers"),
        ((theirs.duel_id, "a", "me"), "this duel belongs to another session"),  # answers this session never saw
        ((mine.duel_id, "A is better", "me"), "outcome: must be one of a, b, tie, both_bad"),
        ((None, "a", "me"), "no duel to vote on: generate two answers first"),
    ]
    for args, message in refusals:
        with pytest.raises(FeedbackError) as err:
            s.vote(*args)
        assert message in str(err.value)
    assert _count(limits.database_url) == 0
    first, _ = s.vote(mine.duel_id, "a", "me")
    assert s.vote(mine.duel_id, "a", "me")[0] == first  # a double click is the same vote
    with pytest.raises(FeedbackError, match=r"already voted on \('a'\); a vote cannot be changed"):
        s.vote(mine.duel_id, "b", "me")
    assert _count(limits.database_url) == 1
    now[0] = limits.duel_expiry_s + 1
    with pytest.raises(FeedbackError, match=r"this duel expired \(after 30 minutes\); generate two new answers"):
        s.vote(theirs.duel_id, "a", "them")
    with pytest.raises(FeedbackError, match="unknown or expired duel"):  # and it is gone
        s.vote(theirs.duel_id, "a", "them")
    assert _count(limits.database_url) == 1
    s.close()


# --- through the app ---------------------------------------------------------------------------------

def test_the_client_cannot_send_settings_or_pick_the_duel(launched, tmp_path, monkeypatch):
    from gradio_client.exceptions import AppError

    url = sqlite_url(tmp_path / "votes.sqlite3")
    monkeypatch.setenv("PLAYGROUND_DATABASE_URL", url)
    new_client = launched()
    client = new_client()
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    # what a client can send: the outcome only for /vote; prompt, adapter and temperature for /duel. λ, seed,
    # the answers and the duel id are kept on the server (the duel id in per-session gr.State).
    assert [p["parameter_name"] for p in api["/vote"]["parameters"]] == ["outcome"]
    duel_params = api["/duel"]["parameters"]
    assert len(duel_params) == 3 and duel_params[1]["label"].startswith("Adapter") and duel_params[2]["label"] == "Temperature"
    other = new_client()
    their_duel = other.predict("Their question.", "a", 0.7, api_name="/duel")
    assert their_duel[0] is not None

    # Forge the request: send a value for the hidden state (another session's duel, made-up settings).
    endpoint = client.endpoints[client._infer_fn_index("/vote", None)]
    forged = {"duel_id": "anything", "settings_a": {"lambda": 8.0}, "answer_a": "I was never shown"}
    sent = []
    endpoint.insert_empty_state = lambda *data: sent.append((*data, forged)) or sent[-1]
    with pytest.raises(AppError, match="no duel to vote on"):  # the server ignores it: this session has no duel
        client.predict("a", api_name="/vote")
    assert _count(url) == 0 and sent == [("a", forged)]  # the forged state did go out
    mine = client.predict("My question.", "a", 0.7, api_name="/duel")
    assert "saved" in client.predict("b", api_name="/vote")  # the forged state is ignored again ...
    with VoteStore(url) as store:
        [vote] = store.votes()
    assert (vote.prompt, vote.answer_a, vote.answer_b) == ("My question.", mine[0], mine[1])  # ... this is MY duel
    assert all(s["lambda"] <= 2.0 for s in (vote.settings_a, vote.settings_b))
    with pytest.raises(AppError, match="already voted"):
        client.predict("a", api_name="/vote")
    assert _count(url) == 1


def test_a_database_down_or_read_only_refuses_votes_and_chat_keeps_working(launched, store_url, monkeypatch, request):
    from gradio_client.exceptions import AppError

    backend = make_url(store_url).get_backend_name()
    if backend == "sqlite":
        path = make_url(store_url).database
        down = sqlite_url(f"{path}.missing-dir/votes.sqlite3")
        open(f"{path}.missing-dir", "w").close()  # a file where the folder should be: cannot be opened
        read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
        set_read_only = lambda on: None  # noqa: E731 — the URL opens it read-only
    else:
        server = request.getfixturevalue("pg_server")
        name = make_url(store_url).database
        down = server.url(name).replace(f":{server.port}/", f":{free_port()}/")  # nothing listens there
        read_only = store_url

        def set_read_only(on: bool) -> None:
            server.admin(f"ALTER DATABASE {name} SET default_transaction_read_only = {'on' if on else 'off'}")
    VoteStore(store_url).close()  # create the (empty) schema

    monkeypatch.setenv("PLAYGROUND_DATABASE_URL", down)
    client = launched()()
    client.predict("Which is better?", "a", 0.7, api_name="/duel")
    with pytest.raises(AppError) as err:
        client.predict("a", api_name="/vote")
    assert "Votes cannot be stored" in str(err.value)
    assert client.predict(*CHAT, api_name="/chat")[1][1]["role"] == "assistant"  # the chat still answers

    monkeypatch.setenv("PLAYGROUND_DATABASE_URL", read_only)
    set_read_only(True)
    try:
        with pytest.raises(AppError, match="the vote database is read-only"):
            client.predict("a", api_name="/vote")
        assert client.predict(*CHAT, api_name="/chat")[1][1]["role"] == "assistant"
    finally:
        set_read_only(False)
    assert _count(store_url) == 0

    monkeypatch.setenv("PLAYGROUND_DATABASE_URL", store_url)  # writable again: the same duel's vote goes in
    assert "vote #1 (a) saved" in client.predict("a", api_name="/vote")
    assert _count(store_url) == 1
