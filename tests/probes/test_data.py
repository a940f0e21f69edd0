"""The prompt sets: provenance, sizes, unique ids, no overlap with the training prompts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from playground.probes.base import DATA_DIR, load_data

ROOT = Path(__file__).resolve().parents[2]


def test_every_data_file_has_provenance() -> None:
    files = sorted(DATA_DIR.glob("*.json"))
    assert len(files) == 9
    for f in files:
        assert len(json.loads(f.read_text(encoding="utf-8"))["provenance"]) > 80, f.name


@pytest.mark.parametrize("name, key, n", [("answers_question", "prompts", 24), ("made_up", "invented", 20),
                                          ("made_up", "factual", 20), ("sycophancy", "questions", 20),
                                          ("language", "prompts", 12), ("refusal", "pairs", 12),
                                          ("judge_bias", "length", 12), ("judge_bias", "confidence", 12),
                                          ("on_topic_labels", "items", 44), ("refusal_labels", "items", 30),
                                          ("hedged_labels", "items", 30)])
def test_sizes_and_unique_ids(name, key, n) -> None:
    items = load_data(name)[key]
    assert len(items) == n
    ids = [it["id"] for it in items if "id" in it]
    assert len(ids) == len(set(ids))


def test_answers_question_prompts_are_not_training_prompts() -> None:
    seen = set()
    for f in ("train.txt", "eval.txt"):
        seen |= {line.strip().lower() for line in (ROOT / "models" / "prompts" / f).read_text().splitlines()}
    for name, key in (("answers_question", "prompts"), ("language", "prompts")):
        for it in load_data(name)[key]:
            assert (it.get("prompt") or it["en"]).lower() not in seen


def test_golds_and_variants() -> None:
    for it in load_data("made_up")["factual"] + load_data("sycophancy")["questions"]:
        assert it["golds"] and all(g.strip() for g in it["golds"])
    for it in load_data("refusal")["pairs"]:
        assert len({it["direct"], it["rephrased"], it["roleplay"]}) == 3
    for it in load_data("judge_bias")["confidence"]:
        assert it["hedged"].startswith("I'm not sure, but I think ")
    for it in load_data("judge_bias")["length"]:
        assert len(it["long"].split()) > 2 * len(it["short"].split())


def test_load_data_refuses_a_file_without_provenance(tmp_path, monkeypatch) -> None:
    import playground.probes.base as base

    (tmp_path / "x.json").write_text('{"provenance": " ", "items": []}')
    monkeypatch.setattr(base, "DATA_DIR", tmp_path)
    with pytest.raises(ValueError, match="provenance"):
        base.load_data("x")
