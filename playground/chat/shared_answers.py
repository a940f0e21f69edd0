"""The answers behind a share link, kept on the server so that whoever opens the link sees them at once.

A share link carries the prompt and settings (`playground.chat.share`) plus `answers=<id>`: the id is the first
`ID_CHARS` hex digits of the sha256 of the stored record (the turn's prompt, adapter, settings and each
column's text, token ids and readout), so the same turn always gets the same id and a link stays short.
Records are JSON files in `<data dir>/shared/` (they survive a restart), written atomically (temporary file,
fsync, rename); at most `max_items` are kept, the least recently written are removed beyond that, and a record
over `max_bytes` is not stored. `get` refuses an id that is not exactly `ID_CHARS` lowercase hex digits
(never a path), and a file that does not read back as a record is treated as missing.

Opening the link shows the stored answers without decoding; Replay decodes them again and `compare` says
whether the new tokens are the stored ones, column by column.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from playground.settings.request import COLUMNS
from playground.settings.validation import InputError

if TYPE_CHECKING:
    from playground.chat.conversation import Conversation, Row

ID_CHARS = 24
ID_FORM = re.compile(f"[0-9a-f]{{{ID_CHARS}}}")
MAX_ITEMS = 2000
MAX_BYTES = 256 * 1024
FOLDER = "shared"


def check_id(value: object) -> str:
    """The `answers` parameter of a share link: exactly ID_CHARS lowercase hex digits, else InputError (not echoed)."""
    if isinstance(value, str) and ID_FORM.fullmatch(value):
        return value
    n = len(value) if isinstance(value, str) else 0
    raise InputError(f"answers must be {ID_CHARS} lowercase hex digits (0-9, a-f), as Copy link writes it; "
                     f"got {n} characters")


def row_record(row: Row, query: str) -> dict[str, Any]:
    """What is stored for one finished turn: its link query, prompt, adapter, and per column the text, token
    ids, shown pieces (with the highlight), readout and warning."""
    answers = {}
    for c in COLUMNS:
        cell = row.cells[c]
        answers[c] = {"text": cell.text, "tokens": [int(t) for t in cell.tokens],
                      "marks": [[t, bool(s)] for t, s in cell.marks], "parts": [list(p) for p in cell.parts],
                      "warning": cell.warning, "truncated": bool(cell.truncated), "cut": cell.cut_reason}
    return {"query": query, "prompt": row.turn.prompt, "adapter": row.turn.adapter, "answers": answers}


def _valid(record: object) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("answers"), dict):
        return False
    if not isinstance(record.get("prompt"), str) or not isinstance(record.get("adapter"), str):
        return False
    for c in COLUMNS:
        a = record["answers"].get(c)
        if not isinstance(a, dict) or not isinstance(a.get("text"), str) or not isinstance(a.get("tokens"), list):
            return False
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in a["tokens"]):
            return False
        marks, parts = a.get("marks", []), a.get("parts", [])
        if not all(isinstance(m, list) and len(m) == 2 and isinstance(m[0], str) for m in marks):
            return False
        if not all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in parts):
            return False
        if not isinstance(a.get("warning", ""), str):
            return False
    return True


class SharedAnswers:
    """The bounded store of shared answers in `root` (see the module docstring)."""

    def __init__(self, root: Path | str, max_items: int = MAX_ITEMS, max_bytes: int = MAX_BYTES) -> None:
        self.root, self.max_items, self.max_bytes = Path(root), int(max_items), int(max_bytes)
        self._lock = threading.Lock()

    @classmethod
    def in_data_dir(cls, data_dir: Path | str | None = None) -> "SharedAnswers":
        from playground.settings.paths import default_data_dir

        return cls(Path(data_dir) if data_dir is not None else default_data_dir() / FOLDER)

    def put(self, record: dict[str, Any]) -> str:
        """Store `record` (idempotent: the same record gets the same id); its id. OSError when the disk refuses."""
        body = json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
        if len(body) > self.max_bytes:
            raise InputError(f"answers: {len(body)} bytes to store; the limit is {self.max_bytes}")
        key = hashlib.sha256(body).hexdigest()[:ID_CHARS]
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            path = self.root / f"{key}.json"
            if path.is_file():
                os.utime(path)  # shared again: kept like a new one
            else:
                fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".json")
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(body)
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, path)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            self._trim()
        return key

    def _trim(self) -> None:
        files = sorted(self.root.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        for old in files[:max(0, len(files) - self.max_items)]:
            old.unlink(missing_ok=True)

    def get(self, key: object) -> dict[str, Any] | None:
        """The stored record, or None when there is none (expired, never stored, unreadable); InputError for a bad id."""
        path = self.root / f"{check_id(key)}.json"
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        if len(raw) > self.max_bytes:
            return None
        try:
            record = json.loads(raw)
        except ValueError:
            return None
        return record if _valid(record) else None

    def __len__(self) -> int:
        return len(list(self.root.glob("*.json"))) if self.root.is_dir() else 0


def shown_conversation(record: dict[str, Any], turn) -> Conversation:
    """The stored answers as a one-turn conversation for the transcript (finished cells, nothing to continue)."""
    from playground.chat.conversation import Cell, Conversation, Row

    cells = {}
    for c in COLUMNS:
        a = record["answers"][c]
        cells[c] = Cell(text=a["text"], tokens=list(a["tokens"]), marks=[(t, bool(s)) for t, s in a.get("marks", [])],
                        parts=[(x, y) for x, y in a.get("parts", [])], warning=a.get("warning", ""), done=True,
                        truncated=a.get("cut") == "token limit", stopped=a.get("cut") in ("stopped", "time limit reached"),
                        timed_out=a.get("cut") == "time limit reached")
    return Conversation([Row(copy.deepcopy(turn), cells)])


def compare(record: dict[str, Any], conv: Conversation) -> dict[str, int | None]:
    """Per column: None when the replayed tokens are the stored ones, else the index of the first different token."""
    if not conv.rows:
        return {c: 0 for c in COLUMNS}
    row = conv.rows[-1]
    out: dict[str, int | None] = {}
    for c in COLUMNS:
        want, got = record["answers"][c]["tokens"], [int(t) for t in row.cells[c].tokens]
        if want == got:
            out[c] = None
        else:
            out[c] = next((i for i, (x, y) in enumerate(zip(want, got)) if x != y), min(len(want), len(got)))
    return out
