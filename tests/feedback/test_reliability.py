"""Votes through the launched app (tests/feedback/app_server.py, its own process) on SQLite and the real
PostgreSQL server: no acknowledged vote is lost or duplicated when the server is SIGKILLed mid-way and
restarted on the same database, and 32 concurrent voters × 20 votes leave exactly 640 rows
(that one is marked slow: ≈ 5 min here; the default suite runs 32 voters × 2 votes).

A client counts a vote as acknowledged when /vote answered "vote #N (...) saved": the app answers only after
the vote's transaction committed.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from playground.feedback.store import VoteStore
from tests.test_app import free_port

pytestmark = pytest.mark.app

REPO = Path(__file__).resolve().parents[2]
OUTCOMES = ("a", "b", "tie", "both_bad")
SAVED = re.compile(r"vote #(\d+) \((\w+)\) saved")
START_TIMEOUT_S = 240
KILL_AFTER = 24  # acknowledged votes before the SIGKILL


@contextmanager
def app_process(db_url: str, model_dir: Path, adapters: dict, log: Path, extra_env: dict | None = None):
    """The app serving on a free port; yields (process, base URL); killed on exit."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PLAYGROUND_DATABASE_URL": db_url,
           "PLAYGROUND_VOTE_SALT": "reliability-salt", "PLAYGROUND_DUEL_MAX_NEW_TOKENS": "2",
           "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1", **(extra_env or {})}
    args = [sys.executable, "-m", "tests.feedback.app_server", str(port), str(model_dir), *(f"{k}={v}" for k, v in adapters.items())]
    with open(log, "a") as err:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        ready = threading.Event()
        threading.Thread(target=lambda: ready.set() if proc.stdout.readline().strip() == "ready" else None,
                         daemon=True).start()
        if not ready.wait(START_TIMEOUT_S):
            raise AssertionError(f"the app did not start: {log.read_text()[-2000:]}")
        yield proc, f"http://127.0.0.1:{port}/"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def call(fn, *args, **kwargs):
    """A client call, retried while the bounded queue answers "full" (nothing ran; retrying is safe)."""
    from gradio_client.utils import QueueError

    for _ in range(600):
        try:
            return fn(*args, **kwargs)
        except QueueError:
            time.sleep(0.05)
    raise AssertionError("queue stayed full")


def voter(base_url: str, who: int, n: int, acked: list, failures: list, stop: threading.Event) -> None:
    """n duels, each followed by a vote; every acknowledged vote is appended to `acked`."""
    from gradio_client import Client

    try:
        client = call(Client, base_url, verbose=False)
    except Exception as e:  # noqa: BLE001
        failures.append((who, repr(e)))
        return
    for i in range(n):
        if stop.is_set():
            return
        prompt, outcome = f"Voter {who} asks question {i}.", OUTCOMES[(who + i) % 4]
        try:
            shown = call(client.predict, prompt, "a", 0.7, api_name="/duel")
            reply = call(client.predict, outcome, api_name="/vote")
        except Exception as e:  # noqa: BLE001 — a killed server ends the voter
            failures.append((who, repr(e)))
            return
        m = SAVED.search(reply)
        assert m and m.group(2) == outcome, reply
        acked.append({"id": int(m.group(1)), "prompt": prompt, "outcome": outcome, "a": shown[0], "b": shown[1]})


def run_voters(base_url: str, voters: int, n: int, stop: threading.Event) -> tuple[list, list, list[threading.Thread]]:
    acked: list = []
    failures: list = []
    threads = [threading.Thread(target=voter, args=(base_url, k, n, acked, failures, stop), daemon=True)
               for k in range(voters)]
    for t in threads:
        t.start()
    return acked, failures, threads


def check_stored_once(db_url: str, acked: list) -> list:
    """Every acknowledged vote is stored exactly once, as the client saw it; returns all stored votes."""
    with VoteStore(db_url) as store:
        votes = store.votes()
        if store.dialect == "sqlite":
            with store.engine.connect() as conn:
                assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    by_id = {v.id: v for v in votes}
    prompts = Counter(v.prompt for v in votes)
    assert len({a["id"] for a in acked}) == len(acked)
    for a in acked:
        v = by_id.get(a["id"])
        assert v is not None, f"acknowledged vote #{a['id']} is missing"
        assert (v.prompt, v.outcome, v.answer_a, v.answer_b) == (a["prompt"], a["outcome"], a["a"], a["b"])
        assert prompts[a["prompt"]] == 1, f"{a['prompt']!r} stored {prompts[a['prompt']]} times"
    assert len({v.idempotency_key for v in votes}) == len(votes)
    return votes


def test_no_acknowledged_vote_is_lost_when_the_server_is_killed(store_url, tiny_model_dir, tiny_adapters, tmp_path):
    log = tmp_path / "server.log"
    stop = threading.Event()
    with app_process(store_url, tiny_model_dir, tiny_adapters, log) as (proc, url):
        acked, failures, threads = run_voters(url, voters=8, n=10_000, stop=stop)
        deadline = time.monotonic() + 180
        while len(acked) < KILL_AFTER and time.monotonic() < deadline and not failures:
            time.sleep(0.05)
        assert len(acked) >= KILL_AFTER, f"{len(acked)} acknowledged; {failures[:3]}; {log.read_text()[-1500:]}"
        proc.send_signal(signal.SIGKILL)  # mid-way: other duels and votes are in flight
        proc.wait(30)
        stop.set()
        for t in threads:
            t.join(60)
    assert proc.returncode == -signal.SIGKILL
    assert len(failures) == 8  # every voter saw the server go away
    before = check_stored_once(store_url, acked)
    assert len(before) <= len(acked) + 8  # at most the votes in flight were committed without an answer

    from gradio_client import Client
    from gradio_client.exceptions import AppError

    with app_process(store_url, tiny_model_dir, tiny_adapters, log) as (_proc, url):  # same database
        client = Client(url, verbose=False)
        with pytest.raises(AppError, match="no duel to vote on"):  # pending duels died with the process
            client.predict("a", api_name="/vote")
        shown = client.predict("After the restart.", "a", 0.7, api_name="/duel")
        m = SAVED.search(client.predict("b", api_name="/vote"))
        acked.append({"id": int(m.group(1)), "prompt": "After the restart.", "outcome": "b", "a": shown[0], "b": shown[1]})
    after = check_stored_once(store_url, acked)
    assert len(after) == len(before) + 1


@pytest.mark.parametrize("voters, each", [
    pytest.param(32, 20, marks=pytest.mark.slow, id="32x20"),  # ≈ 5 min on the shared 2-core CPU (client side mostly)
    pytest.param(32, 2, id="32x2"),  # the same 32 concurrent sessions, fewer votes each: the default suite
])
def test_concurrent_voters_store_exactly_every_vote(store_url, tiny_model_dir, tiny_adapters, tmp_path, voters, each):
    log = tmp_path / "server.log"
    with app_process(store_url, tiny_model_dir, tiny_adapters, log) as (_proc, url):
        acked, failures, threads = run_voters(url, voters=voters, n=each, stop=threading.Event())
        for t in threads:
            t.join(900)
    assert not failures, failures[:3]
    assert len(acked) == voters * each  # 640 for 32 × 20
    votes = check_stored_once(store_url, acked)
    assert len(votes) == voters * each
    assert sum(Counter(v.outcome for v in votes).values()) == voters * each
    assert Counter(v.outcome for v in votes) == Counter(OUTCOMES[(k + i) % 4] for k in range(voters) for i in range(each))
