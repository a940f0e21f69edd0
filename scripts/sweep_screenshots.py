"""A finished sweep in the Trade-off tab, at 1400 px and 390 px, from the real app: docs/sweep_done_*.png.

    .venv/bin/python -m scripts.sweep_screenshots      # from the repository root

A small grid (3 typed prompts × λ {0, 1, 2} × T 0.7 × 2 samples × 32 tokens) keeps it under a minute.
"""
from __future__ import annotations

from pathlib import Path

from scripts.screenshots import start_app
from tests.browser import DESKTOP, PHONE, launch, open_page

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = "Give me a tip for a rainy day.\nHow should I spend a free Sunday?\nTell me about keeping a small garden."


def fill(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} textarea, #{elem_id} input[type=number]").first
    box.fill(value)
    box.press("Tab")


def open_tab(page, name: str) -> None:
    """Click a tab; at phone width Gradio moves tabs that do not fit into an overflow menu."""
    tab = page.get_by_role("tab", name=name)
    if not tab.is_visible():
        page.get_by_role("button", name="More tabs").click()
        tab = page.locator(".overflow-dropdown button").get_by_text(name, exact=True)
    tab.click()


def finished_sweep(page, out: Path, timeout_ms: int = 300_000) -> list[Path]:
    open_tab(page, "Trade-off")
    page.locator("#sweep-source").get_by_text("Typed (one per line)").click()
    for elem_id, value in (("sweep-typed", PROMPTS), ("sweep-grid", "0,1,2"), ("sweep-temps", "0.7"),
                           ("sweep-samples", "2"), ("sweep-max-new", "32")):
        fill(page, elem_id, value)
    page.locator("#sweep-estimate").get_by_text("Estimate").wait_for(timeout=30_000)
    page.locator("#run-sweep").click()
    page.get_by_text("answers (3 prompts").wait_for(timeout=timeout_ms)
    page.wait_for_timeout(1500)  # plots render
    shots = []
    page.get_by_text("One row per (λ, T)").first.scroll_into_view_if_needed()
    page.screenshot(path=str(out.with_name(out.stem + "_view.png")))
    page.screenshot(path=str(out), full_page=True)
    shots += [out.with_name(out.stem + "_view.png"), out]
    return shots


def main() -> None:
    from playwright.sync_api import sync_playwright

    proc, url = start_app()
    try:
        with sync_playwright() as p:
            browser = launch(p)
            for name, viewport in (("1400", DESKTOP), ("390", PHONE)):
                page = open_page(browser, url, viewport)
                for path in finished_sweep(page, ROOT / "docs" / f"sweep_done_{name}.png"):
                    print(path.relative_to(ROOT))
                page.context.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
