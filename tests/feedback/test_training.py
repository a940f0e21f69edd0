"""The app's training job (playground/feedback/training.py) with a fake trainer (tests/feedback/fake_trainer.py):
progress from the log, one job per process, cancel kills the whole process group within a second, failures say
why, refusals name the parameter, the adapter is saved atomically with its card and loaded into the Playground;
and one real training (models/train_adapter.py) on the tiny model."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from playground.feedback.config import sqlite_url
from playground.feedback.store import VoteStore
from playground.feedback.training import TrainingError, VoteTraining, card_summary
from playground.feedback.vote import FeedbackUnavailable
from playground.settings.request import DecodeSettings
from playground.settings.votes import TrainingSettings
from tests.conftest import make_lora
from tests.feedback.factory import make_vote

FAKE = Path(__file__).with_name("fake_trainer.py")
REPO = Path(__file__).resolve().parents[2]
N_VOTES = 20  # decisive votes with two different answers; 15 of them agree with the on_topic judge


def fake_commands(lora: Path, delay: float = 0.0, fail: bool = False, pid_file: Path | None = None):
    def commands(req, paths):
        argv = [sys.executable, str(FAKE), "--out", str(paths.out_dir), "--lora", str(lora), "--base", paths.base,
                "--beta", repr(req.beta), "--steps", str(req.steps), "--limit", str(paths.limit), "--delay", str(delay)]
        argv += ["--fail"] if fail else []
        argv += ["--pid-file", str(pid_file)] if pid_file else []
        return [("train", argv, 1.0)]
    return commands


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.fixture(scope="module")
def votes_url(tmp_path_factory) -> str:
    url = sqlite_url(tmp_path_factory.mktemp("votes") / "votes.sqlite3")
    with VoteStore(url) as store:
        for i in range(N_VOTES):
            store.record(make_vote(f"k{i}", outcome="a" if i < 15 else "b", answer_a=f"A{i}", answer_b=f"B{i}",
                                   judge_scores={"on_topic": [0.9, 0.1]}))
        store.record(make_vote("tie", outcome="tie", answer_a="A", answer_b="B"))
        store.record(make_vote("same", outcome="a", answer_a="same", answer_b="same"))
    return url


@pytest.fixture(scope="module")
def pg(tiny_model_dir):
    """A Playground of its own (the session's tiny_playground must keep its two adapters)."""
    from playground.lm.loading import load_base
    from playground.service import Playground

    return Playground(load_base(str(tiny_model_dir)), [])


@pytest.fixture(scope="module")
def lora(tiny_model_dir, tmp_path_factory) -> Path:
    return make_lora(tiny_model_dir, tmp_path_factory.mktemp("lora") / "src", seed=3)


@pytest.fixture
def make(pg, votes_url, lora, tmp_path):
    """make(delay=, fail=, pid_file=, votes=, **settings) → a VoteTraining with the fake trainer on the test votes;
    its jobs are cancelled afterwards."""
    made = []

    def build(votes=None, delay: float = 0.0, fail: bool = False, pid_file: Path | None = None, **over):
        settings = TrainingSettings(**{"allowed": True, "adapters_dir": tmp_path / "adapters", "min_votes": 5, **over})
        t = VoteTraining(pg, votes or VoteStore(votes_url).votes, settings, commands=fake_commands(lora, delay, fail, pid_file))
        made.append(t)
        return t

    yield build
    for t in made:
        t.cancel()
        t.wait(5)


def test_a_job_reports_progress_then_saves_and_loads_the_adapter(make, pg, tmp_path):
    t = make(delay=0.05)
    st = t.start("mine", 0.2, 10)
    assert st.running and "20 votes" in st.message
    seen = []
    while st.running:
        st = t.wait(0.05)
        seen.append(st.fraction)
    assert st.state == "done", st.message
    assert seen == sorted(seen) and seen[-1] == 1.0
    card = json.loads((tmp_path / "adapters" / "mine" / "card.json").read_text())
    assert (card["votes_used"], card["beta"], card["steps"]) == (N_VOTES, 0.2, 10)
    assert card["judge_agreement"]["on_topic"]["agree"] == 15 and card["judge_agreement"]["on_topic"]["n"] == N_VOTES
    assert st.card == card and "20 votes" in card_summary(card) and "on_topic 15/20 = 75%" in card_summary(card)
    assert [p.name for p in (tmp_path / "adapters").iterdir()] == ["mine"]  # the staging folder is gone
    info = pg.adapters["mine"]
    assert info.beta_train == 0.2 and info.judge == "on_topic" and "20 votes" in info.description
    req = pg.request(pg.encode("Hi"), "mine", DecodeSettings(lam=1.0, max_new_tokens=3))
    assert len(list(pg.stream([req]))[-1][0].tokens) == 3  # the engine decodes with it at once


def test_a_second_job_is_refused_while_one_runs(make):
    slow, other = make(delay=0.2), make()
    slow.start("slow-one", 0.1, 50)  # 50 × 0.2 s
    for t in (slow, other):  # one job per process, whichever manager asks
        with pytest.raises(TrainingError, match="a training job is already running \\(adapter 'slow-one'\\); one job at a time"):
            t.start("second", 0.1, 5)
    assert slow.cancel() and slow.wait(2).state == "cancelled"
    assert other.start("second", 0.1, 1).running and other.wait(30).state == "done"


def test_cancel_stops_the_whole_process_group_within_a_second(make, tmp_path):
    pid_file = tmp_path / "pids"
    t = make(delay=0.2, pid_file=pid_file)
    t.start("cancelled-one", 0.1, 100)
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text() and t.status().fraction > 0):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    pids = [int(x) for x in pid_file.read_text().split()]
    assert all(alive(p) for p in pids)
    start = time.monotonic()
    assert t.cancel()
    st = t.wait(1.0)
    assert st.state == "cancelled" and time.monotonic() - start < 1.0, st
    assert "cancelled by the user" in st.message and "nothing was saved" in st.message
    while any(alive(p) for p in pids) and time.monotonic() - start < 1.0:
        time.sleep(0.02)
    assert not any(alive(p) for p in pids), "a process of the job outlived the cancel"
    assert not (tmp_path / "adapters" / "cancelled-one").exists()
    assert not list((tmp_path / "adapters").glob(".staging-*"))


def test_only_the_owner_may_cancel(make):
    t = make(delay=0.2)
    t.start("owned", 0.1, 50, owner="session-1")
    with pytest.raises(TrainingError, match="cancel: the running job was started by another visitor"):
        t.cancel(owner="session-2")
    assert t.cancel(owner="session-1") and t.wait(2).state == "cancelled"
    assert not t.cancel(owner="session-1")  # nothing runs any more


def test_a_failing_trainer_says_why_and_leaves_nothing(make, tmp_path):
    t = make(fail=True)
    t.start("broken", 0.1, 2)
    st = t.wait(30)
    assert st.state == "failed" and "exit code 3" in st.message and "boom" in st.message, st.message
    assert not (tmp_path / "adapters" / "broken").exists() and not list((tmp_path / "adapters").glob(".staging-*"))


def test_a_job_over_the_time_limit_is_stopped(make):
    t = make(delay=0.2, timeout_s=1.0)
    t.start("too-long", 0.1, 50)
    st = t.wait(5)
    assert st.state == "failed" and "over the time limit of 1 s" in st.message, st.message


@pytest.mark.parametrize("over, args, message", [
    ({"allowed": False}, ("x1", 0.1, 5), "training is off on this server: the operator enables it with "
                                          "PLAYGROUND_ALLOW_TRAINING=1"),
    ({}, ("", 0.1, 5), "name must be 1–40 lowercase letters"),
    ({}, ("My Votes", 0.1, 5), "name must be 1–40 lowercase letters"),
    ({}, (".hidden", 0.1, 5), "name must be"),
    ({}, ("x" * 41, 0.1, 5), "name must be"),
    ({}, ("upbeat-b0.1", 0.1, 5), "name: an adapter called 'upbeat-b0.1' exists already"),
    ({}, ("x1", 0, 5), r"beta \(β\) must be in \[0.01, 10\]; got 0"),
    ({}, ("x1", "much", 5), r"beta \(β\) must be a number"),
    ({}, ("x1", 0.1, 0), r"steps must be in \[1, 300\]; got 0"),
    ({}, ("x1", 0.1, 2.5), "steps must be a whole number"),
    ({"min_votes": 50}, ("x1", 0.1, 5), "votes: 20 usable votes \\(decisive, two different answers; 22 stored, 21 decisive\\); "
                                        "training needs at least 50"),
])
def test_refusals_name_the_parameter(make, tmp_path, over, args, message):
    t = make(**over)
    with pytest.raises(TrainingError, match=message):
        t.start(*args)
    assert t.status().state == "idle"
    assert not (tmp_path / "adapters").exists() or not list((tmp_path / "adapters").iterdir())


def test_a_taken_name_in_the_data_dir_and_a_store_that_is_down_are_refused(make, tmp_path):
    (tmp_path / "adapters" / "old").mkdir(parents=True)
    with pytest.raises(TrainingError, match="name: an adapter called 'old' exists already"):
        make().start("old", 0.1, 5)

    def down():
        raise FeedbackUnavailable("Votes cannot be read right now: the vote database is unavailable")

    with pytest.raises(TrainingError, match="votes: Votes cannot be read right now"):
        make(votes=down).start("new", 0.1, 5)


def test_the_job_dies_with_the_app(lora, tmp_path):
    """SIGKILL the process that started the guard: the guard sees its stdin close and kills its whole group."""
    pid_file = tmp_path / "pids"
    job = json.dumps({"nice": 0, "phases": [["train", [sys.executable, str(FAKE), "--out", str(tmp_path / "o"), "--lora",
                                                        str(lora), "--base", "b", "--beta", "0.1", "--steps", "100",
                                                        "--limit", "5", "--delay", "0.2", "--pid-file", str(pid_file)]]]})
    parent = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-m', 'playground.feedback.guard', sys.argv[1]], "
              "stdin=subprocess.PIPE, start_new_session=True); time.sleep(300)")
    app = subprocess.Popen([sys.executable, "-c", parent, job], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    pids = [int(x) for x in pid_file.read_text().split()]
    os.kill(app.pid, signal.SIGKILL)
    app.wait(5)
    start = time.monotonic()
    while any(alive(p) for p in pids) and time.monotonic() - start < 1.0:
        time.sleep(0.02)
    assert not any(alive(p) for p in pids), "the trainer outlived the app"


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="this kernel has no scheduler autogroups")
def test_the_trainer_session_yields_the_cpu_to_the_app():
    """The guard starts a new session: with autogroups on, the CPU is first split evenly between sessions, so a
    process nice alone left the app's decode loop half the cores (a 16-token chat turn took 21 s instead of 1 s
    while an adapter trained). The trainer's session gets the nice too; its commands see both."""
    show = "import os; print('niceness', os.nice(0)); print(open('/proc/self/autogroup').read().strip())"
    job = json.dumps({"nice": 10, "phases": [["show", [sys.executable, "-c", show]]]})
    guard = subprocess.Popen([sys.executable, "-m", "playground.feedback.guard", job], cwd=REPO, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # stdin open: the guard's "app is alive"
    out = guard.stdout.read()
    assert guard.wait(60) == 0, out
    guard.stdin.close()
    assert "niceness 10" in out
    assert out.strip().endswith("nice 10"), out  # "/autogroup-N nice 10": the session's weight


@pytest.mark.slow  # 20 s of real DPO; the trainer's contract runs by default on the fake trainer
def test_real_training_on_the_tiny_model(pg, votes_url, tmp_path):
    """models/train_adapter.py pairs, train, export on the tiny model (≈ 20 s here): the adapter loads and decodes."""
    settings = TrainingSettings(allowed=True, adapters_dir=tmp_path / "adapters", min_votes=5)
    t = VoteTraining(pg, VoteStore(votes_url).votes, settings, env={"PLAYGROUND_DATABASE_URL": votes_url})
    t.start("real-votes", 0.1, 2)
    st = t.wait(600)
    assert st.state == "done", "\n".join(st.log)
    assert any("train: step 2/2" in line for line in st.log)
    card = st.card
    assert (card["votes_used"], card["beta"], card["steps"], card["trained_on"]) == (N_VOTES, 0.1, 2, "votes")
    assert card["judge_agreement"]["on_topic"]["agree"] == 15
    assert {p.name for p in (tmp_path / "adapters" / "real-votes").iterdir()} >= {"adapter_config.json",
                                                                                    "adapter_model.safetensors", "card.json"}
    req = pg.request(pg.encode("Hi"), "real-votes", DecodeSettings(lam=1.0, max_new_tokens=3))
    assert len(list(pg.stream([req]))[-1][0].tokens) == 3
