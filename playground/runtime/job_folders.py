"""Folders for the files a job hands to its user (JSON, CSV, PNG), removed with the cache policy.

Gradio copies every file it serves into its own cache and deletes those copies after `SERVE.delete_cache_s`;
the folders written here are pruned after the same age, each time a new one is made, so a busy server does
not fill its temp folder (`<temp>/controllability-playground/<kind>-XXXX`).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from playground.settings.server import SERVE

ROOT_NAME = "controllability-playground"


def scratch_root() -> Path:
    root = Path(tempfile.gettempdir()) / ROOT_NAME
    root.mkdir(parents=True, exist_ok=True)
    return root


def prune(max_age_s: float = SERVE.delete_cache_s, now: float | None = None) -> int:
    """Remove job folders older than `max_age_s`; returns how many were removed."""
    now, removed = time.time() if now is None else now, 0
    for folder in scratch_root().iterdir():
        try:
            if folder.is_dir() and now - folder.stat().st_mtime > max_age_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        except OSError:  # another worker removed it first
            continue
    return removed


def job_folder(kind: str) -> str:
    """A fresh folder for one job's files (`kind`: tradeoff, probe, calibrate, votes); prunes old ones first."""
    prune()
    return tempfile.mkdtemp(prefix=f"{kind}-", dir=scratch_root())
