"""Drive the app in a real headless Chromium (Debian's, through Playwright) and take screenshots.

Used by tests/ui/test_browser.py, tests/ui/test_chat_ux.py and tests/feedback/test_feedback_browser.py (tiny model) and
scripts/screenshots.py (the shipped model, for docs/).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
COLUMNS = ("base", "realigned", "tuned")
DESKTOP = {"width": 1400, "height": 1100}
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(p):
    return p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


def open_page(browser, url: str, viewport: dict = DESKTOP, **context_args):
    context = browser.new_context(viewport=viewport, **context_args)
    page = context.new_page()
    page.goto(url, wait_until="load")
    page.locator("#prompt textarea").wait_for(timeout=60_000)
    return page


def send(page, text: str) -> None:
    box = page.locator("#prompt textarea")
    box.fill(text)
    box.press("Enter")


def streaming(page) -> bool:
    return page.locator("#stop").is_visible()


def wait_streaming(page, timeout_ms: int = 60_000) -> None:
    """Until the first tokens are on screen."""
    page.locator("#transcript .cursor").first.wait_for(timeout=timeout_ms)


def wait_done(page, timeout_ms: int = 240_000, turns: int | None = None) -> None:
    """Until Send is back and every answer of the last turn (of `turns` turns, if given) has its readout."""
    if turns:
        page.locator("#transcript section.turn").nth(turns - 1).wait_for(timeout=timeout_ms)
    page.locator("#send").wait_for(state="visible", timeout=timeout_ms)
    deadline = time.time() + timeout_ms / 1000
    while time.time() < deadline:
        last = page.locator("#transcript section.turn").last
        if last.count() and last.locator(".ro").count() == 3 and not page.locator("#transcript .cursor").count():
            return
        time.sleep(0.1)
    raise TimeoutError("answers did not finish")


def answers(page) -> dict[str, str]:
    """The last turn's three answer texts (without readouts)."""
    last = page.locator("#transcript section.turn").last
    return {c: last.locator(f".col-{c} .a-text").inner_text() for c in COLUMNS}


def overlays(page) -> int:
    """Red "Error" status overlays on the conversation or the input (the toast alone should say it)."""
    return sum(page.locator(f"{sel} .error").count() for sel in ("#transcript", "#prompt", "#input-row"))


def shot(page, path: Path, seen: dict, full_page: bool = False) -> None:
    page.screenshot(path=str(path), full_page=full_page)
    seen["shots"].append(path)


def drive(url: str, out_dir: Path, prompt: str = "Give me a tip for a rainy day.", timeout_ms: int = 240_000,
          tabs: bool = True) -> dict:
    """Chat at 1400 px and 390 px (mid-stream and done), an error, a share link opened; screenshot each."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    seen: dict = {"shots": []}
    with sync_playwright() as p:
        browser = launch(p)
        page = open_page(browser, url, permissions=["clipboard-read", "clipboard-write"])
        send(page, prompt)
        wait_streaming(page, timeout_ms)
        page.wait_for_timeout(1500)
        page.locator("#prompt textarea").fill("And what if it snows?")  # typed while the answers stream
        shot(page, out_dir / "chat_streaming.png", seen)
        wait_done(page, timeout_ms)
        seen["first_answers"] = answers(page)
        seen["kept_text"] = page.locator("#prompt textarea").input_value()
        shot(page, out_dir / "chat_done.png", seen)
        page.locator("#prompt textarea").fill("   ")
        page.locator("#send").click()
        page.locator(".toast-body").first.wait_for(timeout=10_000)
        seen["error_overlays"] = overlays(page)
        page.wait_for_timeout(600)  # the toast fades in: a shot at once shows the page without it
        shot(page, out_dir / "chat_error.png", seen)
        page.locator("#copy-link").click()
        page.locator("#share-link textarea").wait_for(timeout=10_000)
        page.wait_for_function("document.querySelector('#share-link textarea').value.startsWith('http')", timeout=10_000)
        link = seen["link"] = page.locator("#share-link textarea").input_value()
        lam_box = page.locator("#lambda input[type=number]")
        lam_box.fill("0")  # the λ slider reaches 0 (the base model); β = β_train/λ is shown beside it
        lam_box.press("Enter")
        page.get_by_text("λ 0: the base model alone").first.wait_for(timeout=10_000)
        seen["lambda_label"] = page.get_by_text("λ 0: the base model alone").first.inner_text()
        if tabs:
            for tab in ("Trade-off", "Diffusion guidance"):
                button = page.get_by_role("tab", name=tab)
                if button.count():
                    button.click()
                    page.wait_for_timeout(800)
                    if tab == "Diffusion guidance":
                        page.get_by_role("button", name="Generate", exact=True).click()
                        page.locator("#guidance-samples img").first.wait_for(timeout=timeout_ms)
                    shot(page, out_dir / f"tab_{tab.lower().replace(' ', '_').replace('-', '_')}.png", seen, full_page=True)
        shared = open_page(browser, link)  # a fresh context: no cookies, no session
        shared.locator("#replay").wait_for(timeout=10_000)
        shared.locator("#replay").click()
        wait_streaming(shared, timeout_ms)
        wait_done(shared, timeout_ms)
        seen["replayed_answers"] = answers(shared)
        shot(shared, out_dir / "chat_shared.png", seen)
        phone = open_page(browser, url, viewport=PHONE, is_mobile=True, has_touch=True)
        box = phone.locator("#prompt").bounding_box()
        seen["phone_input_bottom"] = box["y"] + box["height"]
        send(phone, prompt)
        wait_streaming(phone, timeout_ms)
        phone.wait_for_timeout(1500)
        shot(phone, out_dir / "chat_phone_streaming.png", seen)
        wait_done(phone, timeout_ms)
        shot(phone, out_dir / "chat_phone_done.png", seen)
        browser.close()
    return seen


def open_duel(page) -> None:
    """Switch the Side-by-side tab to its Blind duel mode."""
    page.locator("#sbs-mode").get_by_text("Blind duel").click()
    page.locator("#duel-prompt textarea").wait_for(timeout=10_000)


def duel_and_vote(page, prompt: str, outcome: str = "a", timeout_ms: int = 240_000, before=None) -> str:
    """Generate a duel, call `before(page)` while it waits for the vote, vote; returns the revealed text."""
    page.locator("#duel-prompt textarea").fill(prompt)
    page.locator("#duel-generate").click()
    page.locator(f"#vote-{outcome}").wait_for(state="visible", timeout=timeout_ms)
    if before is not None:
        before(page)
    page.locator(f"#vote-{outcome}").click()
    page.locator("#duel-reveal", has_text="saved").wait_for(timeout=30_000)
    return page.locator("#duel-reveal").inner_text()


def open_report(page, timeout_ms: int = 60_000) -> None:
    """The Feedback tab with its report and downloads filled in."""
    page.get_by_role("tab", name="Feedback").click()
    page.locator("#votes-refresh").click()
    page.locator("#votes-trl", has_text="votes_trl").wait_for(timeout=timeout_ms)
    page.wait_for_timeout(800)  # the Bradley–Terry plot draws after the tables


def drive_feedback(url: str, out_dir: Path, prompt: str = "How should I spend a free Sunday?",
                   timeout_ms: int = 240_000) -> dict:
    """At 1400 px and 390 px: a blind duel before the vote, after it (settings revealed), and the Feedback tab
    (report + downloads); screenshots feedback_{duel,revealed,tab}_{1400,390}.png."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    seen: dict = {"shots": []}
    with sync_playwright() as p:
        browser = launch(p)
        for viewport, extra in ((DESKTOP, {}), (PHONE, {"is_mobile": True, "has_touch": True})):
            width, phone = viewport["width"], viewport is PHONE
            page = open_page(browser, url, viewport=viewport, **extra)
            open_duel(page)

            def before_vote(pg, width=width, phone=phone):
                (pg.locator("#duel-votes") if phone else pg.locator("#duel-input")).scroll_into_view_if_needed()
                shot(pg, out_dir / f"feedback_duel_{width}.png", seen, full_page=phone)

            seen[f"revealed_{width}"] = duel_and_vote(page, prompt, "a", timeout_ms, before_vote)
            page.locator("#duel-reveal").scroll_into_view_if_needed()
            shot(page, out_dir / f"feedback_revealed_{width}.png", seen, full_page=phone)
            open_report(page, timeout_ms)
            seen[f"summary_{width}"] = page.locator("#votes-report").inner_text()[:300]
            shot(page, out_dir / f"feedback_tab_{width}.png", seen, full_page=True)
            page.context.close()
        browser.close()
    return seen
