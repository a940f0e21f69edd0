"""`python -m playground votes report|export` on a temporary vote database, and a duel + vote cast through the
launched app with gradio_client (the Feedback tab on the tiny playground)."""
from __future__ import annotations

import json

import pytest

from playground.__main__ import main
from playground.feedback.config import sqlite_url
from playground.feedback.export import read_csv
from playground.feedback.store import VoteStore
from tests.feedback.factory import make_vote, settings
from tests.test_app import serve


@pytest.fixture
def db(tmp_path, monkeypatch):
    url = sqlite_url(tmp_path / "votes.sqlite3")
    monkeypatch.setenv("PLAYGROUND_DATABASE_URL", url)
    monkeypatch.setenv("PLAYGROUND_VOTE_SALT", "cli-salt")
    with VoteStore(url) as store:
        for i in range(6):
            outcome = ("a", "b", "tie", "a", "both_bad", "b")[i]
            store.record(make_vote(f"k{i}", outcome=outcome, settings_a=settings(1.0), settings_b=settings(0.0),
                                   judge_scores={"upbeat": [0.5, 0.1 * i]}))
    return url


def test_report_prints_tables_and_json(db, capsys):
    assert main(["votes", "report", "--boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "6 votes (4 decisive)" in out and "upbeat" in out and "Bradley–Terry" in out and "λ=1, T=0.7" in out
    assert main(["votes", "report", "--json", "--boot", "50"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["counts"]["votes"] == 6
    assert rep["judge_agreement"]["upbeat"]["n"] == 3  # the 4th decisive vote is a judge tie (0.5 = 0.5)


def test_export_csv_and_trl(db, tmp_path, capsys):
    out_csv, out_trl = tmp_path / "v.csv", tmp_path / "v.jsonl"
    assert main(["votes", "export", "--format", "csv", "--out", str(out_csv)]) == 0
    assert len(read_csv(out_csv)) == 6
    assert main(["votes", "export", "--format", "trl", "--out", str(out_trl)]) == 0
    rows = [json.loads(line) for line in out_trl.read_text().splitlines()]
    assert len(rows) == 4 and set(rows[0]) == {"prompt", "chosen", "rejected"}
    assert "wrote 4 preference pairs" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["votes", "export", "--format", "trl", "--out", "x.csv"], "out must end in .jsonl"),
    (["votes", "export", "--format", "csv", "--out", "/no/such/dir/v.csv"], "does not exist"),
    (["votes", "report", "--source", "robots"], "unknown source 'robots'"),
])
def test_bad_input_is_one_error_line(db, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1


def test_unavailable_database_is_one_error_line(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PLAYGROUND_DATABASE_URL", sqlite_url(blocker / "votes.sqlite3"))
    monkeypatch.setenv("PLAYGROUND_VOTE_SALT", "x")
    assert main(["votes", "report"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Votes cannot be") and len(err.splitlines()) == 1


# --- the app ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app_client(tiny_playground, tmp_path_factory):
    from gradio_client import Client

    data = tmp_path_factory.mktemp("votes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLAYGROUND_DATABASE_URL", sqlite_url(data / "votes.sqlite3"))
        mp.setenv("PLAYGROUND_VOTE_SALT", "app-salt")
        demo, url = serve(tiny_playground)
        try:
            yield Client(url, verbose=False), data
        finally:
            demo.close()


def test_a_duel_and_a_vote_through_the_app(app_client):
    from gradio_client.exceptions import AppError

    client, data = app_client
    with pytest.raises(AppError, match="no duel to vote on"):
        client.predict("a", api_name="/vote")
    out = client.predict("Tell me about cats.", "a", 0.7, api_name="/duel")
    answer_a, answer_b = out[0], out[1]
    assert isinstance(answer_a, str) and isinstance(answer_b, str)
    revealed = client.predict("b", api_name="/vote")
    assert "vote #1 (b) saved" in revealed and "| **A** |" in revealed and "on_topic" in revealed
    again = client.predict("b", api_name="/vote")
    assert "vote #1 (b) saved" in again  # a retried vote is the same vote
    with pytest.raises(AppError, match="already voted"):
        client.predict("a", api_name="/vote")
    other = type(client)(client.src, verbose=False)  # another browser session cannot vote on this duel
    with pytest.raises(AppError, match="no duel to vote on"):
        other.predict("a", api_name="/vote")
    with pytest.raises(AppError, match="prompt"):
        client.predict("   ", "a", 0.7, api_name="/duel")
    with VoteStore(sqlite_url(data / "votes.sqlite3")) as store:
        [vote] = store.votes()
    assert vote.answer_a == answer_a and vote.answer_b == answer_b and vote.outcome == "b"
    report = client.predict(api_name="/votes_report")
    assert "1 votes" in report[0]
    assert str(report[5]).endswith("votes.csv") and str(report[6]).endswith("votes_trl.jsonl")
    assert report[7] is not None  # the Bradley–Terry figure


def test_prefer_a_column_through_the_app(app_client):
    """/chat then /prefer: two column votes, a double click stores nothing new, no turn → the error names it."""
    from gradio_client.exceptions import AppError

    client, data = app_client
    fresh = type(client)(client.src, verbose=False)  # its own session: no conversation yet
    with pytest.raises(AppError, match="conversation: no finished turn to vote on yet"):
        fresh.predict("tuned", api_name="/prefer")
    out = fresh.predict("Tell me about dogs.", "a", 0.05, "logits", 0.7, 0.95, 8, 0, api_name="/chat")
    html, result = fresh.predict("tuned", api_name="/prefer")
    assert result["column"] == "tuned" and len(result["votes"]) == 2 and "✓ Preferred" in html
    _html, again = fresh.predict("tuned", api_name="/prefer")  # a double click: the same votes
    assert again["votes"] == result["votes"]
    with pytest.raises(AppError, match="already preferred 'tuned'"):
        fresh.predict("base", api_name="/prefer")
    with pytest.raises(AppError, match="column"):
        fresh.predict("best", api_name="/prefer")
    with VoteStore(sqlite_url(data / "votes.sqlite3")) as store:
        votes = [v for v in store.votes() if v.source == "column"]
    assert [v.id for v in votes] == result["votes"]
    assert {(v.settings_a["column"], v.settings_b["column"], v.outcome) for v in votes} == {
        ("base", "tuned", "b"), ("realigned", "tuned", "b")}
    tuned_answer = out[2][-1]["content"]
    assert all(tuned_answer.startswith(v.answer_b) for v in votes)  # the API shows the answer + its readout line
