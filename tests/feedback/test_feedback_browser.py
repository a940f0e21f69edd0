"""Human feedback in a real headless Chromium on the tiny model: "Prefer this one" under a column of the latest
turn, the blind duel as the Side-by-side tab's second mode, and the Feedback tab's report and downloads."""
from __future__ import annotations

import os

import pytest

from playground.feedback.config import sqlite_url
from playground.feedback.store import VoteStore
from tests.browser import chromium_path, open_duel, open_page, open_report, overlays, send, wait_done
from tests.test_app import serve

pytestmark = [pytest.mark.browser, pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")]
SHOTS = os.environ.get("PLAYGROUND_TEST_SHOTS")  # a folder: save what the tests saw there


@pytest.fixture(scope="module")
def app(tiny_playground, tmp_path_factory):
    data = tmp_path_factory.mktemp("votes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLAYGROUND_DATABASE_URL", sqlite_url(data / "votes.sqlite3"))
        mp.setenv("PLAYGROUND_VOTE_SALT", "browser-salt")
        mp.setenv("PLAYGROUND_DUEL_MAX_NEW_TOKENS", "16")  # a quick duel (the default is a full answer)
        demo, url = serve(tiny_playground)
        try:
            yield url, data / "votes.sqlite3"
        finally:
            demo.close()




def votes(db, source):
    with VoteStore(sqlite_url(db)) as store:
        return [v for v in store.votes() if v.source == source]


def shot(page, name):
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, name), full_page=True)


def test_prefer_this_one_votes_once_and_marks_the_answer(app, browser):
    url, db = app
    page = open_page(browser, url)
    assert page.locator("#transcript a.prefer").count() == 0  # no turn, nothing to prefer
    send(page, "Tell me about cats.")
    wait_done(page)
    last = page.locator("#transcript section.turn").last
    assert last.locator("a.prefer").count() == 3
    last.locator(".col-realigned a.prefer").dblclick()  # a double click is one vote
    last.locator(".col-realigned .preferred").wait_for(timeout=30_000)
    page.locator(".toast-body", has_text="preferred over the other two").first.wait_for(timeout=10_000)
    shot(page, "prefer_1400.png")
    assert page.locator("#transcript a.prefer").count() == 0 and overlays(page) == 0
    stored = votes(db, "column")
    assert len(stored) == 2 and {v.outcome for v in stored} == {"a", "b"}
    assert all("realigned" in (v.settings_a["column"], v.settings_b["column"]) for v in stored)
    send(page, "And dogs?")  # the next turn can be voted on again; the earlier mark stays
    wait_done(page, turns=2)
    assert page.locator("#transcript section.turn").last.locator("a.prefer").count() == 3
    assert page.locator("#transcript section.turn").first.locator(".preferred").count() == 1
    page.context.close()


def test_blind_duel_is_a_mode_of_the_side_by_side_tab_and_the_report_offers_downloads(app, browser):
    url, db = app
    page = open_page(browser, url)
    send(page, "Hello there")
    wait_done(page)
    open_duel(page)
    assert not page.locator("#transcript").is_visible()
    page.locator("#duel-prompt textarea").fill("Tell me about rain.")
    page.locator("#duel-generate").click()
    page.locator("#vote-b").wait_for(state="visible", timeout=240_000)  # a loaded 2-core machine: minutes
    shot(page, "duel_1400.png")
    page.locator("#vote-b").click()
    page.locator("#duel-reveal", has_text="saved").wait_for(timeout=30_000)
    assert "| **A** |" not in page.locator("#duel-reveal").inner_text()  # rendered as a table, not raw markdown
    assert not page.locator("#vote-b").is_visible()
    assert len(votes(db, "duel")) == 1
    page.locator("#sbs-mode").get_by_text("Three columns").click()
    page.locator("#transcript section.turn").first.wait_for(timeout=10_000)  # the conversation is still there
    assert page.locator("#transcript a.prefer").count() == 3
    open_report(page)
    with VoteStore(sqlite_url(db)) as store:
        assert f"{store.count()} votes" in page.locator("#votes-report").inner_text()
    assert "votes_trl" in page.locator("#votes-trl").inner_text() and "votes" in page.locator("#votes-csv").inner_text()
    shot(page, "report_1400.png")
    page.context.close()
