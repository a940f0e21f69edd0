"""`benchmarks/run.py --quick` runs end to end on the shipped model (a benchmark that no longer runs is a broken
build): every section writes its keys, on the default weight path."""
from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys
from pathlib import Path

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
KEYS = ["weights", "realigned_tok_s", "realigned_ttft_s", "side_by_side_tok_s", "sweep16_row_tok_s", "sweep64_row_tok_s",
        "naive_sweep64_row_tok_s", "llamacpp_tok_s", "rss_base_mb", "rss_4_adapters_mb", "startup_cached_s",
        "realigned_vs_llamacpp", "side_by_side_vs_llamacpp", "sweep64_vs_llamacpp", "rss_4_adapters_vs_base", "step_profile"]


def test_quick_benchmark_runs_and_writes_every_key(tmp_path):
    out = tmp_path / "results.json"
    env = {**os.environ, "PLAYGROUND_DTYPE": "auto"}  # the default path, not the tests' float32
    done = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--skip", "diffusion,hf", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())
    missing = [k for k in KEYS if k not in r]
    assert not missing, missing
    assert r["realigned_tok_s"] > 0 and r["sweep64_row_tok_s"] > 0 and r["rss_4_adapters_mb"] > 0
    assert {"forward_ms", "sample_and_readouts_ms", "other_forward_ms"} <= set(r["step_profile"][0])
    assert "realigned_tok_s" in done.stdout  # the table
