"""One long-job pattern in every tab, in a real headless Chromium on the tiny model: an estimate before, progress
during, Cancel shown only while the job runs, "Cancelled" after it (and the work really stops)."""
from __future__ import annotations

import time

import pytest

from tests.browser import chromium_path, open_page
from tests.test_app import serve

pytestmark = [pytest.mark.browser, pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")]


@pytest.fixture(scope="module")
def app(tiny_playground):
    demo, url = serve(tiny_playground)
    yield url
    demo.close()


def test_diffusion_shows_an_estimate_progress_and_a_cancel_that_stops_sampling(app, browser, monkeypatch):
    from playground.diffusion import guidance as G

    calls = [0]
    eps = G.guided_eps

    def slow(*args, **kwargs):  # a step every ~50 ms: the job is still running when Cancel is pressed
        calls[0] += 1
        time.sleep(0.05)
        return eps(*args, **kwargs)

    monkeypatch.setattr(G, "guided_eps", slow)
    page = open_page(browser, app)
    page.get_by_role("tab", name="Diffusion guidance").click()
    estimate = page.locator("#guidance-estimate")
    estimate.get_by_text("Estimate").wait_for(timeout=10_000)
    assert "16 samples × 50 steps" in estimate.inner_text()
    cancel = page.locator("#guidance-cancel")
    assert not cancel.is_visible()  # nothing runs: no Cancel
    steps = page.get_by_label("Denoising steps", exact=False).locator("xpath=..").locator("input[type=number]")
    if steps.count():
        steps.first.fill("200")
        steps.first.press("Enter")
        estimate.get_by_text("200 steps").wait_for(timeout=10_000)
    page.locator("#guidance-generate").click()
    cancel.wait_for(state="visible", timeout=30_000)
    assert page.locator("#guidance-generate").is_disabled()
    page.wait_for_function("document.querySelector('#guidance-readout').innerText.includes('step')", timeout=60_000)
    assert "denoising: step" in page.locator("#guidance-readout").inner_text()  # progress while it runs
    cancel.click()
    page.locator("#guidance-status", has_text="Cancelled").wait_for(timeout=10_000)
    cancel.wait_for(state="hidden", timeout=10_000)
    assert page.locator("#guidance-generate").is_enabled()
    time.sleep(1.5)  # the worker sees the stop flag at its next step
    stopped_at = calls[0]
    time.sleep(1.0)
    assert calls[0] == stopped_at, "sampling went on after Cancel"
    assert page.locator("#guidance-samples img").count() == 0  # nothing half-done is shown
    page.context.close()
