"""A real headless Chromium drives the app: type, see three columns answer, move the KL slider, open tabs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser import chromium_path, drive
from tests.test_app import free_port

pytestmark = pytest.mark.browser


@pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")
def test_browser_side_by_side(tiny_playground, tmp_path):
    pytest.importorskip("playwright")
    from app import build_demo

    demo = build_demo(tiny_playground)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        out = Path(os.environ.get("SCREENSHOT_DIR", tmp_path))
        seen = drive(f"http://127.0.0.1:{port}/", out, prompt="Tell me about cats.")
    finally:
        demo.close()
    for column, text in seen["first_answers"].items():
        assert "Tell me about cats." in text and "tok/s" in text, column
    assert "λ = β_train/β = 1 " in seen["lambda_label"]
    for shot in seen["shots"]:
        assert shot.stat().st_size > 10_000
