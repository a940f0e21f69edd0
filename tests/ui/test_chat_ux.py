"""The chat's UX in a real headless Chromium on the tiny model: typing while streaming, Stop, continue,
errors as toasts only, share links that replay, the phone layout, and the cold start."""
from __future__ import annotations

import time

import pytest

from tests.browser import PHONE, answers, chromium_path, open_page, overlays, send, wait_done, wait_streaming
from tests.test_app import serve, slow_engine

pytestmark = [pytest.mark.browser, pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")]


@pytest.fixture(scope="module")
def url(tiny_playground):
    demo, address = serve(tiny_playground)
    yield address
    demo.close()




@pytest.fixture
def steps(tiny_playground, monkeypatch):
    """Slows the engine to ≈ 30 steps/s and counts its forward passes."""
    return slow_engine(tiny_playground.engine, monkeypatch, 0.03)


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_timeout(300)


def test_typing_while_streaming_keeps_the_text_and_enter_waits(url, browser, steps):
    page = open_page(browser, url)
    send(page, "Tell me about cats.")
    wait_streaming(page)
    assert page.locator("#stop").is_visible() and not page.locator("#send").is_visible()
    box = page.locator("#prompt textarea")
    box.type("And dogs?", delay=80)  # several chunks arrive while typing
    page.wait_for_timeout(500)
    assert box.input_value() == "And dogs?"
    box.press("Enter")  # blocked while answering, with the reason shown
    assert page.locator("#busy-hint").is_visible()
    assert box.input_value() == "And dogs?" and page.locator("#transcript section.turn").count() == 1
    page.locator("#stop").click()
    wait_done(page)
    assert box.input_value() == "And dogs?"
    box.press("Enter")  # now it sends
    wait_done(page, turns=2)
    assert page.locator("#transcript section.turn").count() == 2 and box.input_value() == ""
    page.context.close()


def test_stop_stops_decoding_within_a_second(url, browser, steps):
    page = open_page(browser, url)
    send(page, "Tell me a long story.")
    wait_streaming(page)
    page.wait_for_timeout(500)
    page.locator("#stop").click()
    clicked = time.time()
    page.locator("#send").wait_for(state="visible", timeout=5_000)
    time.sleep(max(0.0, clicked + 1.0 - time.time()))
    after = steps["n"]
    time.sleep(1.0)
    assert steps["n"] == after < 200  # nothing decodes a second after Stop (256 tokens were allowed)
    wait_done(page)
    assert "(stopped — continue)" in page.locator("#transcript").inner_text()
    page.context.close()


def test_truncation_mark_and_continue(url, browser):
    page = open_page(browser, url)
    page.locator("#more-settings").get_by_text("More settings").click()
    set_number(page, "max-new", 6)
    send(page, "Tell me about cats.")
    wait_done(page)
    first = answers(page)
    marks = page.locator("#transcript a.continue")
    assert marks.count() >= 1 and "token limit — continue" in marks.first.inner_text()
    assert "6 tokens" in page.locator("#transcript").inner_text()
    marks.first.click()
    try:
        page.locator("#transcript .ro", has_text="12 tokens").first.wait_for(timeout=30_000)
    except Exception:
        page.screenshot(path="/tmp/chatux/trunc_fail.png")
        print("TOASTS", page.locator(".toast-body").all_inner_texts())
        raise
    wait_done(page)
    text = page.locator("#transcript").inner_text()
    assert "12 tokens" in text and page.locator("#transcript section.turn").count() == 1
    for column, before in first.items():
        after = answers(page)[column]
        assert after.strip().startswith(before.split("…")[0].strip()), column  # the same turn, continued
    page.context.close()


def test_errors_are_a_toast_and_leave_the_conversation(url, browser):
    page = open_page(browser, url)
    send(page, "Tell me about cats.")
    wait_done(page)
    before = page.locator("#transcript").inner_text()
    for bad, message in (("   ", "prompt is empty"), ("word " * 600, "shorten it")):
        page.locator("#prompt textarea").fill(bad)
        page.locator("#send").click()
        page.locator(".toast-body", has_text=message).first.wait_for(timeout=10_000)
        assert overlays(page) == 0
        assert page.locator("#transcript").inner_text() == before
        assert page.locator("#send").is_visible()
    page.context.close()


def test_share_link_replays_the_same_answers_in_a_fresh_browser(url, browser):
    page = open_page(browser, url)
    page.locator("#more-settings").get_by_text("More settings").click()
    set_number(page, "max-new", 10)
    set_number(page, "seed", 7)
    send(page, "Share this: what is rain?")
    wait_done(page)
    original = answers(page)
    page.locator("#copy-link").click()
    page.wait_for_function("document.querySelector('#share-link textarea')?.value.startsWith('http')", timeout=10_000)
    link = page.locator("#share-link textarea").input_value()
    assert "seed=7" in link and "adapter_sha256=" in link and "max_new_tokens=10" in link
    page.context.close()

    fresh = open_page(browser, link)  # a new context: no session, no cookies
    fresh.locator("#replay").wait_for(timeout=10_000)
    assert fresh.locator("#prompt textarea").input_value() == "Share this: what is rain?"
    fresh.locator("#replay").click()
    # the link's stored answers are on screen at once, so wait for the replay's own verdict, then its answers
    fresh.locator(".toast-body", has_text="Replay matches").first.wait_for(timeout=240_000)
    wait_done(fresh)
    assert answers(fresh) == original
    fresh.context.close()


def test_a_bad_share_link_gets_a_toast_naming_the_parameter(url, browser):
    page = open_page(browser, url + "?prompt=hi&adapter=a&kl_strength=0.05&temperature=9")
    page.locator(".toast-body", has_text="temperature").first.wait_for(timeout=10_000)
    assert not page.locator("#replay").is_visible()
    page.context.close()


def test_lambda_is_the_knob_and_reaches_the_base_model(url, browser):
    """λ 0 … max_lambda (the limits the checks accept) with β = β_train/λ beside it; at λ 0 the realigned column
    is the base model, token for token."""
    from playground.settings.request import LIMITS

    page = open_page(browser, url)
    slider = page.locator("#lambda input[type=range]")
    assert float(slider.get_attribute("min")) == LIMITS.min_lambda and float(slider.get_attribute("max")) == LIMITS.max_lambda
    assert "β = β_train/λ = 0.2" in page.locator("#lam-label").inner_text()  # λ 0.5 by default, β_train 0.1
    set_number(page, "lambda", 0)
    page.locator("#lam-label", has_text="β = β_train/λ = ∞").wait_for(timeout=10_000)
    send(page, "Tell me about cats.")
    wait_done(page)
    shown = answers(page)
    assert shown["realigned"] == shown["base"] and shown["base"].strip()
    page.context.close()


def test_an_old_share_link_with_beta_sets_lambda(url, browser):
    page = open_page(browser, url + "?prompt=hi&adapter=a&kl_strength=0.05&mode=logits&temperature=0.7&top_p=0.95"
                                    "&max_new_tokens=4&seed=0")
    page.locator("#replay").wait_for(timeout=10_000)
    assert float(page.locator("#lambda input[type=number]").input_value()) == 2  # λ = β_train/β = 0.1/0.05
    page.context.close()


def test_phone_shows_the_input_first_and_swipeable_answers(url, browser):
    page = open_page(browser, url, viewport=PHONE, is_mobile=True, has_touch=True)
    box = page.locator("#prompt").bounding_box()
    assert box["y"] + box["height"] <= PHONE["height"]
    page.locator("#examples .example").first.click()  # fills at once, on the client
    assert page.locator("#prompt textarea").input_value() == "Give me a tip for a rainy day."
    page.locator("#prompt textarea").press("Enter")
    wait_streaming(page)
    row = page.locator("#transcript .answers").last
    assert row.evaluate("e => e.scrollWidth > e.clientWidth + 50")  # the three answers side by side, swiped
    page.context.close()


def test_cold_start_shows_loading_and_the_question_at_once(tiny_playground, browser):
    from playground.runtime.startup import LazyPlayground

    lazy = LazyPlayground(dict(tiny_playground.adapters))
    demo, address = serve(lazy)
    try:
        page = open_page(browser, address)
        assert "Loading the model" in page.locator("#loading").inner_text()
        send(page, "Are you there?")
        page.locator("#transcript .q-text", has_text="Are you there?").wait_for(timeout=3_000)
        assert "loading the model" in page.locator("#transcript").inner_text()
        lazy.load(lambda: tiny_playground)
        wait_done(page)
        page.locator("#loading").wait_for(state="hidden", timeout=5_000)
        page.context.close()
    finally:
        demo.close()
