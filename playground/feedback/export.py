"""Votes out of the store: a CSV of every field, and a TRL preference dataset for DPO training.

The TRL file is JSON Lines in TRL's conversational preference format (one object per decisive vote):

    {"prompt":   [...earlier conversation..., {"role": "user", "content": prompt}],
     "chosen":   [{"role": "assistant", "content": preferred answer}],
     "rejected": [{"role": "assistant", "content": other answer}]}

which `datasets.load_dataset("json", data_files=path)` loads and `trl.DPOTrainer` accepts (it applies the
tokenizer's chat template itself). Ties and "both_bad" votes carry no preference and are dropped; simulated
votes are left out unless asked for.
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from playground.feedback.vote import StoredVote, Vote, to_plain

CSV_JSON_FIELDS = ("conversation", "settings_a", "settings_b", "judge_scores")
CSV_INT_FIELDS = ("id", "tokens_a", "tokens_b")


def csv_columns(votes: Sequence[Vote]) -> list[str]:
    """Column order: id first when the votes come from the store, then the Vote fields."""
    names = [f.name for f in fields(Vote)]
    return (["id"] + names) if votes and all(isinstance(v, StoredVote) for v in votes) else names


def write_csv(votes: Sequence[Vote], path: str | Path) -> int:
    """Write every field of every vote (JSON fields as JSON text, times as ISO 8601); returns the row count."""
    columns = csv_columns(votes)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for v in votes:
            row = to_plain(v)
            for name in CSV_JSON_FIELDS:
                row[name] = json.dumps(row[name], ensure_ascii=False)
            row["created_at"] = v.created_at.isoformat() if v.created_at else ""
            writer.writerow({c: row[c] for c in columns})
    return len(votes)


def read_csv(path: str | Path) -> list[Vote]:
    """Votes back from `write_csv` (StoredVote when the file has an id column)."""
    out: list[Vote] = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            data: dict[str, Any] = dict(row)
            for name in CSV_JSON_FIELDS:
                data[name] = json.loads(data[name])
            for name in CSV_INT_FIELDS:
                if name in data:
                    data[name] = int(data[name])
            data["created_at"] = datetime.fromisoformat(data["created_at"]) if data["created_at"] else None
            out.append(StoredVote(**data) if "id" in data else Vote(**data))
    return out


def preference_rows(votes: Iterable[Vote], include_simulated: bool = False
                    ) -> tuple[list[dict[str, list[dict[str, str]]]], dict[str, int]]:
    """TRL conversational preference rows of the decisive votes, and counts: written, tie, both_bad,
    simulated (left out unless `include_simulated`)."""
    rows: list[dict[str, list[dict[str, str]]]] = []
    counts: Counter[str] = Counter({"written": 0, "tie": 0, "both_bad": 0, "simulated": 0})
    for v in votes:
        if v.source == "simulated" and not include_simulated:
            counts["simulated"] += 1
            continue
        if v.outcome not in ("a", "b"):
            counts[v.outcome] += 1
            continue
        chosen, rejected = (v.answer_a, v.answer_b) if v.outcome == "a" else (v.answer_b, v.answer_a)
        prompt = [{"role": m["role"], "content": m["content"]} for m in v.conversation]
        rows.append({"prompt": prompt + [{"role": "user", "content": v.prompt}],
                     "chosen": [{"role": "assistant", "content": chosen}],
                     "rejected": [{"role": "assistant", "content": rejected}]})
        counts["written"] += 1
    return rows, dict(counts)


def vote_pairs(votes: Iterable[Vote]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Preference pairs for `models/train_adapter.py --judge votes`: one per decisive vote, every source kept.

    Each pair: prompt, conversation (earlier turns), chosen, rejected, vote_id, source, adapter, and the λ of
    the chosen and rejected answer. Dropped and counted: ties, both_bad, and decisive votes whose two answers
    are the same text (DPO learns nothing from them). Counts also give the votes per source and base model."""
    pairs: list[dict[str, Any]] = []
    counts: Counter[str] = Counter({"votes": 0, "decisive": 0, "tie": 0, "both_bad": 0, "identical_answers": 0})
    sources: Counter[str] = Counter()
    bases: Counter[str] = Counter()
    for v in votes:
        counts["votes"] += 1
        sources[v.source] += 1
        bases[v.base_model] += 1
        if v.outcome not in ("a", "b"):
            counts[v.outcome] += 1
            continue
        counts["decisive"] += 1
        if v.answer_a == v.answer_b:
            counts["identical_answers"] += 1
            continue
        a_won = v.outcome == "a"
        chosen, rejected = (v.answer_a, v.answer_b) if a_won else (v.answer_b, v.answer_a)
        s_chosen, s_rejected = (v.settings_a, v.settings_b) if a_won else (v.settings_b, v.settings_a)
        pairs.append({"prompt": v.prompt, "conversation": [{"role": m["role"], "content": m["content"]} for m in v.conversation],
                      "chosen": chosen, "rejected": rejected, "vote_id": getattr(v, "id", None), "source": v.source,
                      "adapter": v.adapter, "chosen_lambda": s_chosen.get("lambda"),
                      "rejected_lambda": s_rejected.get("lambda")})
    return pairs, {**counts, "pairs": len(pairs), "sources": dict(sorted(sources.items())),
                   "base_models": dict(sorted(bases.items()))}


def write_trl_jsonl(votes: Iterable[Vote], path: str | Path, include_simulated: bool = False) -> dict[str, int]:
    """Write the TRL preference dataset (JSON Lines); returns the counts of `preference_rows`."""
    rows, counts = preference_rows(votes, include_simulated)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return counts
