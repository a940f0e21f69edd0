"""Launch the real app (embedded default + shipped adapters) and save browser screenshots to docs/.

    .venv/bin/python -m scripts.screenshots [--only chat|feedback|tabs|sweep]   # from the repository root (imports tests/browser.py)

chat: the chat at 1400 px and 390 px (mid-stream and done), an error toast, a share link opened and replayed, and
the tabs. tabs: every tab at 1400 px and 390 px (docs/tab_<tab>_<width>.png; Diffusion with a generated batch).
sweep: a finished small sweep in the Trade-off tab at both widths (scripts/sweep_screenshots.py). feedback: at 1400 px and 390 px, a blind duel before the vote, after it (settings revealed) and the
Feedback tab's report with its downloads. The feedback shots run on a throwaway copy of the simulated-vote
database (runs/simulated-votes, when present: 200 votes of models/simulate_votes.py) plus the votes they cast,
so the report has numbers to show; the real vote store is never touched.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.browser import DESKTOP, PHONE, drive, drive_feedback, launch, open_page

ROOT = Path(__file__).resolve().parent.parent

SHOTS = {  # name -> what it shows (docs/<name>.png)
    "chat": ("chat_streaming", "chat_done", "chat_error", "chat_shared", "chat_phone_streaming", "chat_phone_done"),
    "feedback": tuple(f"feedback_{what}_{width}" for width in (1400, 390) for what in ("duel", "revealed", "tab")),
    "tabs": tuple(f"tab_{tab}_{width}" for width in (1400, 390)
                  for tab in ("side_by_side", "feedback", "trade_off", "dera_check", "probes", "diffusion_guidance")),
    "sweep": tuple(f"sweep_done_{width}{view}" for width in (1400, 390) for view in ("", "_view")),
}
TABS = ("Side by side", "Feedback", "Trade-off", "DeRa check", "Probes", "Diffusion guidance")


def tab_file(tab: str, width: int) -> str:
    return f"tab_{tab.lower().replace(' ', '_').replace('-', '_')}_{width}.png"


def drive_tabs(url: str, out_dir: Path, timeout_ms: int = 240_000) -> list[Path]:
    """Every tab at 1400 px and 390 px, full page; the Diffusion tab after one Generate."""
    from playwright.sync_api import sync_playwright

    shots = []
    with sync_playwright() as p:
        browser = launch(p)
        for viewport, extra in ((DESKTOP, {}), (PHONE, {"is_mobile": True, "has_touch": True})):
            page = open_page(browser, url, viewport=viewport, **extra)
            for tab in TABS:
                page.get_by_role("tab", name=tab).click()
                page.wait_for_timeout(1000)
                if tab == "Diffusion guidance":
                    page.locator("#guidance-generate").click()
                    page.locator("#guidance-samples img").first.wait_for(timeout=timeout_ms)
                    page.wait_for_timeout(500)
                path = out_dir / tab_file(tab, viewport["width"])
                page.screenshot(path=str(path), full_page=True)
                shots.append(path)
            page.context.close()
        browser.close()
    return shots


def drive_sweep(url: str, out_dir: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from scripts.sweep_screenshots import finished_sweep

    shots = []
    with sync_playwright() as p:
        browser = launch(p)
        for viewport in (DESKTOP, PHONE):
            page = open_page(browser, url, viewport)
            shots += finished_sweep(page, out_dir / f"sweep_done_{viewport['width']}.png")
            page.context.close()
        browser.close()
    return shots
SIMULATED_VOTES = ROOT / "runs" / "simulated-votes"


def feedback_data_dir() -> Path:
    """A temporary data dir holding a copy of the simulated votes (or nothing), for PLAYGROUND_DATA_DIR."""
    folder = Path(tempfile.mkdtemp(prefix="screenshot-votes-"))
    for name in ("votes.sqlite3", "vote_salt"):
        if (SIMULATED_VOTES / name).exists():
            shutil.copy2(SIMULATED_VOTES / name, folder / name)
    return folder


def start_app(timeout_s: float = 300.0) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free loopback port; returns once the UI answers (the model may still be loading)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url, deadline = f"http://127.0.0.1:{port}/", time.time() + timeout_s
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url, timeout=1).status == 200:
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"app.py did not answer on {url} within {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SHOTS), help="one group of shots (default: all)")
    args = parser.parse_args()
    groups = [args.only] if args.only else list(SHOTS)
    data = feedback_data_dir()
    os.environ.update(PLAYGROUND_DATA_DIR=str(data))  # the app subprocess inherits it
    os.environ.pop("PLAYGROUND_DATABASE_URL", None)
    proc, url = start_app()
    shots = []
    try:
        if "chat" in groups:
            shots += drive(url, ROOT / "docs", tabs=False)["shots"]  # the tabs: the "tabs" group
        if "feedback" in groups:
            shots += drive_feedback(url, ROOT / "docs")["shots"]
        if "tabs" in groups:
            shots += drive_tabs(url, ROOT / "docs")
        if "sweep" in groups:
            shots += drive_sweep(url, ROOT / "docs")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)
    for shot in shots:
        print(shot.relative_to(ROOT))


if __name__ == "__main__":
    main()
