"""The continuous-batching scheduler: staggered arrivals, cancellation, caps, fairness; tokens exactly as alone."""
from __future__ import annotations

import threading
import time

import pytest

from playground.lm.request import Request
from tests.lm.requests import request
from playground.lm.scheduler import Scheduler, SchedulerConfig
from playground.settings.validation import InputError


@pytest.fixture(scope="module")
def reqs(tiny_playground) -> list[Request]:
    prompts = [tiny_playground.encode(p) for p in ("Hi.", "Tell me about cats.", "What should I cook tonight, given rain all day?")]
    adapters = ["a", None, "b"]
    return [request(prompts[i % 3], adapter=adapters[i % 3], lam=(0.5, 1.0, 2.0)[i % 3 - 1], temperature=(0.0, 0.9)[i % 2],
                    top_p=(1.0, 0.9)[(i // 2) % 2], max_new_tokens=6 + i % 5, seed=i) for i in range(12)]


@pytest.fixture(scope="module")
def alone(tiny_playground, reqs) -> list[list[int]]:
    engine = tiny_playground.engine.with_path("batch")  # decoded here, one request at a time, no scheduler
    return [engine.generate([r])[0].tokens for r in reqs]


def drain(it, log: list, name: str, pause: float = 0.0):
    last = []
    for last in it:
        log.append((name, sum(len(s.tokens) for s in last)))
        time.sleep(pause)
    return last


def test_staggered_arrivals_match_decoding_alone(tiny_playground, reqs, alone):
    """Submissions join a running batch at different steps and leave at different steps; tokens are unchanged."""
    sched = Scheduler(tiny_playground.engine, SchedulerConfig())
    try:
        results, log, threads = {}, [], []

        def run(k: int, chunk: list[int]) -> None:
            results[k] = drain(sched.stream([reqs[i] for i in chunk]), log, f"s{k}")

        chunks = [[0, 1, 2], [3], [4, 5, 6, 7], [8], [9, 10, 11]]
        for k, chunk in enumerate(chunks):
            threads.append(threading.Thread(target=run, args=(k, chunk)))
            threads[-1].start()
            while not any(name == f"s{k}" for name, _ in log):  # the next one arrives once this one is decoding
                time.sleep(0.001)
        for t in threads:
            t.join(timeout=60)
        for k, chunk in enumerate(chunks):
            assert [s.tokens for s in results[k]] == [alone[i] for i in chunk]
            assert all(s.done for s in results[k])
    finally:
        sched.close()


def test_cancelled_submission_leaves_without_disturbing_others(tiny_playground, reqs, alone):
    sched = Scheduler(tiny_playground.engine, SchedulerConfig())
    try:
        box: dict = {}  # stops itself after two tokens (checked by the loop right after each step)
        cancel = box["s"] = sched.submit([reqs[2], reqs[5]], should_stop=lambda: "s" in box and len(box["s"].streams[0].tokens) >= 2)
        for got in sched.stream([reqs[0], reqs[4]]):
            pass
        assert [s.tokens for s in got] == [alone[0], alone[4]]
        assert cancel.closed and not all(s.done for s in cancel.streams)
        assert len(cancel.streams[0].tokens) == 2 < len(alone[2]) and cancel.streams[0].tokens == alone[2][:2]
        # a consumer that stops reading cancels its submission (Gradio closes the generator)
        it = sched.stream([reqs[7]])
        next(it)
        it.close()
        deadline = time.time() + 10
        while sched.active and time.time() < deadline:
            time.sleep(0.01)
        assert not sched.active
    finally:
        sched.close()


def test_deadline_ends_a_submission(tiny_playground, reqs):
    sched = Scheduler(tiny_playground.engine, SchedulerConfig())
    try:
        out = list(sched.stream([reqs[1]], deadline=time.monotonic() - 1))
        assert not out or not out[-1][0].done
    finally:
        sched.close()


def test_busy_and_per_client_caps(tiny_playground, reqs):
    engine = tiny_playground.engine
    sched = Scheduler(engine, SchedulerConfig(max_waiting=1, max_per_client=1))
    try:
        with engine.lock:  # the loop cannot prefill while we hold the weights: submissions pile up
            first = sched.submit([reqs[0]], client="x")
            while sched.waiting:  # the loop took the first one and now waits for the lock
                time.sleep(0.001)
            with pytest.raises(InputError, match="too many requests from this client"):
                sched.submit([reqs[1]], client="x")
            second = sched.submit([reqs[1]], client="y")
            with pytest.raises(InputError, match=r"busy: 1 requests are waiting; try again in \d+ s"):
                sched.submit([reqs[2]], client="z")
        for sub in (first, second):
            while not sub.closed:
                time.sleep(0.01)
            assert all(s.done for s in sub.streams)
    finally:
        sched.close()


def test_bulk_submission_is_chunked_and_interactive_turns_go_first(tiny_playground, reqs, alone):
    """A sweep-sized submission joins in chunks within its row share; a turn submitted meanwhile starts at once."""
    cfg = SchedulerConfig(max_rows=12, bulk_rows=6, bulk_chunk=2, bulk_threshold=4)
    sched = Scheduler(tiny_playground.engine, cfg)
    try:
        sweep = [reqs[i % 12] for i in range(24)]
        log: list = []
        bulk_result = {}
        t = threading.Thread(target=lambda: bulk_result.setdefault("s", drain(sched.stream(sweep), log, "bulk", 0.0)))
        t.start()
        while not log:
            time.sleep(0.001)
        turn = drain(sched.stream([reqs[0], reqs[3], reqs[6]]), log, "turn")
        t.join(timeout=120)
        assert [s.tokens for s in turn] == [alone[0], alone[3], alone[6]]
        assert [s.tokens for s in bulk_result["s"]] == [alone[i % 12] for i in range(24)]
        turn_done = max(i for i, (name, _) in enumerate(log) if name == "turn")
        assert turn_done < max(i for i, (name, _) in enumerate(log) if name == "bulk")  # the turn did not wait for the sweep
    finally:
        sched.close()


def test_engine_stream_routes_through_the_scheduler(tiny_playground, reqs, alone):
    engine = tiny_playground.engine
    assert engine.continuous and engine.uses_fast_decoder
    got = engine.generate(reqs[:4])
    assert engine.scheduler.running
    assert [s.tokens for s in got] == alone[:4]


def test_a_chat_turn_joins_beside_long_sweep_rows_that_hold_the_sweeps_kv_share(tiny_playground, reqs, alone):
    """KV slots are as wide as a row's width class, not as the longest row: a sweep of long answers (its rows in
    the 512-column pool) holds its whole share of a 3 MB budget, and a chat turn (short rows, 128-column pool)
    still joins at the next step and finishes first. With one width for all rows, the turn's slots would
    be 512 columns too (4 MB in all) and it would wait for the sweep."""
    cfg = SchedulerConfig(bulk_threshold=4, bulk_chunk=8, max_kv_mb=3, chat_kv_reserve_mb=1, kv_widths=(128, 512))
    sched = Scheduler(tiny_playground.engine, cfg)
    try:
        prompt = reqs[1].prompt_ids
        sweep = [request(prompt, None, 0.0, temperature=1.0, max_new_tokens=500 - len(prompt), seed=k) for k in range(8)]
        log: list = []
        sub = sched.submit(sweep)
        while not sub.admitted:
            time.sleep(0.001)
        kv = sched.batch.decoder.kv
        assert [p for p, _ in kv.where] == [1] * 8 and kv.nbytes == 2 * 2**20  # 8 slots × 512 columns
        turn = drain(sched.stream([reqs[0], reqs[3], reqs[6]]), log, "turn")
        assert not sub.closed  # the sweep still decodes
        assert [s.tokens for s in turn] == [alone[0], alone[3], alone[6]]
        assert {p for p, _ in kv.where} == {1}  # the turn's rows left the 128-column pool
        assert kv.bytes_for({0: (5, 128)}) <= 3 * 2**20 < kv.pools[1].bytes_for(8 + 5, 512)
    finally:
        sched.close()
