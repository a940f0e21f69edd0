"""A long job belongs to a client (issue 29, item 2), and memory goes back after work (item 6).

- A sweep posted to /gradio_api/call/tradeoff_sweep (or /queue/join) whose result stream nobody opens is
  cancelled once `job_listener_grace_s` has passed; one whose stream is read runs to the end.
- One client address runs at most `jobs_per_client` long jobs at a time, whatever session hashes it sends:
  the next POST is refused with 429 and a message naming the setting, through /call/ and /queue/join.
- The scheduler's loop, going idle after decoding, returns the freed heap to the OS (malloc_trim).
"""
from __future__ import annotations

import time
import uuid
from dataclasses import replace
from types import SimpleNamespace

import httpx
import pytest

import playground.runtime.job_owners as owners
from playground.settings.server import SERVE
from tests.conftest import engine_idle
from tests.test_app import serve, slow_steps

pytestmark = pytest.mark.app

SWEEP = ["a", "Typed (one per line)", "Tell me about cats.\nAnd dogs?", None, "λ", "0,1", "1", 8, 256, "", "", 0]
GRACE_S = 2.0


@pytest.fixture(scope="module")
def app(tiny_playground):
    demo, url = serve(tiny_playground)
    yield demo, url
    demo.close()


@pytest.fixture()
def steps(tiny_playground, monkeypatch):
    """Count decoding steps, slowed to 20 ms each so a sweep outlives the grace."""
    return slow_steps(tiny_playground, monkeypatch, 0.02)


def settings(monkeypatch, **over):
    monkeypatch.setattr(owners, "SERVE", replace(SERVE, job_listener_grace_s=GRACE_S, **over))


def wait_for(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s"
        time.sleep(0.1)


def no_long_jobs(demo) -> bool:
    return not any(owners.is_long_job(e.fn) and e.alive for e in list(demo._queue.event_ids_to_events.values()))


def post_call(url: str, name: str, data: list, session_hash: str | None = None) -> httpx.Response:
    body = {"data": data} | ({"session_hash": session_hash} if session_hash else {})
    return httpx.post(url + f"gradio_api/call/{name}", json=body, timeout=30)


def post_join(demo, url: str, name: str, data: list, session_hash: str) -> httpx.Response:
    fn_index = next(f._id for f in demo.fns.values() if f.api_name == name)
    body = {"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None, "trigger_id": None}
    return httpx.post(url + "gradio_api/queue/join", json=body, timeout=30)


def assert_unheard_job_cancelled(demo, url: str, pg, steps: list, name: str, data: list) -> None:
    """POST /call/<name> and never open its stream (GET /gradio_api/call/<name>/<event_id>): the watchdog cancels
    it, the queue and the engine go idle, and no decoding step follows."""
    posted = post_call(url, name, data)
    assert posted.status_code == 200, posted.text
    event_id = posted.json()["event_id"]
    wait_for(lambda: event_id in demo.job_watchdog.cancelled, f"the unheard {name} cancelled")
    wait_for(lambda: no_long_jobs(demo) and engine_idle(pg), "the queue and the engine idle again")
    time.sleep(1.0)  # a step under way when the stop came ends
    before = steps[0]
    time.sleep(1.0)
    assert steps[0] == before, f"still decoding after the cancel: {before} → {steps[0]} steps"


def test_a_sweep_nobody_listens_to_is_cancelled(app, tiny_playground, steps, monkeypatch):
    demo, url = app
    settings(monkeypatch)
    assert_unheard_job_cancelled(demo, url, tiny_playground, steps, "tradeoff_sweep", SWEEP)


def test_a_duel_nobody_listens_to_is_cancelled(app, tiny_playground, monkeypatch):
    demo, url = app
    settings(monkeypatch)
    steps = slow_steps(tiny_playground, monkeypatch, 0.2)  # a duel of the tiny model outlives the grace
    assert_unheard_job_cancelled(demo, url, tiny_playground, steps, "duel", ["Tell me about cats.", "a", 0.7])


def test_a_sweep_whose_stream_is_read_runs_to_the_end(app, steps, monkeypatch):
    demo, url = app
    settings(monkeypatch)
    posted = post_call(url, "tradeoff_sweep", SWEEP)
    event_id = posted.json()["event_id"]
    events = []
    with httpx.stream("GET", url + f"gradio_api/call/tradeoff_sweep/{event_id}", timeout=120) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                events.append(line.split(":", 1)[1].strip())
    assert events[-1] == "complete", events[-5:]
    assert event_id not in demo.job_watchdog.cancelled


def test_fresh_session_hashes_do_not_lift_the_per_client_cap_on_call(app, steps, monkeypatch):
    demo, url = app
    settings(monkeypatch, jobs_per_client=1)
    wait_for(lambda: no_long_jobs(demo), "earlier jobs gone")
    first = post_call(url, "tradeoff_sweep", SWEEP, session_hash=uuid.uuid4().hex)
    assert first.status_code == 200, first.text
    second = post_call(url, "tradeoff_sweep", SWEEP, session_hash=uuid.uuid4().hex)
    assert second.status_code == 429
    detail = second.json()["detail"]
    assert "jobs_per_client" in detail and "at most 1 long job" in detail and "127.0.0.1 has 1" in detail, detail
    other_kind = post_call(url, "probe", ["answers_question", "a", "0,1,2", 1.0, 8, 256, 0, 0],
                           session_hash=uuid.uuid4().hex)
    assert other_kind.status_code == 429, "the cap counts every kind of long job together"
    wait_for(lambda: no_long_jobs(demo), "the first (unheard) sweep cancelled")  # then the client may post again
    third = post_call(url, "tradeoff_sweep", SWEEP, session_hash=uuid.uuid4().hex)
    assert third.status_code == 200, third.text
    wait_for(lambda: no_long_jobs(demo), "the third (unheard) sweep cancelled")


def test_fresh_session_hashes_do_not_lift_the_per_client_cap_on_queue_join(app, steps, monkeypatch):
    demo, url = app
    settings(monkeypatch, jobs_per_client=1)
    wait_for(lambda: no_long_jobs(demo), "earlier jobs gone")
    first = post_join(demo, url, "tradeoff_sweep", SWEEP, uuid.uuid4().hex)
    assert first.status_code == 200, first.text
    second = post_join(demo, url, "tradeoff_sweep", SWEEP, uuid.uuid4().hex)
    assert second.status_code == 429
    assert "jobs_per_client" in second.json()["detail"]
    wait_for(lambda: first.json()["event_id"] in demo.job_watchdog.cancelled, "the joined sweep, never listened to, cancelled")
    wait_for(lambda: no_long_jobs(demo), "the queue free of long jobs")


def test_chat_is_not_a_long_job(app, monkeypatch):
    """Chat turns are not counted nor watched: several at once from one client are all accepted."""
    demo, url = app
    settings(monkeypatch, jobs_per_client=1)
    chat = ["Hi.", "a", 0.05, "logits", 0.7, 0.95, 4, 0]
    assert [post_call(url, "chat", chat).status_code for _ in range(3)] == [200, 200, 200]


def test_the_cap_counts_per_client_address():
    def event(host: str, name: str = "tradeoff_sweep"):
        return SimpleNamespace(fn=SimpleNamespace(api_name=name), alive=True,
                               request=SimpleNamespace(client=SimpleNamespace(host=host)))

    queue = SimpleNamespace(event_ids_to_events={"1": event("10.0.0.1"), "2": event("10.0.0.1", "chat"),
                                                 "3": event("10.0.0.2", "duel")})
    assert owners.cap_problem(queue, "10.0.0.1", cap=2) is None  # one long job (chat does not count)
    assert "10.0.0.1 has 1 queued or running" in owners.cap_problem(queue, "10.0.0.1", cap=1)
    assert owners.cap_problem(queue, "10.0.0.3", cap=1) is None
    assert owners.cap_problem(queue, "10.0.0.2", cap=1) is None  # a duel is not capped per address (only cancelled unheard)
    assert owners.cap_problem(queue, "10.0.0.1", cap=0) is None  # 0: no cap


def test_listeners_count_open_streams_per_session():
    book = owners.Listeners()
    t0 = time.monotonic()
    assert book.unheard_for("s", since=t0 - 3, now=t0) == pytest.approx(3)  # never opened since the post
    book.opened("s")
    book.opened("s")
    book.closed("s")
    assert book.unheard_for("s", since=t0 - 3) == 0.0  # one stream still open
    book.closed("s")
    assert book.unheard_for("s", since=t0 - 3) < 3  # counted from the close, not from the post


def test_the_scheduler_trims_the_heap_when_it_goes_idle(tiny_playground, monkeypatch):
    from playground.runtime import memory
    from tests.lm.requests import request
    from playground.lm.scheduler import Scheduler, SchedulerConfig

    trims = []
    monkeypatch.setattr(memory, "_libc", lambda: SimpleNamespace(malloc_trim=lambda pad: trims.append(pad) or 1))
    sched = Scheduler(tiny_playground.engine, SchedulerConfig(idle_trim_s=0.05))
    try:
        # count this scheduler's trims (sched.trims): threads left by earlier tests may trim through memory too
        time.sleep(0.3)
        assert sched.trims == 0, "nothing decoded yet: nothing to trim"
        for _ in sched.stream([request(tiny_playground.encode("Hi."), max_new_tokens=4, seed=0)]):
            pass
        wait_for(lambda: sched.trims == 1 and 0 in trims, "malloc_trim(0) once the loop is idle", 30)
        time.sleep(0.3)
        assert sched.trims == 1 and set(trims) == {0}, "idle again without work: no second trim"
    finally:
        sched.close()


def test_the_load_benchmark_states_the_memory_target():
    from benchmarks import load

    crowd = {"idle_before_mb": 1000.0, "peak_mb": 2800.0, "after_mb": 1200.0, "after_s": 30.0, "after_over_idle": 1.2}
    [line] = load.issue29_targets(crowd)
    assert line["target"].startswith("RSS 30 s after 32 clients ≤ 1.3× idle") and line["met"] is True
    assert load.issue29_targets({**crowd, "after_over_idle": 2.07})[0]["met"] is False  # the issue's 2,071 / 1,038 MB
    assert load.issue29_targets(None) == []
