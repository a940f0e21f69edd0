"""Launch the real app (embedded default + shipped adapters) and save browser screenshots to docs/.

    .venv/bin/python -m scripts.screenshots      # from the repository root (imports tests/browser.py)

Chat at 1400 px and 390 px (mid-stream and done), an error toast, a share link opened and replayed, and the tabs.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from benchmarks.load import start_app
from tests.browser import drive


def main() -> None:
    proc, url = start_app()
    try:
        seen = drive(url, ROOT / "docs")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    for shot in seen["shots"]:
        print(shot.relative_to(ROOT))


if __name__ == "__main__":
    main()
