"""Job output folders leave the temp folder with the cache policy (issue 14: tradeoff-* folders piled up)."""
from __future__ import annotations

import os
import time
from pathlib import Path


def test_old_job_folders_are_pruned_when_a_new_one_is_made(tmp_path, monkeypatch):
    import tempfile

    from playground.runtime import job_folders as scratch
    from playground.settings.server import SERVE

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old = Path(scratch.job_folder("tradeoff"))
    (old / "sweep.json").write_text("{}")
    past = time.time() - SERVE.delete_cache_s - 10
    os.utime(old, (past, past))
    fresh = Path(scratch.job_folder("probe"))
    assert not old.exists() and fresh.is_dir() and fresh.parent == tmp_path / scratch.ROOT_NAME
    assert fresh.name.startswith("probe-")
