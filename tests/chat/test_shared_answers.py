"""A share link shows the shared answers at once: they are kept on the server (bounded, by content hash, surviving
a restart), the link names them by a checked id, and Replay still decodes them again and checks them token for
token. The store directly, then the link in a real headless Chromium on the tiny playground."""
from __future__ import annotations

import json
import os

import pytest

from playground.chat.conversation import Conversation, run_turn
from playground.chat.share import link_query
from playground.chat.shared_answers import ID_CHARS, SharedAnswers, check_id, compare, row_record, shown_conversation
from playground.settings.validation import InputError
from tests.browser import answers, chromium_path, open_page, send, wait_done

KNOBS = dict(adapter="a", lam=0.5, mode="logits", temperature=0.9, top_p=0.95, max_new_tokens=6, seed=3)


@pytest.fixture(scope="module")
def conv(tiny_playground):
    *_, (new, _answers) = run_turn(tiny_playground, Conversation(), "Tell me about <b>cats</b>.", KNOBS)
    return new


def texts(shown: dict) -> dict:
    """The answers without their "… (token limit — continue)" tail (shared answers are not continued here)."""
    return {c: t.split(" … (")[0] for c, t in shown.items()}


def record_of(conv, pg):
    return row_record(conv.rows[-1], link_query(conv.rows[-1], pg.adapters))


def test_kept_answers_read_back_under_their_content_hash_also_after_a_restart(tmp_path, conv, tiny_playground):
    record = record_of(conv, tiny_playground)
    key = SharedAnswers(tmp_path).put(record)
    assert len(key) == ID_CHARS and SharedAnswers(tmp_path).put(record) == key  # the same answers, the same id
    again = SharedAnswers(tmp_path).get(key)  # a new store on the same folder: as after a restart
    assert again == json.loads(json.dumps(record))
    assert [again["answers"][c]["text"] for c in ("base", "realigned", "tuned")] == [
        conv.rows[-1].cells[c].text for c in ("base", "realigned", "tuned")]


def test_the_store_keeps_at_most_max_items_dropping_the_oldest(tmp_path, conv, tiny_playground):
    store = SharedAnswers(tmp_path, max_items=3)
    keys = []
    for i in range(5):
        keys.append(store.put({**record_of(conv, tiny_playground), "query": f"n={i}"}))
        os.utime(tmp_path / f"{keys[-1]}.json", ns=(i * 10**9, i * 10**9))  # written in this order
    assert len(store) == 3
    assert [store.get(k) is not None for k in keys] == [False, False, True, True, True]


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ABCDEF" * 4, "a" * (ID_CHARS - 1), "a" * (ID_CHARS + 1), "",
                                 None, 12])
def test_an_id_of_another_form_is_refused_naming_the_parameter_not_echoing_it(tmp_path, bad):
    with pytest.raises(InputError, match=f"answers must be {ID_CHARS} lowercase hex digits") as err:
        SharedAnswers(tmp_path).get(bad)
    assert "passwd" not in str(err.value)
    assert check_id("0" * ID_CHARS) == "0" * ID_CHARS


def test_missing_damaged_or_oversized_records_are_none_or_refused(tmp_path, conv, tiny_playground):
    store = SharedAnswers(tmp_path, max_bytes=100_000)
    assert store.get("0" * ID_CHARS) is None
    key = store.put(record_of(conv, tiny_playground))
    (tmp_path / f"{key}.json").write_text('{"answers": {"base": {"text": 1}}}')
    assert store.get(key) is None
    with pytest.raises(InputError, match="answers: .* bytes to store; the limit is 10"):
        SharedAnswers(tmp_path, max_bytes=10).put(record_of(conv, tiny_playground))


def test_shown_answers_are_the_kept_ones_and_compare_finds_the_first_different_token(conv, tiny_playground):
    record = json.loads(json.dumps(record_of(conv, tiny_playground)))
    shown = shown_conversation(record, conv.rows[-1].turn)
    assert [shown.rows[0].cells[c].text for c in ("base", "tuned")] == [conv.rows[-1].cells[c].text for c in ("base", "tuned")]
    assert not shown.rows[0].streaming and compare(record, conv) == {"base": None, "realigned": None, "tuned": None}
    record["answers"]["tuned"]["tokens"][2] += 1
    assert compare(record, conv)["tuned"] == 2


# --- in the browser --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def url(tiny_playground, tmp_path_factory):
    from tests.test_app import serve

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLAYGROUND_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        demo, address = serve(tiny_playground)
        try:
            yield address
        finally:
            demo.close()


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")
def test_a_share_link_shows_the_answers_at_once_and_replay_checks_them(url, browser):
    page = open_page(browser, url)
    page.locator("#more-settings").get_by_text("More settings").click()
    box = page.locator("#max-new input[type=number]")
    box.fill("8")
    box.press("Enter")
    send(page, "비 오는 날을 위한 <b>팁</b>?")
    wait_done(page)
    original = answers(page)
    page.locator("#copy-link").click()
    page.wait_for_function("document.querySelector('#share-link textarea')?.value.includes('answers=')", timeout=10_000)
    link = page.locator("#share-link textarea").input_value()
    assert len(link) < 2000
    page.context.close()

    fresh = open_page(browser, link)  # a new context: the answers are there before anything is decoded
    fresh.locator("#transcript section.turn").first.wait_for(timeout=10_000)
    assert texts(answers(fresh)) == texts(original) and "\ufffd" not in "".join(original.values())
    assert fresh.locator("#transcript .q-text b").count() == 0  # the prompt is text, never markup
    assert fresh.locator("#transcript a[data-act=prefer], #transcript a[data-act=regen]").count() == 0
    assert "token for token" in fresh.locator("#shared-row").inner_text()
    fresh.locator("#replay").click()
    fresh.locator(".toast-body", has_text="Replay matches").first.wait_for(timeout=240_000)
    assert answers(fresh) == original
    fresh.context.close()

    tampered = open_page(browser, link.replace("seed=", "seed=1"))  # the kept answers are for another seed
    tampered.locator(".toast-body", has_text="belong to another link").first.wait_for(timeout=10_000)
    assert tampered.locator("#transcript section.turn").count() == 0
    tampered.context.close()
