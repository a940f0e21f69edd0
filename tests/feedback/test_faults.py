"""A vote store that cannot be written fails the vote with a clear message and never kills the process; the
acknowledged votes are all there once the fault is cleared (SQLite: immutable files, a full disk)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from playground.feedback.config import sqlite_url
from playground.feedback.store import VoteStore
from playground.feedback.vote import FeedbackUnavailable
from tests.feedback.factory import make_vote
from tests.feedback.test_bad_votes import CHAT, launched  # noqa: F401  (fixture)
from tests.fs_faults import fill, small_tmpfs


def _chattr_works(folder) -> str | None:
    """None when `chattr +i` works in `folder`, else why not."""
    if shutil.which("chattr") is None:
        return "no chattr command"
    probe = folder / "probe"
    probe.write_text("x")
    done = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, text=True)
    subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
    return None if done.returncode == 0 else f"chattr +i is not possible here ({done.stderr.strip()})"


@pytest.mark.parametrize("suffixes", [["-wal", "-shm"], [""]], ids=["wal_and_shm", "database_file"])
def test_immutable_store_files_fail_the_vote_not_the_process(tmp_path, suffixes):
    """With WAL, an immutable -wal/-shm made SQLite fault on its memory map: SIGBUS, exit 135, every session gone."""
    why = _chattr_works(tmp_path)
    if why:
        pytest.skip(why)
    db = str(tmp_path / "votes.sqlite3")
    run = subprocess.run([sys.executable, "-m", "tests.feedback.fault_writer", db, *suffixes], capture_output=True,
                         text=True, timeout=120)
    subprocess.run(["chattr", "-i", *(db + s for s in suffixes)], capture_output=True)  # whatever happened
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    steps = {s["step"]: s for s in map(json.loads, run.stdout.splitlines())}
    assert steps["first"]["ok"] and steps["read"]["value"] == 1
    refused = steps["while_immutable"]
    assert not refused["ok"] and "cannot be written (the file is read-only or immutable)" in refused["error"]
    assert "Votes already saved are kept" in refused["error"]
    assert steps["after"]["ok"] and steps["keys"]["value"] == ["acknowledged-1", "acknowledged-2"]


def test_a_full_disk_fails_the_vote_clearly_and_keeps_the_acknowledged_ones(tmp_path):
    with small_tmpfs(tmp_path / "small", "1m") as disk:
        store = VoteStore(sqlite_url(disk / "votes.sqlite3"))
        try:
            acknowledged = [store.record(make_vote(f"k{i}"))[0] for i in range(3)]
            filler = fill(disk)
            with pytest.raises(FeedbackUnavailable, match=r"the disk holding the vote database \(.*\) is full\. Votes "
                                                          "already saved are kept"):
                store.record(make_vote("refused", prompt="x" * 4000))
            assert store.count() == 3  # reading goes on
            filler.unlink()
            store.record(make_vote("after"))
            assert [v.idempotency_key for v in store.votes()] == ["k0", "k1", "k2", "after"] and len(acknowledged) == 3
        finally:
            store.close()


def test_the_chat_answers_while_a_full_disk_refuses_votes(launched, tmp_path, monkeypatch):  # noqa: F811
    from gradio_client.exceptions import AppError

    with small_tmpfs(tmp_path / "small", "1m") as disk:
        url = sqlite_url(disk / "votes.sqlite3")
        monkeypatch.setenv("PLAYGROUND_DATABASE_URL", url)
        client = launched()()
        client.predict("Which is better?", "a", 0.7, api_name="/duel")
        assert "vote #1 (a) saved" in client.predict("a", api_name="/vote")
        filler = fill(disk)
        client.predict("And this one?", "a", 0.7, api_name="/duel")
        with pytest.raises(AppError, match="the disk holding the vote database .* is full"):
            client.predict("b", api_name="/vote")
        assert client.predict(*CHAT, api_name="/chat")[1][1]["role"] == "assistant"  # the chat still answers
        filler.unlink()
        assert "vote #2 (b) saved" in client.predict("b", api_name="/vote")  # the same duel's vote goes in now
        with VoteStore(url) as store:
            assert store.count() == 2
