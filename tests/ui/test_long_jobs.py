"""One long-job pattern in every tab, in a real headless Chromium on the tiny model: an estimate before, progress
during, Cancel shown only while the job runs, "Cancelled" after it (and the work really stops)."""
from __future__ import annotations

import time

import pytest

from tests.browser import chromium_path, open_page
from tests.test_app import serve, slow_steps

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


def fill(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} textarea, #{elem_id} input[type=number]").first
    box.fill(value)
    box.press("Tab")


def small_sweep(page, max_new: str) -> None:
    page.get_by_role("tab", name="Trade-off").click()
    page.locator("#sweep-source").get_by_text("Typed (one per line)").click()
    for elem_id, value in (("sweep-typed", "Tell me about cats."), ("sweep-grid", "0,1"), ("sweep-temps", "0.7"),
                           ("sweep-samples", "1"), ("sweep-max-new", max_new)):
        fill(page, elem_id, value)
    page.locator("#sweep-estimate", has_text="2 answers").wait_for(timeout=30_000)


def test_the_sweep_table_fits_a_phone_and_shows_every_column_on_demand(app, browser):
    from tests.browser import PHONE

    page = open_page(browser, app, viewport=PHONE, is_mobile=True, has_touch=True)
    page.get_by_role("tab", name="Trade-off").click()
    assert "Estimate" in page.locator("#sweep-estimate").inner_text()  # before anything is touched
    assert not page.locator("#sweep-cancel").is_visible()
    small_sweep(page, "4")
    page.locator("#run-sweep").click()
    page.locator("#sweep-summary", has_text="answers (1 prompts").wait_for(timeout=180_000)
    small = page.locator("#sweep-table")
    small.get_by_text("diversity").first.wait_for(timeout=30_000)
    headers = small.locator("th").all_inner_texts()
    assert any("reward" in h for h in headers) and not any("[95% CI]" in h for h in headers)
    assert "[" not in small.locator("tbody").inner_text()  # means only; the intervals are in the full table
    assert not page.locator("#sweep-table-full").is_visible()
    width = page.evaluate("() => document.querySelector('#sweep-table').getBoundingClientRect().right")
    assert width <= PHONE["width"] + 1
    page.locator("#sweep-all-columns").get_by_text("Show every column").click()
    page.locator("#sweep-table-full").get_by_text("KL (nats/token)").first.wait_for(timeout=10_000)
    assert not small.is_visible()
    assert not page.locator("#sweep-cancel").is_visible()  # nothing runs
    page.context.close()


def test_the_sweep_cancel_shows_only_while_it_runs_and_says_cancelled(app, browser, tiny_playground, monkeypatch):
    seen = slow_steps(tiny_playground, monkeypatch, 0.05)
    page = open_page(browser, app)
    small_sweep(page, "256")
    cancel = page.locator("#sweep-cancel")
    assert not cancel.is_visible()
    page.locator("#run-sweep").click()
    cancel.wait_for(state="visible", timeout=30_000)
    assert page.locator("#run-sweep").is_disabled() and page.locator("#run-controls").is_disabled()
    end = time.monotonic() + 60
    while seen[0] < 3:
        assert time.monotonic() < end, "the sweep never started decoding"
        time.sleep(0.05)
    cancel.click()
    page.locator("#sweep-summary", has_text="Cancelled").wait_for(timeout=10_000)
    cancel.wait_for(state="hidden", timeout=10_000)
    assert page.locator("#run-sweep").is_enabled()
    time.sleep(1.5)
    before = seen[0]
    time.sleep(1.0)
    assert seen[0] == before, "decoding went on after Cancel"
    page.context.close()
