"""A writer killed with SIGKILL mid-way loses no acknowledged vote and duplicates none (both backends)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from sqlalchemy import text

from playground.feedback.store import VoteStore
from tests.feedback.factory import make_vote

REPO = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).with_name("crash_writer.py")
KILL_AFTER = 60  # acknowledged votes before the kill


def test_every_acknowledged_vote_survives_a_sigkill_exactly_once(store_url):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(WRITER), store_url, "crash", "1000000"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acknowledged: list[str] = []
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        while len(acknowledged) < KILL_AFTER:
            line = proc.stdout.readline()
            assert line, f"writer died early: {proc.stderr.read() if proc.stderr else ''}"
            acknowledged.append(line.strip())
        proc.send_signal(signal.SIGKILL)  # in the middle of the next vote's transaction, most likely
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    acknowledged += rest.split()  # printed (so committed) before the kill

    with VoteStore(store_url) as store:  # reopening recovers (SQLite replays its WAL)
        keys = Counter(v.idempotency_key for v in store.votes())
        missing = [k for k in acknowledged if keys[k] != 1]
        assert not missing, f"acknowledged but not stored exactly once: {missing[:5]}"
        assert len(keys) >= len(acknowledged)  # at most the one vote committed but not yet printed extra
        assert all(n == 1 for n in keys.values())
        assert store.record(make_vote("after-the-crash"))[1] is True  # the database still takes votes
        if store.dialect == "sqlite":
            with store.engine.connect() as conn:
                assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
