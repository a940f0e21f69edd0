"""Share links: a turn's prompt and settings round-trip through the URL query; bad values name the parameter."""
from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from playground.chat.conversation import Conversation, run_turn
from playground.chat.share import adapter_sha256, link_query, parse_link
from playground.settings.validation import InputError

KNOBS = dict(adapter="a", kl_strength=0.0375, mode="weights", temperature=0.9, top_p=0.8, max_new_tokens=5, seed=11)


def last(gen):
    out = None
    for out in gen:
        pass
    return out


def test_a_link_round_trips_every_setting(tiny_playground):
    conv, _ = last(run_turn(tiny_playground, Conversation(), "Hi & bye?", KNOBS))
    params = dict(parse_qsl(link_query(conv.rows[-1], tiny_playground.adapters)))
    assert params["adapter_sha256"] == adapter_sha256(tiny_playground.adapters["a"].path) != ""
    shared = parse_link(params, tiny_playground.adapters)
    assert (shared.prompt, shared.adapter, shared.kl_strength, shared.mode, shared.temperature, shared.top_p,
            shared.max_new_tokens, shared.seed) == ("Hi & bye?", "a", 0.0375, "weights", 0.9, 0.8, 5, 11)
    assert shared.notes == ()
    replay, _ = last(run_turn(tiny_playground, Conversation(), shared.prompt, dict(
        adapter=shared.adapter, kl_strength=shared.kl_strength, mode=shared.mode, temperature=shared.temperature,
        top_p=shared.top_p, max_new_tokens=shared.max_new_tokens, seed=shared.seed)))
    assert replay.histories == conv.histories  # token for token


def test_lambda_links_and_changed_adapters(tiny_playground):
    shared = parse_link({"prompt": "p", "adapter": "a", "lambda": "2", "adapter_sha256": "0" * 16}, tiny_playground.adapters)
    assert shared.lam == 2 and shared.kl_strength == pytest.approx(0.05) and "has changed" in shared.notes[0]
    assert parse_link({"__theme": "dark"}, tiny_playground.adapters) is None


def test_every_lambda_the_checks_accept_opens_on_the_lambda_slider(tiny_playground):
    """The chat's knob is λ over the whole accepted range: λ = 0 (the base model) and a large β open too;
    an old link's β sets λ = β_train/β."""
    a = tiny_playground.adapters
    base = parse_link({"prompt": "p", "adapter": "a", "lambda": "0"}, a)
    assert base.lam == 0 and base.kl_strength == float("inf")
    assert parse_link({"prompt": "p", "adapter": "a", "kl_strength": "5"}, a).lam == pytest.approx(0.1 / 5)
    assert parse_link({"prompt": "p", "adapter": "a", "lambda": "8"}, a).lam == 8


def test_a_link_made_with_lambda_replays_the_same_tokens(tiny_playground):
    knobs = {k: v for k, v in KNOBS.items() if k != "kl_strength"} | {"lam": 0.75}
    conv, _ = last(run_turn(tiny_playground, Conversation(), "Hi", knobs))
    params = dict(parse_qsl(link_query(conv.rows[-1], tiny_playground.adapters)))
    assert params["lambda"] == "0.75" and "kl_strength" not in params
    shared = parse_link(params, tiny_playground.adapters)
    replay, _ = last(run_turn(tiny_playground, Conversation(), shared.prompt, dict(
        adapter=shared.adapter, lam=shared.lam, mode=shared.mode, temperature=shared.temperature,
        top_p=shared.top_p, max_new_tokens=shared.max_new_tokens, seed=shared.seed)))
    assert replay.histories == conv.histories


@pytest.mark.parametrize("params, name", [
    ({"adapter": "a", "kl_strength": "0.1"}, "prompt is missing"),
    ({"prompt": "  ", "adapter": "a", "kl_strength": "0.1"}, "prompt is empty"),
    ({"prompt": "p", "adapter": "zzz", "kl_strength": "0.1"}, "unknown adapter"),
    ({"prompt": "p", "adapter": "a"}, "kl_strength"),
    ({"prompt": "p", "adapter": "a", "kl_strength": "abc"}, "kl_strength must be a number"),
    ({"prompt": "p", "adapter": "a", "kl_strength": "0.001"}, r"kl_strength must be in \[0.01, 100\]; got 0.001"),
    ({"prompt": "p", "adapter": "a", "lambda": "9"}, r"lambda must be in \[0, 8\]; got 9"),
    ({"prompt": "p", "adapter": "a", "kl_strength": "0.1", "temperature": "9"}, "temperature must be in"),
    ({"prompt": "p", "adapter": "a", "kl_strength": "0.1", "seed": "1.5"}, "seed must be a whole number"),
    ({"prompt": "p", "adapter": "a", "kl_strength": "0.1", "mode": "magic"}, "unknown mode"),
])
def test_bad_links_name_the_parameter(tiny_playground, params, name):
    with pytest.raises(InputError, match=name):
        parse_link(params, tiny_playground.adapters)


def test_a_hash_of_any_other_form_is_refused_without_echoing_it(tiny_playground):
    """adapter_sha256 is 16 lowercase hex digits or the link is refused; the message does not repeat the value."""
    good = {"prompt": "p", "adapter": "a", "kl_strength": "0.1"}
    for bad in ("<a href=/>Session expired: sign in again</a>", "0" * 15, "0" * 17, "ABCDEF0123456789", "g" * 16):
        with pytest.raises(InputError, match="adapter_sha256 must be 16 lowercase hex digits") as err:
            parse_link({**good, "adapter_sha256": bad}, tiny_playground.adapters)
        assert bad not in str(err.value) and "<" not in str(err.value)
    assert parse_link({**good, "adapter_sha256": "0123456789abcdef"}, tiny_playground.adapters).notes


def test_toast_text_is_plain_text():
    from ui.components import plain

    assert plain("unknown adapter '<img src=x>'; available: a & b") == "unknown adapter '&lt;img src=x&gt;'; available: a &amp; b"


# Each parameter in turn carries markup (short enough to survive the 40-character cut of echoed values); the
# others are valid, so the link fails at that parameter and its value is echoed into the warning toast.
MARKUP = '<b id=pw1>x</b><img id=pw2 src=/x>'
ECHOED = ("adapter", "adapter_sha256", "kl_strength", "lambda", "mode", "temperature", "top_p", "max_new_tokens", "seed")


@pytest.mark.browser
def test_markup_in_any_share_link_parameter_makes_no_element_in_chromium(tiny_playground, browser):
    """Opened in real Chromium, a share link with HTML in a parameter shows that HTML as text in the toast:
    no element it wrote exists in the page (the toast rendered `<a href>`, `<form>`, `<img>` before)."""
    from urllib.parse import urlencode

    from tests.browser import open_page
    from tests.test_app import serve

    demo, url = serve(tiny_playground)
    try:
        page = open_page(browser, url)
        for param in ECHOED:
            query = {"prompt": "<form id=pw3><input id=pw4 type=password></form>", "adapter": "a", param: MARKUP}
            if param != "lambda":
                query.setdefault("kl_strength", "0.05")
            page.goto(f"{url}?{urlencode(query)}", wait_until="load")
            toast = page.locator(".toast-body").first
            toast.wait_for(timeout=30_000)
            text = toast.inner_text()
            made = page.evaluate("document.querySelectorAll('#pw1, #pw2, #pw3, #pw4').length")
            assert made == 0, (param, text)
            assert "share link" in text and ("<b id=pw1>" in text or "adapter_sha256 must be" in text), (param, text)
    finally:
        page.context.close()
        demo.close()
