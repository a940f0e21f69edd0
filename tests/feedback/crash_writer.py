"""Writes votes in a loop and prints each idempotency key once `record` has returned (committed).

Run by test_crash_safety.py, which kills it with SIGKILL mid-way:
    python tests/feedback/crash_writer.py URL PREFIX COUNT
"""
from __future__ import annotations

import sys

from playground.feedback.store import VoteStore
from tests.feedback.factory import make_vote


def main() -> None:
    url, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = VoteStore(url)
    print("ready", flush=True)
    for i in range(count):
        key = f"{prefix}-{i}"
        store.record(make_vote(key, answer_a=f"answer {i} " * 20, outcome="ab"[i % 2]))
        print(key, flush=True)  # acknowledged: the transaction has committed


if __name__ == "__main__":
    main()
