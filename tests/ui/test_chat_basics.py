"""What chats have, in the Side-by-side tab: Copy under every answer, Regenerate one column, Edit a question
and send it again, Export the conversation (Markdown and JSON, every setting behind every answer).

On the tiny playground: the conversation functions directly, /export through gradio_client, and the buttons
in a real headless Chromium."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from playground.chat.export import conversation_markdown, conversation_record
from playground.chat.conversation import Conversation, check_turn, regenerate_column, run_turn
from playground.settings.validation import InputError
from tests.browser import chromium_path, open_page, send, wait_done
from tests.test_app import serve

KNOBS = dict(adapter="a", lam=0.5, mode="logits", temperature=0.9, top_p=0.95, max_new_tokens=8, seed=7)


def turn(pg, conv=None, prompt="Tell me about cats.", **knobs):
    *_, (new, _answers) = run_turn(pg, conv or Conversation(), prompt, {**KNOBS, **knobs})
    return new


# --- regenerate one column -------------------------------------------------------------------------------

def test_regenerating_one_column_draws_its_next_seed_and_keeps_the_other_two(tiny_playground):
    conv = turn(tiny_playground)
    *_, (again, _) = regenerate_column(tiny_playground, conv, "tuned")
    before, after = conv.rows[-1], again.rows[-1]
    assert after.column_decode("tuned").seed == 8 and after.cells["tuned"].answer.settings["seed"] == 8
    assert [after.cells[c].text for c in ("base", "realigned")] == [before.cells[c].text for c in ("base", "realigned")]
    assert after.column_decode("realigned").seed == 7 and after.turn == before.turn
    # The same seed decoded as a whole turn gives the same tuned answer: a column alone is reproducible.
    same = turn(tiny_playground, seed=8)
    assert after.cells["tuned"].text == same.rows[-1].cells["tuned"].text
    *_, (twice, _) = regenerate_column(tiny_playground, again, "tuned")
    assert twice.rows[-1].column_decode("tuned").seed == 9


def test_regenerate_names_a_bad_column_and_needs_a_turn(tiny_playground):
    with pytest.raises(InputError, match="nothing to regenerate"):
        next(regenerate_column(tiny_playground, Conversation(), "tuned"))
    with pytest.raises(InputError, match="column"):
        next(regenerate_column(tiny_playground, turn(tiny_playground), "best"))


def test_an_edited_question_replaces_its_turn_and_the_ones_after(tiny_playground):
    conv = turn(tiny_playground, turn(tiny_playground), prompt="And dogs?")
    kept = conv.upto(0)
    assert kept.turns == 0 and conv.turns == 2  # upto copies: the conversation itself is unchanged
    edited = turn(tiny_playground, conv.upto(1), prompt="And birds?")
    assert [r.turn.prompt for r in edited.rows] == ["Tell me about cats.", "And birds?"]
    assert check_turn(tiny_playground.adapters, conv.upto(1), "x", KNOBS).prompt == "x"


# --- export ----------------------------------------------------------------------------------------------

def test_the_export_carries_every_setting_behind_each_answer(tiny_playground, tiny_adapters):
    conv = turn(tiny_playground)
    *_, (conv, _) = regenerate_column(tiny_playground, conv, "base")
    record = json.loads(json.dumps(conversation_record(conv, tiny_playground.adapters, "tiny-llama")))
    [t] = record["turns"]
    assert t["prompt"] == "Tell me about cats." and t["adapter"] == "a"
    assert t["adapter_path"] == str(tiny_adapters["a"]) and len(t["adapter_sha256"]) == 64
    got = {c: t["answers"][c]["settings"] for c in ("base", "realigned", "tuned")}
    assert [got[c]["lambda"] for c in got] == [0.0, 0.5, 1.0]
    assert got["base"]["kl_strength"] is None and got["realigned"]["kl_strength"] == pytest.approx(0.2)  # β_train/λ
    assert [got[c]["seed"] for c in got] == [8, 7, 7]  # the regenerated column's own seed
    assert all(s["temperature"] == 0.9 and s["top_p"] == 0.95 and s["max_new_tokens"] == 8 and s["mode"] == "logits"
               and s["beta_train"] == 0.1 and s["weights"] for s in got.values())
    assert [t["answers"][c]["text"] for c in got] == [conv.rows[0].cells[c].text for c in got]
    md = conversation_markdown(record)
    assert "## Turn 1" in md and "λ 0.5 · β 0.2 (β_train 0.1)" in md and "seed 8" in md and t["adapter_sha256"] in md


def test_markdown_keeps_backticks_in_text_inside_its_block():
    record = {"base_model": "m", "columns": ["base"], "turns": [{
        "turn": 1, "prompt": "```\n# not a heading", "adapter": "a", "adapter_sha256": "", "adapter_path": "",
        "preferred": None, "answers": {"base": {"title": "Base", "text": "ok", "tokens": 1, "ended": "end of turn",
                                                "settings": {"lambda": 0.0, "kl_strength": None, "beta_train": 0.1,
                                                             "mode": "logits", "temperature": 0.0, "top_p": 1.0,
                                                             "max_new_tokens": 1, "seed": 0, "weights": "float32"}}}}]}
    md = conversation_markdown(record)
    assert "````text\n```\n# not a heading\n````" in md


# --- through the app -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def url(tiny_playground):
    demo, address = serve(tiny_playground)
    yield address
    demo.close()


def test_export_through_the_api_gives_markdown_and_json(url):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(url, verbose=False)
    with pytest.raises(AppError, match="nothing to export yet"):
        client.predict(api_name="/export")
    out = client.predict("Tell me about cats.", "a", 0.2, "logits", 0.7, 0.95, 6, 3, api_name="/chat")
    files = client.predict(api_name="/export")
    paths = sorted((Path(f) for f in files), key=lambda p: p.name)
    assert [p.name for p in paths] == ["conversation.json", "conversation.md"]
    record = json.loads(paths[0].read_text())
    answers = record["turns"][0]["answers"]
    assert answers["realigned"]["settings"]["lambda"] == pytest.approx(0.5)  # β 0.2 with β_train 0.1
    assert answers["tuned"]["text"] and out[2][-1]["content"].startswith(answers["tuned"]["text"])
    assert "Tell me about cats." in paths[1].read_text()


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")
def test_copy_regenerate_edit_and_export_in_the_browser(url, browser):
    page = open_page(browser, url, permissions=["clipboard-read", "clipboard-write"])
    send(page, "Tell me about cats.")
    wait_done(page)
    last = page.locator("#transcript section.turn").last
    tuned = last.locator(".col-tuned .a-text").inner_text()
    last.locator(".col-tuned a[data-act=copy]").click()
    last.locator(".col-tuned a[data-act=copy]", has_text="Copied").wait_for(timeout=10_000)
    cut = last.locator(".col-tuned .continue")  # "… (token limit — continue)" is a link, not the answer
    answer = tuned.removesuffix(cut.inner_text()) if cut.count() else tuned
    assert page.evaluate("navigator.clipboard.readText()") == answer.rstrip()

    base = last.locator(".col-base .a-text").inner_text()
    last.locator(".col-tuned a[data-act=regen]").click()
    page.wait_for_function(  # a new tuned answer (its next seed), finished: the tools are back under it
        """(old) => { const a = document.querySelector('#transcript section.turn:last-child .col-tuned');
                      return a && a.querySelector('a[data-act=regen]') && !a.querySelector('.cursor')
                             && a.querySelector('.a-text').innerText !== old; }""", arg=tuned, timeout=240_000)
    wait_done(page)
    last = page.locator("#transcript section.turn").last
    assert last.locator(".col-base .a-text").inner_text() == base  # only the tuned column was decoded again
    assert page.locator("#transcript section.turn").count() == 1

    send(page, "And dogs?")
    wait_done(page, turns=2)
    page.locator("#transcript section.turn").first.locator("a[data-act=edit]").click()
    page.locator("#edit-note", has_text="Editing question 1").wait_for(timeout=10_000)
    box = page.locator("#prompt textarea")
    assert box.input_value() == "Tell me about cats." and "the 1 turn after it" in page.locator("#edit-note").inner_text()
    box.fill("Tell me about birds.")
    box.press("Enter")
    # the old two turns stay on screen (finished) until the edited question replaces them: wait for it first
    page.locator("#transcript .q-text", has_text="birds").wait_for(timeout=60_000)
    wait_done(page, turns=1)
    page.locator("#edit-row").wait_for(state="hidden", timeout=10_000)
    questions = page.locator("#transcript .q-text").all_inner_texts()
    assert questions == ["Tell me about birds."]

    page.locator("#export").click()
    page.locator("#export-files", has_text=".json").wait_for(timeout=30_000)
    shown = page.locator("#export-files").inner_text().replace("\n", "")  # the name and its extension are two cells
    assert "conversation.md" in shown and "conversation.json" in shown
    page.context.close()
