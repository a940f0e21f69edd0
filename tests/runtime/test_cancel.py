"""Every long job stops within about a second of `job.cancel()` (what a closed tab or a Cancel also triggers)."""
from __future__ import annotations

import time

import pytest

from tests.test_app import app_url, client, slow_steps  # noqa: F401  (fixtures)


@pytest.fixture()
def steps(tiny_playground, monkeypatch):
    """Count decoding steps, slowed to 20 ms each so a job outlives the cancel."""
    return slow_steps(tiny_playground, monkeypatch, 0.02)


def cancelled_job_stops(job, counter) -> None:
    deadline = time.monotonic() + 30
    while counter[0] < 5:  # the job is running
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    job.cancel()
    time.sleep(1.5)  # job_stale_s + a step
    before = counter[0]
    time.sleep(1.0)
    assert counter[0] == before, f"still decoding after cancel: {before} → {counter[0]} steps"


def test_sweep_stops_on_cancel(client, steps):
    job = client.submit("a", "Typed (one per line)", "Tell me about cats.\nAnd dogs?", None, "λ", "0,1", "1", 8, 256,
                        "", "", 0, api_name="/tradeoff_sweep")
    cancelled_job_stops(job, steps)


def test_token_view_stops_on_cancel(client, steps):
    job = client.submit("a", "Tell me about cats.", 2.0, 1.0, 0, 256, api_name="/token_view")
    cancelled_job_stops(job, steps)


def test_diffusion_sampling_stops_on_cancel(client, monkeypatch):
    from playground.diffusion import guidance as G

    calls = [0]
    eps = G.guided_eps

    def counting(*args, **kwargs):
        calls[0] += 1
        time.sleep(0.02)
        return eps(*args, **kwargs)

    monkeypatch.setattr(G, "guided_eps", counting)
    job = client.submit(3, 3.0, 64, 200, "ddim", 0, api_name="/diffusion_generate")
    cancelled_job_stops(job, calls)


def test_probe_stops_on_cancel(client, steps):
    job = client.submit("answers_question", "a", "0,1,2", 1.0, 8, 256, 0, 0, api_name="/probe")
    cancelled_job_stops(job, steps)


def test_dera_check_stops_on_cancel(client, steps):
    job = client.submit("a", "b", 8, 8, 256, 0, api_name="/dera_check")
    cancelled_job_stops(job, steps)
