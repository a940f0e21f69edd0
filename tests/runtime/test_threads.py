"""Torch work outside the decode loop leaves no OpenMP pool behind (playground/runtime/threads.py).

Every thread that runs a parallel torch op gets its own pool of OpenMP workers, and once the process holds
more of them than the machine has cores, libgomp stops spinning between parallel regions: the decode loop in
the app ran a third slower while an idle handler thread kept the pool its judge call had made.
"""
from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from playground.runtime.threads import releases_pool, release_openmp_pool


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def matmul() -> None:
    a = torch.randn(256, 256)
    (a @ a).sum()


def threads_while_a_worker_idles(work) -> int:
    """OS threads of this process while a helper thread that ran `work` sits idle (the helper counted)."""
    ran, leave = threading.Event(), threading.Event()

    def helper():
        work()
        ran.set()
        leave.wait()

    t = threading.Thread(target=helper)
    t.start()
    ran.wait(30)
    time.sleep(0.2)  # workers a pause frees are gone by now
    count = os_threads()
    leave.set()
    t.join()
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or torch.get_num_threads() < 2,
                    reason="needs /proc and at least 2 torch threads (an OpenMP pool with workers)")
def test_torch_work_outside_the_loop_leaves_no_openmp_pool_behind():
    release_openmp_pool()  # this test's own thread holds none either
    time.sleep(0.2)
    before = os_threads()
    kept = threads_while_a_worker_idles(matmul)
    released = threads_while_a_worker_idles(releases_pool(matmul))
    assert kept >= before + 2  # the idle helper and at least one OpenMP worker of its pool
    assert released == before + 1  # only the idle helper itself


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or torch.get_num_threads() < 2,
                    reason="needs /proc and at least 2 torch threads (an OpenMP pool with workers)")
def test_a_judge_called_from_a_handler_thread_leaves_no_pool_behind():
    """What the chat does after every turn (and the duel, "Prefer this one", the Feedback report): score answers
    with an embedding judge in a Gradio worker thread, which then idles."""
    from playground.judges.judges import get_judge

    judge = get_judge("on_topic")
    score = lambda: judge.score(["Tips for a rainy day?"] * 3, ["Take an umbrella."] * 3)  # noqa: E731
    score()  # once here first: the tokenizer's own (Rust) thread pool starts, and stays for the process
    time.sleep(0.2)
    before = os_threads()
    assert threads_while_a_worker_idles(score) == before + 1
