"""Launch the real app (embedded default + shipped adapters) and save browser screenshots to docs/.

    .venv/bin/python -m scripts.screenshots [--only chat|feedback]   # from the repository root (imports tests/browser.py)

chat: the chat at 1400 px and 390 px (mid-stream and done), an error toast, a share link opened and replayed, and
the tabs. feedback: at 1400 px and 390 px, a blind duel before the vote, after it (settings revealed) and the
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

from tests.browser import drive, drive_feedback

ROOT = Path(__file__).resolve().parent.parent

SHOTS = {  # name -> what it shows (docs/<name>.png)
    "chat": ("chat_streaming", "chat_done", "chat_error", "chat_shared", "chat_phone_streaming", "chat_phone_done",
             "tab_trade_off", "tab_diffusion_guidance"),
    "feedback": tuple(f"feedback_{what}_{width}" for width in (1400, 390) for what in ("duel", "revealed", "tab")),
}
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
            shots += drive(url, ROOT / "docs")["shots"]
        if "feedback" in groups:
            shots += drive_feedback(url, ROOT / "docs")["shots"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)
    for shot in shots:
        print(shot.relative_to(ROOT))


if __name__ == "__main__":
    main()
