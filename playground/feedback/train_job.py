"""One training job's process and files, for `playground/feedback/training.py`: the trainer's commands, the guarded
process group they run in (`playground/feedback/guard.py`), the progress read from their log, and the fsyncs that make
a finished adapter survive a crash.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from playground.settings.paths import REPO_ROOT
from playground.settings.votes import TrainingSettings

TRAIN_SCRIPT = REPO_ROOT / "models" / "train_adapter.py"
STEP = re.compile(r"train: step (\d+)/(\d+)")  # models/train_adapter.py logs one per DPO step
PHASE = re.compile(r"\[guard\] phase (\d+)/(\d+)")  # guard.py, before each command
CLOCK = re.compile(r"^\[\d\d:\d\d:\d\d\] ")  # the trainer's log lines start with the time

Phases = list[tuple[str, list[str], float]]  # (label, argv, share of the progress bar)


@dataclass(frozen=True)
class TrainRequest:
    name: str
    beta: float
    steps: int
    seed: int = 0


@dataclass(frozen=True)
class JobPaths:
    """Where one job works: `staging/run` (train_adapter's work dir) and `staging/adapter` (its export)."""

    staging: Path
    base: str  # --base: the loaded base model's name, which the card records and startup checks
    limit: int  # --limit: the number of vote pairs counted before the start

    @property
    def run_dir(self) -> Path:
        return self.staging / "run"

    @property
    def out_dir(self) -> Path:
        return self.staging / "adapter"


def vote_commands(req: TrainRequest, paths: JobPaths, settings: TrainingSettings) -> Phases:
    """models/train_adapter.py pairs, train, export on the votes (the database comes from the environment)."""
    args = ["--judge", "votes", "--name", req.name, "--work-dir", str(paths.run_dir), "--out", str(paths.out_dir),
            "--base", paths.base, "--beta", repr(req.beta), "--steps", str(req.steps), "--seed", str(req.seed),
            "--limit", str(paths.limit)]
    return [(step, [sys.executable, str(TRAIN_SCRIPT), step, *args], share) for step, share in settings.phases]


class LogProgress:
    """The share of the job done, from its log lines: phases weighted by their shares, DPO steps within a phase."""

    def __init__(self, shares: Sequence[float]) -> None:
        self.shares, self.total = list(shares), sum(shares) or 1.0
        self.phase, self.within = 0, 0.0

    def update(self, line: str) -> tuple[float, str]:
        """(fraction done, below 1 until the job is finished; the line without its time stamp)."""
        if m := PHASE.search(line):
            self.phase, self.within = int(m[1]) - 1, 0.0
        elif m := STEP.search(line):
            self.within = int(m[1]) / max(int(m[2]), 1)
        current = self.shares[self.phase] if self.phase < len(self.shares) else 0.0
        done = sum(self.shares[:self.phase]) + current * self.within
        return min(done / self.total, 0.99), CLOCK.sub("", line)[-160:]


def spawn(phases: Phases, nice: int, env: Mapping[str, str]) -> subprocess.Popen:
    """Start the guard (a new session: its own process group) running the phases; stdout and stderr as text lines.
    Its stdin is a pipe the app never writes: when the app exits or dies it closes and the guard kills the group."""
    job = json.dumps({"nice": nice, "phases": [[label, argv] for label, argv, _ in phases]})
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    full_env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen([sys.executable, "-m", "playground.feedback.guard", job], cwd=REPO_ROOT, env=full_env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            encoding="utf-8", errors="replace", bufsize=1, start_new_session=True)


def kill_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the job's process group, SIGKILL it `grace_s` later (the group id is the guard's pid)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass


def fsync_tree(folder: Path) -> None:
    """Every file under `folder`, then the folder itself, on disk."""
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    """A folder's entries (a rename into it) on disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
