"""The first screen a visitor sees: plain sentences before any jargon, the terms behind "What does this mean?",
the limits as a readable table, a helpful default adapter with the reward-hacking one labelled in the picker;
and on a phone (390 px) every tab reachable, the chosen radio option visible, tables that scroll instead of
overflowing. Unit checks, then a real headless Chromium at 1400 and 390 px on the tiny playground."""
from __future__ import annotations

import dataclasses

import pytest

from playground import registry
from playground.settings.request import LIMITS
from tests.browser import DESKTOP, PHONE, chromium_path, open_page
from ui.first_screen import PLAIN, adapter_choices, default_adapter, limits_table

TABS = ("Side by side", "Feedback", "Trade-off", "DeRa check", "Probes", "Diffusion guidance")
JARGON_WORDS = ("KL", "DPO", "LoRA", "nats", "logits", "β")


def test_the_plain_sentences_use_no_jargon():
    assert not [w for w in JARGON_WORDS if w in PLAIN]
    assert "λ" in PLAIN and PLAIN.count(".") <= 3


def test_limits_are_a_table_in_words_with_every_limit():
    table = limits_table()
    rows = table.splitlines()
    assert rows[0] == "| What | Limit |" and len(rows) == 2 + len(dataclasses.fields(LIMITS))
    assert "{" not in table and "_" not in table.replace("β_train", "")  # no JSON, no field names
    assert f"| Longest answer | {LIMITS.max_new_tokens} tokens |" in rows
    assert f"| Time limit of one chat turn or duel | {LIMITS.request_timeout_s:g} s |" in rows


def test_the_default_adapter_is_a_helpful_one_and_the_picker_labels_reward_hacking():
    shipped = registry.ADAPTERS
    assert default_adapter(list(shipped)) == "on-topic-b0.1"
    assert default_adapter(["upbeat-b0.1", "concise-b0.1"]) == "concise-b0.1"
    assert default_adapter(["b", "a"]) == "a" and default_adapter([]) is None
    labels = dict((name, label) for label, name in adapter_choices(shipped))
    assert labels["upbeat-b0.1"] == "upbeat-b0.1 — reward-hacking example"
    assert labels["on-topic-b0.1"] == "on-topic-b0.1 — helpful" and labels["concise-b0.1"] == "concise-b0.1 — helpful"
    assert labels["upbeat-b0.5"] == "upbeat-b0.5"  # no tag where the card gives none


# --- in the browser --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def url(tiny_playground):
    from tests.test_app import serve

    demo, address = serve(tiny_playground)
    yield address
    demo.close()


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1400px", "390px"])
def test_first_screen_and_every_tab_at_both_widths(url, browser, viewport):
    page = open_page(browser, url, viewport=viewport)
    body = page.locator("body").inner_text()
    plain_start = body.index("Ask a question and compare")
    assert all(w not in body[:plain_start] for w in JARGON_WORDS)  # nothing technical before the plain sentences
    assert page.locator("#jargon").get_by_text("What does this mean?").is_visible()
    assert not page.get_by_text("direct preference optimisation").is_visible()  # behind the disclosure
    page.locator("#jargon").get_by_text("What does this mean?").click()
    page.get_by_text("direct preference optimisation").first.wait_for(timeout=10_000)

    page.locator("#limits").get_by_text("Limits").click()
    table = page.locator("#limits table")
    table.wait_for(timeout=10_000)
    assert "Longest answer" in table.inner_text() and "{" not in page.locator("#limits").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]  # nothing overflows the page

    for name in TABS:  # every tab is a visible button: none hides behind an overflow menu
        assert page.get_by_role("tab", name=name).is_visible(), name
    chosen = page.locator("#sbs-mode label.selected")
    assert chosen.inner_text().strip() == "Three columns"
    assert chosen.evaluate("e => getComputedStyle(e).outlineStyle") == "solid"
    page.get_by_role("tab", name="Diffusion guidance").click()
    page.get_by_text("Digit y").first.wait_for(timeout=10_000)
    page.context.close()


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")
def test_bold_text_is_drawn_in_one_font(url, browser):
    """Gradio's bundled Source Sans Pro SemiBold holds only "A", "B" and some Cyrillic: without the app's override
    a bold "Base model" was a Source Sans "B" followed by fallback letters. Weight 600 now draws every letter
    from the full Bold file: the same width as that file loaded on its own."""
    page = open_page(browser, url)
    widths = page.evaluate("""async () => {
      const ref = new FontFace('BoldReference', "url(static/fonts/SourceSansPro/SourceSansPro-Bold.woff2)");
      document.fonts.add(await ref.load());
      await document.fonts.load("600 20px 'Source Sans Pro'", "Base model");
      const w = (font) => { const s = document.createElement('span');
        s.style.cssText = `font: ${font}; position: absolute; white-space: nowrap`;
        s.textContent = 'Base model, realigned'; document.body.appendChild(s);
        const width = s.getBoundingClientRect().width; s.remove(); return width; };
      return [w("600 20px 'Source Sans Pro'"), w("20px BoldReference")];
    }""")
    assert abs(widths[0] - widths[1]) < 0.5, widths
    page.context.close()
