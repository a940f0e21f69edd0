"""Schemathesis against the launched app's two OpenAPI schemas finds no server error (5xx) and no broken stream.

Bounded: 5 examples an operation, a fixed seed, one worker (≈ 35 s on 2 cores). Left out, each for a reason:
`/gradio_api/heartbeat/{session_hash}` and `/gradio_api/dev/reload` are endless SSE streams by design and
`/gradio_api/upload_progress` waits 3 s for an upload before its 404 (each example would only time out);
FastAPI's schema lists `GET /gradio_api/call[/v2]/{api_name}/{event_id}` without `api_name` (Gradio's own
schema covers them). A wider run: SCHEMATHESIS_EXAMPLES=50 SCHEMATHESIS_SEED=<n> pytest tests/runtime/test_schemathesis.py.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.test_app import app_url  # noqa: F401  (fixture)

pytest.importorskip("schemathesis")

ENDLESS = ("/gradio_api/heartbeat/{session_hash}", "/gradio_api/dev/reload", "/gradio_api/upload_progress")
UNDECLARED = ("/gradio_api/call/{api_name}/{event_id}", "/gradio_api/call/v2/{api_name}/{event_id}")
CLI = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"


@pytest.mark.parametrize("schema, excluded", [("openapi.json", ENDLESS + UNDECLARED), ("gradio_api/openapi.json", ())])
def test_schemathesis_finds_no_server_error(app_url, tmp_path, schema, excluded):
    args = [sys.executable, "-c", CLI, "run", app_url + schema, "--url", app_url.rstrip("/"),
            "--checks", "not_a_server_error", "--phases", "examples,fuzzing", "--workers", "1", "--no-color",
            "--max-examples", os.environ.get("SCHEMATHESIS_EXAMPLES", "5"), "--seed", os.environ.get("SCHEMATHESIS_SEED", "1"),
            "--request-timeout", "5", *(a for path in excluded for a in ("--exclude-path", path))]
    run = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    assert "Server error" not in out and "Network Error" not in out and " passed" in out, out[-3000:]
