"""Run a training job's commands one after another, and die with the app: `python -m playground.feedback.guard JSON`.

JSON is `{"nice": N, "phases": [[label, argv], ...]}`. The guard lowers its CPU priority by N (its commands
inherit it), also for its session's autogroup where Linux has them (`lower_priority`), then before each command the guard prints `[guard] phase i/n: label`; it stops at the
first command that fails and exits with its code. The app starts the guard in a new session (its own process
group) with a pipe on stdin that it never writes to: when the app exits or is SIGKILLed, the pipe reaches EOF and
the guard SIGKILLs the whole group, so no orphaned trainer keeps the CPU busy. Standard library only.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading


def _die_with_parent() -> None:
    while os.read(0, 4096):  # unbuffered: a thread blocked in sys.stdin would abort the interpreter's shutdown
        pass
    os.killpg(os.getpgrp(), signal.SIGKILL)  # EOF: the app closed its end of the pipe, or died


def lower_priority(nice: int, autogroup: str = "/proc/self/autogroup") -> None:
    """nice(N) for this process and its children, and the same nice for the session's autogroup.

    The guard runs in a new session; with `kernel.sched_autogroup_enabled` (the default on many Linux systems,
    also here) the scheduler first splits the CPU evenly between sessions, so a process nice only counts inside
    its own session: the app's decode loop got half the cores against a "nice 10" trainer and a 16-token chat
    turn took 21 s instead of 1 s. Setting the autogroup's nice (allowed for an unprivileged process) gives the
    trainer's session the weight of nice N against the app's."""
    os.nice(nice)
    try:
        with open(autogroup, "w") as fh:
            fh.write(str(nice))
    except OSError:  # no autogroups (kernel without them, some containers): the process nice is all there is
        pass


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print('usage: python -m playground.feedback.guard \'{"nice": 10, "phases": [["label", ["cmd", ...]], ...]}\'',
              file=sys.stderr)
        return 2
    job = json.loads(argv[0])
    phases = job["phases"]
    if job.get("nice"):
        lower_priority(int(job["nice"]))
    threading.Thread(target=_die_with_parent, daemon=True).start()
    for i, (label, cmd) in enumerate(phases, 1):
        print(f"[guard] phase {i}/{len(phases)}: {label}", flush=True)
        code = subprocess.call(cmd, stdin=subprocess.DEVNULL)
        if code != 0:
            print(f"[guard] {label} failed with exit code {code}", flush=True)
            return code if code > 0 else 1
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)  # at once: the stdin watcher may still be blocked in a read
