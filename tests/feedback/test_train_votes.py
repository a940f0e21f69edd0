"""`models/train_adapter.py --judge votes`: the pairs come from a vote database (decisive votes only, ties and
both_bad dropped and counted), the sample step is skipped; no training here."""
from __future__ import annotations

import json
from types import SimpleNamespace

from models import train_adapter
from models.simulate_votes import ai_pairs
from playground.feedback.config import sqlite_url
from playground.feedback.store import VoteStore
from tests.feedback.factory import make_vote, settings


def _db(tmp_path):
    url = sqlite_url(tmp_path / "votes.sqlite3")
    with VoteStore(url) as store:
        store.record(make_vote("k1", outcome="a", answer_a="A1", answer_b="B1", settings_a=settings(2.0),
                               settings_b=settings(0.0), judge_scores={"concise": [0.1, 0.9]}))
        store.record(make_vote("k2", outcome="b", prompt="Second?", answer_a="A2", answer_b="B2", conversation=[],
                               source="simulated", judge_scores={"concise": [0.2, 0.5]}))
        store.record(make_vote("k3", outcome="tie", answer_a="A3", answer_b="B3"))
        store.record(make_vote("k4", outcome="both_bad", answer_a="A4", answer_b="B4"))
        store.record(make_vote("k5", outcome="a", answer_a="same", answer_b="same"))  # nothing to learn
        store.record(make_vote("k6", outcome="a", answer_a="A6", answer_b="B6", judge_scores={"concise": [0.3, 0.3]}))
    return url


def test_votes_become_pairs_and_the_sample_step_is_skipped(tmp_path, capsys):
    url = _db(tmp_path)
    work = tmp_path / "run"
    argv = ["--name", "from-votes", "--work-dir", str(work), "--judge", "votes", "--votes-url", url]
    assert train_adapter.main(["sample", *argv]) == 0
    assert not (work / "responses.jsonl").exists() and "nothing to sample" in capsys.readouterr().out
    assert train_adapter.main(["pairs", *argv]) == 0
    pairs = [json.loads(line) for line in (work / "pairs.jsonl").read_text().splitlines()]
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("Give me a tip for a rainy day.", "A1", "B1"), ("Second?", "B2", "A2"),
        ("Give me a tip for a rainy day.", "A6", "B6")]
    assert pairs[0]["conversation"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert (pairs[0]["chosen_lambda"], pairs[0]["rejected_lambda"]) == (2.0, 0.0)
    assert pairs[1]["conversation"] == [] and pairs[1]["source"] == "simulated"
    stats = json.loads((work / "run.json").read_text())["pairs_stats"]
    expected = {"votes": 6, "decisive": 4, "tie": 1, "both_bad": 1, "identical_answers": 1, "pairs": 3,
                "sources": {"duel": 5, "simulated": 1}}
    assert {k: stats[k] for k in expected} == expected
    run = json.loads((work / "run.json").read_text())
    assert run["pairs_source"].startswith("votes: sqlite:///")
    assert "3 pairs from 6 votes" in capsys.readouterr().out


def test_pair_dataset_keeps_the_earlier_conversation():
    pairs = [{"prompt": "Q", "conversation": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
              "chosen": "good", "rejected": "bad"}]
    row = train_adapter.pair_dataset(pairs, SimpleNamespace(chat_template="{{ x }}"))[0]
    assert [m["content"] for m in row["prompt"]] == ["Hi", "Yo", "Q"]
    assert row["chosen"] == [{"role": "assistant", "content": "good"}]


def test_a_votes_run_is_evaluated_by_held_out_judges(tmp_path):
    args = train_adapter.build_parser().parse_args(["evaluate", "--name", "x", "--work-dir", str(tmp_path),
                                                    "--judge", "votes"])
    run = train_adapter.Run(args)
    assert (run.eval_judge_name(), run.other_judge_name()) == ("on_topic", "concise")


def test_ai_pairs_relabel_the_same_answer_pairs(tmp_path):
    with VoteStore(_db(tmp_path)) as store:
        votes = store.votes()
    rows, counts = ai_pairs(votes, "concise")
    # decisive: k1 (the judge flips it), k2 (agrees), k5 (no concise score), k6 (a judge tie)
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("B1", "A1"), ("B2", "A2")]
    assert counts == {"written": 2, "judge_ties": 1, "agree_with_votes": 1, "disagree_with_votes": 1,
                      "not_decisive": 2, "unscored": 1}
