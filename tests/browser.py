"""Drive the app in a real headless Chromium (Debian's, through Playwright) and take screenshots.

Used by tests/test_browser.py (tiny model) and scripts/screenshots.py (the shipped model, for docs/).
"""
from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def answers_done(page, column: str) -> bool:
    text = page.locator(f"#chat-{column}").inner_text()
    return "tokens/s" in text and "tok/s" in text


def drive(url: str, out_dir: Path, prompt: str = "Give me a tip for a rainy day.", timeout_ms: int = 240_000) -> dict:
    """Type a prompt, wait for all three columns, move the KL slider, visit every tab; screenshot each."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    seen: dict = {"shots": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url, wait_until="load")
        page.locator("#prompt textarea").wait_for(timeout=60_000)
        page.locator("#prompt textarea").fill(prompt)
        page.locator("#prompt textarea").press("Enter")
        for column in ("base", "realigned", "tuned"):
            page.locator(f"#chat-{column}").get_by_text("tok/s").first.wait_for(timeout=timeout_ms)
        seen["first_answers"] = {c: page.locator(f"#chat-{c}").inner_text() for c in ("base", "realigned", "tuned")}
        page.screenshot(path=str(out_dir / "side_by_side.png"), full_page=True)
        seen["shots"].append(out_dir / "side_by_side.png")
        kl_box = page.locator("#kl-strength input[type=number]")
        kl_box.fill(str(float(kl_box.input_value()) / 2))
        kl_box.press("Enter")
        page.get_by_text("λ = β_train/β = 1 ").first.wait_for(timeout=10_000)  # from λ = 0.5 to 1
        seen["lambda_label"] = page.get_by_text("λ = β_train/β = 1 ").first.inner_text()
        for tab in ("Trade-off", "Diffusion guidance"):
            button = page.get_by_role("tab", name=tab)
            if button.count():
                button.click()
                page.wait_for_timeout(800)
                if tab == "Diffusion guidance":
                    page.get_by_role("button", name="Generate", exact=True).click()
                    page.locator("#guidance-samples img").first.wait_for(timeout=timeout_ms)
                path = out_dir / f"tab_{tab.lower().replace(' ', '_').replace('-', '_')}.png"
                page.screenshot(path=str(path), full_page=True)
                seen["shots"].append(path)
        browser.close()
    return seen
