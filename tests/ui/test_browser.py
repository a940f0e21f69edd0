"""A real headless Chromium drives the app as scripts/screenshots.py does: chat, error, share link, phone, tabs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser import chromium_path, drive
from tests.test_app import serve

pytestmark = pytest.mark.browser


@pytest.mark.slow  # 50 s; chat, errors, share replay and the phone are covered by tests/ui/test_chat_ux.py
@pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")
def test_browser_side_by_side(tiny_playground, tmp_path):
    pytest.importorskip("playwright")
    demo, url = serve(tiny_playground)
    try:
        out = Path(os.environ.get("SCREENSHOT_DIR", tmp_path))
        seen = drive(url, out, prompt="Tell me about cats.")
    finally:
        demo.close()
    assert seen["kept_text"] == "And what if it snows?"
    assert all(text.strip() for text in seen["first_answers"].values())
    assert seen["replayed_answers"] == seen["first_answers"]
    assert seen["error_overlays"] == 0
    assert seen["phone_input_bottom"] <= 844
    assert "β = β_train/λ = ∞" in seen["lambda_label"]  # λ 0: the base model, infinite nominal KL strength
    for shot in seen["shots"]:
        assert shot.stat().st_size > 10_000
