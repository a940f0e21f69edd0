"""A side-by-side conversation exported as JSON and as Markdown, with every setting behind every answer.

`conversation_record(conv, adapters, base_model)` is the JSON form: per turn the question and, per column, the
answer's text and the settings it was decoded with (λ, nominal β = β_train/λ, β_train, mode, temperature, top-p,
max new tokens, seed — the column's own seed when it was regenerated alone — and the weight path that ran),
the adapter's name, folder and full sha256 of its weights file, and how the answer ended. `conversation_markdown`
renders the same record for reading. Plain data, no gradio; the chat tab writes both files on "Export".
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

from playground.chat.conversation import TITLES, Conversation
from playground.settings.request import COLUMNS, nominal_beta
from playground.chat.share import weights_sha256

FORMAT = "controllability-playground/conversation/v1"


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None  # JSON has no infinity: β of λ = 0 is null


def _ended(cell) -> str:
    if not cell.done:
        return "streaming"
    return cell.cut_reason or "end of turn"


def conversation_record(conv: Conversation, adapters: Mapping, base_model: str = "") -> dict[str, Any]:
    """The conversation as one JSON-ready dict (see the module docstring)."""
    turns = []
    for i, row in enumerate(conv.rows):
        t = row.turn
        info = adapters.get(t.adapter)
        path = str(getattr(info, "path", "") or "")
        answers = {}
        for c in COLUMNS:
            cell, d = row.cells[c], row.column_decode(c)
            shown = dict(cell.answer.settings) if cell.answer is not None else {}
            answers[c] = {
                "title": TITLES[c], "text": cell.text, "tokens": len(cell.tokens), "ended": _ended(cell),
                "settings": {
                    "lambda": float(d.lam), "kl_strength": _finite(nominal_beta(t.beta_train, d.lam)),
                    "beta_train": float(t.beta_train), "mode": d.mode, "temperature": float(d.temperature),
                    "top_p": float(d.top_p), "max_new_tokens": int(d.max_new_tokens), "seed": int(d.seed),
                    "weights": shown.get("weights", ""), "resumed_at": list(cell.resumed_at),
                    "adapter": None if c == "base" else t.adapter},
                "readout": cell.readout}
        turns.append({"turn": i + 1, "prompt": t.prompt, "adapter": t.adapter, "adapter_path": path,
                      "adapter_sha256": weights_sha256(path or None), "kl_strength_set": row.kl_strength,
                      "preferred": row.preferred, "answers": answers})
    return {"format": FORMAT, "base_model": base_model, "columns": list(COLUMNS), "turns": turns}


def conversation_json(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, indent=1)


def _fence(text: str) -> str:
    """`text` in a fenced block whose fence is longer than any backtick run inside it (answers are plain text)."""
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def conversation_markdown(record: dict[str, Any]) -> str:
    """The record for reading: per turn the question, then each column's answer and its settings line."""
    out = ["# Controllability Playground conversation", "", f"Base model: `{record['base_model'] or 'unknown'}`", ""]
    for turn in record["turns"]:
        out += [f"## Turn {turn['turn']}", "", "**You:**", "", _fence(turn["prompt"]), "",
                f"Adapter `{turn['adapter']}` · sha256 `{turn['adapter_sha256'] or 'unknown'}` · "
                f"path `{turn['adapter_path'] or 'unknown'}`", ""]
        for c in record["columns"]:
            a = turn["answers"][c]
            s = a["settings"]
            beta = "∞" if s["kl_strength"] is None else f"{s['kl_strength']:g}"
            mark = " (preferred)" if turn["preferred"] == c else ""
            out += [f"### {a['title']}{mark}", "", _fence(a["text"]), "",
                    f"λ {s['lambda']:g} · β {beta} (β_train {s['beta_train']:g}) · mode {s['mode']} · "
                    f"T {s['temperature']:g} · top-p {s['top_p']:g} · max tokens {s['max_new_tokens']} · "
                    f"seed {s['seed']} · weights {s['weights'] or 'unknown'} · {a['tokens']} tokens, "
                    f"ended: {a['ended']}", ""]
    return "\n".join(out)
