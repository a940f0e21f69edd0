"""Exports: a CSV that round-trips, and a TRL conversational preference dataset that `datasets` loads."""
from __future__ import annotations

import json

from playground.feedback.export import preference_rows, read_csv, write_csv, write_trl_jsonl
from playground.feedback.store import VoteStore
from tests.feedback.factory import make_vote


def _votes():
    return [
        make_vote("1", outcome="a"),
        make_vote("2", outcome="b", conversation=[]),
        make_vote("3", outcome="tie"),
        make_vote("4", outcome="both_bad"),
        make_vote("5", outcome="a", source="simulated"),
        make_vote("6", outcome="b", prompt='Quotes "x", commas, a\nnewline and ünïcode ✓',
                  answer_b="line 1\r\nline 2,\t\"quoted\""),
    ]


def test_trl_jsonl_is_conversational_and_drops_ties_both_bad_and_simulated(tmp_path):
    path = tmp_path / "prefs.jsonl"
    counts = write_trl_jsonl(_votes(), path)
    assert counts == {"written": 3, "tie": 1, "both_bad": 1, "simulated": 1}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    first = rows[0]
    assert first["prompt"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                               {"role": "user", "content": "Give me a tip for a rainy day."}]
    assert first["chosen"] == [{"role": "assistant", "content": "Read a book by the window."}]  # outcome a
    assert first["rejected"] == [{"role": "assistant", "content": "Stay in."}]
    assert rows[1]["chosen"] == [{"role": "assistant", "content": "Stay in."}]  # outcome b
    assert rows[1]["prompt"] == [{"role": "user", "content": "Give me a tip for a rainy day."}]
    assert preference_rows(_votes(), include_simulated=True)[1]["written"] == 4


def test_trl_jsonl_loads_with_datasets_and_trl_applies_a_chat_template(tmp_path):
    from datasets import load_dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from trl.data_utils import apply_chat_template, is_conversational

    path = tmp_path / "prefs.jsonl"
    write_trl_jsonl(_votes(), path)
    ds = load_dataset("json", data_files=str(path), split="train")
    assert ds.column_names == ["prompt", "chosen", "rejected"] and len(ds) == 3
    example = ds[0]
    assert is_conversational(example)  # TRL's test for the conversational preference format

    # A tiny word-level tokenizer with a chat template, enough for TRL to render each example.
    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "</s>": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="</s>")
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    rendered = apply_chat_template(example, tok)
    assert rendered["prompt"] == ("<|user|>Hi</s><|assistant|>Hello!</s>"
                                  "<|user|>Give me a tip for a rainy day.</s><|assistant|>")
    assert rendered["chosen"] == "Read a book by the window.</s>"
    assert rendered["rejected"] == "Stay in.</s>"


def test_csv_round_trips_stored_votes(tmp_path):
    with VoteStore(f"sqlite:///{tmp_path / 'votes.sqlite3'}") as store:
        for v in _votes():
            store.record(v)
        stored = store.votes()
    path = tmp_path / "votes.csv"
    assert write_csv(stored, path) == 6
    back = read_csv(path)
    assert back == stored
    assert back[5].answer_b == "line 1\r\nline 2,\t\"quoted\""


def test_csv_round_trips_unsaved_votes_without_an_id_column(tmp_path):
    votes = _votes()
    write_csv(votes, tmp_path / "v.csv")
    assert (tmp_path / "v.csv").read_text(encoding="utf-8").startswith("idempotency_key,")
    back = read_csv(tmp_path / "v.csv")
    assert back == votes
