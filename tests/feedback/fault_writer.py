"""Run by tests/feedback/test_faults.py in a child process (a SIGBUS kills only it): votes into an SQLite store
while its files are made immutable (chattr +i), then writable again. Prints one JSON line per step.

    python -m tests.feedback.fault_writer DB_PATH TARGETS...   (TARGETS: file suffixes, e.g. -wal -shm "")
"""
from __future__ import annotations

import json
import subprocess
import sys

from playground.feedback.config import sqlite_url
from playground.feedback.store import VoteStore
from playground.feedback.vote import FeedbackUnavailable
from tests.feedback.factory import make_vote


def step(name: str, call) -> None:
    try:
        out = {"step": name, "ok": True, "value": call()}
    except FeedbackUnavailable as err:
        out = {"step": name, "ok": False, "error": str(err)}
    print(json.dumps(out), flush=True)


def chattr(flag: str, paths: list[str]) -> None:
    for path in paths:
        subprocess.run(["chattr", flag, path], check=True, capture_output=True)


def main(db: str, suffixes: list[str]) -> None:
    url = sqlite_url(db)
    store = VoteStore(url)
    step("first", lambda: store.record(make_vote("acknowledged-1"))[0])
    with VoteStore(url) as reader:  # a second connection, as the app's pool and a CLI reader hold
        step("read", reader.count)
    paths = [db + s for s in suffixes]
    subprocess.run(["touch", *paths], check=True)  # -wal/-shm as WAL would leave them
    chattr("+i", paths)
    try:
        step("while_immutable", lambda: store.record(make_vote("refused"))[0])
        step("read_while_immutable", store.count)
        step("reopen_while_immutable", lambda: VoteStore(url).count())

        def open_read_close() -> int:  # closing the last connection checkpointed through the map in WAL mode
            other = VoteStore(url)
            try:
                return other.count()
            finally:
                other.close()

        step("close_while_immutable", open_read_close)
    finally:
        chattr("-i", paths)
    step("after", lambda: store.record(make_vote("acknowledged-2"))[0])
    step("keys", lambda: [v.idempotency_key for v in store.votes()])
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
