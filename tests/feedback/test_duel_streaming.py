"""The blind duel streams both answers and has a Stop, like the three columns: `DuelService.stream` directly,
/duel and /duel_stop through gradio_client, and the duel panel in a real headless Chromium.

Decoding is held after its first step until Stop is pressed (`HeldPlayground`), so "an update arrives before
the end" and "Stop ends it" are facts of the run, not of timing."""
from __future__ import annotations

import threading
import time

import pytest

from playground.feedback.config import sqlite_url
from playground.feedback.duel import DuelService, DuelStopped
from tests.browser import chromium_path, open_duel, open_page
from tests.test_app import serve

PROMPT = "Tell me about rain."


class HeldPlayground:
    """The tiny playground, but while `hold` is set its decoding stops after the first step until `should_stop()`.

    Held twice: the reader of `stream` waits after its first update, and so does the scheduler's decode loop
    (`hold_loop`), which otherwise runs ahead of a waiting reader and finishes the answers in a fraction of a
    second (the reader then sees coalesced updates)."""

    def __init__(self, pg) -> None:
        self._pg, self.hold = pg, threading.Event()
        self.first_step = threading.Event()

    def hold_loop(self, monkeypatch) -> None:
        """While `hold` is set, a decoding step waits, once a running answer has a token, until a submission is stopping."""
        engine, forward = self._pg.engine, self._pg.engine.forward

        def held_forward(call):
            for _ in range(6000):  # at most a minute
                active = list(engine.scheduler.active)
                started = any(st.tokens for sub in active for st in sub.streams)
                if not self.hold.is_set() or not started or any(sub.stopping() for sub in active):
                    break
                time.sleep(0.01)
            return forward(call)

        monkeypatch.setattr(engine, "forward", held_forward)

    def __getattr__(self, name):
        return getattr(self._pg, name)

    def stream(self, requests, should_stop=lambda: False):
        for k, step in enumerate(self._pg.stream(requests, should_stop=should_stop)):
            yield step
            if k == 0:
                self.first_step.set()
                for _ in range(6000):  # at most a minute: a test that forgot to press Stop fails, it does not hang
                    if not self.hold.is_set() or should_stop():
                        break
                    time.sleep(0.01)


def wait_for(predicate, what: str, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


@pytest.fixture
def service(tiny_playground):
    s = DuelService(tiny_playground, store_factory=lambda: None, max_new_tokens=8)
    yield s


def test_stream_yields_both_answers_as_they_grow_then_the_kept_duel(service, tiny_playground):
    steps = list(service.stream(PROMPT, "a", 0.9, "session-1", seed=5))
    assert len(steps) >= 2 and all(s.duel is None for s in steps[:-1])
    counts = [(s.tokens_a, s.tokens_b) for s in steps[:-1]]
    # the answers grow update by update (the scheduler's loop may run ahead of this reader: updates coalesce)
    assert counts == sorted(counts) and len(set(counts)) == len(counts) and min(counts[0]) >= 1
    duel = steps[-1].duel
    assert duel is not None and service.pending(duel.duel_id) is duel
    assert (steps[-1].answer_a, steps[-1].answer_b) == (duel.answer_a, duel.answer_b)
    same = service.start(PROMPT, "a", 0.9, "session-1", seed=5)  # streaming changes nothing in what is decoded
    assert (same.answer_a, same.answer_b, same.settings_a, same.settings_b) == (
        duel.answer_a, duel.answer_b, duel.settings_a, duel.settings_b)


def test_a_stopped_stream_keeps_no_duel(service):
    stopped = {"now": False}
    steps = service.stream(PROMPT, "a", 0.9, "session-1", seed=5, should_stop=lambda: stopped["now"])
    first = next(steps)
    assert first.duel is None
    stopped["now"] = True
    with pytest.raises(DuelStopped, match="not finished"):
        list(steps)
    assert not service._pending


def test_a_bad_prompt_is_refused_before_anything_streams(service):
    with pytest.raises(Exception, match="prompt"):
        next(service.stream("   ", "a", 0.9, "session-1"))


# --- through the app -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def held_app(tiny_playground, tmp_path_factory):
    data = tmp_path_factory.mktemp("votes")
    held = HeldPlayground(tiny_playground)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLAYGROUND_DATABASE_URL", sqlite_url(data / "votes.sqlite3"))
        mp.setenv("PLAYGROUND_VOTE_SALT", "stream-salt")
        mp.setenv("PLAYGROUND_DUEL_MAX_NEW_TOKENS", "16")
        held.hold_loop(mp)
        demo, url = serve(held)
        try:
            yield held, url
        finally:
            held.hold.clear()
            demo.close()


def test_the_duel_api_streams_and_duel_stop_ends_it(held_app):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    held, url = held_app
    client = Client(url, verbose=False)
    held.hold.set()
    held.first_step.clear()
    job = client.submit(PROMPT, "a", 0.7, api_name="/duel")
    wait_for(lambda: len(job.outputs()) >= 1, "a streamed update while decoding is held")
    answer_a, answer_b, *_rest, note = job.outputs()[0]
    assert "Answering" in note and not job.done()
    client.predict(api_name="/duel_stop")
    *_answers, final_note = job.result()
    assert "Stopped" in final_note and "not voted on" in final_note
    with pytest.raises(AppError, match="no duel to vote on"):  # an unfinished pair is not kept
        client.predict("a", api_name="/vote")

    held.hold.clear()
    job = client.submit(PROMPT, "a", 0.7, api_name="/duel")  # not stopped: it runs to the end, with updates on the way
    final = job.result()
    updates = job.outputs()
    assert len(updates) >= 2 and all("Answering" in u[-1] for u in updates[:-1]) and final[-1] == ""
    assert "saved" in client.predict("a", api_name="/vote")


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")
def test_the_duel_panel_streams_and_its_stop_ends_both_answers(held_app, browser):
    held, url = held_app
    page = open_page(browser, url)
    open_duel(page)
    held.hold.set()
    page.locator("#duel-prompt textarea").fill(PROMPT)
    page.locator("#duel-generate").click()
    page.locator("#duel-stop").wait_for(state="visible", timeout=30_000)
    page.locator("#duel-reveal", has_text="Answering").wait_for(timeout=30_000)  # shown while decoding is held
    assert not page.locator("#duel-generate").is_visible() and not page.locator("#vote-a").is_visible()
    page.locator("#duel-stop").click()
    page.locator("#duel-reveal", has_text="Stopped").wait_for(timeout=30_000)
    page.locator("#duel-generate").wait_for(state="visible", timeout=30_000)
    assert not page.locator("#duel-stop").is_visible() and not page.locator("#vote-a").is_visible()
    held.hold.clear()
    page.locator("#duel-generate").click()  # again, not stopped: the vote buttons come with the finished answers
    page.locator("#vote-a").wait_for(state="visible", timeout=60_000)
    assert page.locator("#duel-reveal").inner_text().strip() == ""
    page.context.close()


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")
def test_a_vote_before_the_stream_has_completed_keeps_its_reveal(held_app, browser, monkeypatch):
    """Gradio's completion message re-sends a generator's last outputs; on a loaded server it can come after a quick
    vote. Here the stream's end is made late on purpose: the reveal and the hidden vote buttons must stay."""
    import ui.duel_panel as duel_panel

    held, url = held_app
    held.hold.clear()
    streamed = duel_panel.stream_duel

    def ends_late(*args, **kwargs):
        yield from streamed(*args, **kwargs)
        time.sleep(2)

    monkeypatch.setattr(duel_panel, "stream_duel", ends_late)
    page = open_page(browser, url)
    open_duel(page)
    page.locator("#duel-prompt textarea").fill(PROMPT)
    page.locator("#duel-generate").click()
    page.locator("#vote-a").wait_for(state="visible", timeout=60_000)
    page.locator("#vote-a").click()
    page.locator("#duel-reveal", has_text="saved").wait_for(timeout=30_000)
    time.sleep(2.5)  # past the late end, whenever the vote came
    assert "saved" in page.locator("#duel-reveal").inner_text() and not page.locator("#vote-a").is_visible()
    page.context.close()
