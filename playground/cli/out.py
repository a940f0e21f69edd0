"""`--out FILE.json` checked before anything loads or decodes: a job's work is never lost to a bad path.

`check_out(value, mkdir=False)`: the path ends in .json; it is not a directory; its parent is a directory (or,
with `--mkdir`, missing directories are created now, under a directory); and a file can be created there
(tried, then removed: catches read-only filesystems and permissions, also for root). Missing directories are an
error unless `--mkdir` is given: a typo'd `--out` does not silently grow a new tree.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from playground.settings.validation import InputError


def add_out_arguments(p: argparse.ArgumentParser, help_out: str, required: bool = False, default: str | None = None) -> None:
    p.add_argument("--out", required=required, default=default, help=help_out)
    p.add_argument("--mkdir", action="store_true", help="create --out's missing directories (else they must exist)")


def _existing_ancestor(path: Path) -> Path:
    for parent in (path, *path.parents):
        if os.path.lexists(parent):
            return parent
    return Path(".")


def check_out(value: object, mkdir: bool = False) -> Path:
    """The checked output path (see the module doc); InputError naming `out` otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise InputError("out: give --out FILE.json")
    out = Path(value)
    if out.suffix.lower() != ".json":
        raise InputError(f"out must end in .json; got {value!r}")
    if out.is_dir():
        raise InputError(f"out: {value!r} is a directory; give a file path ending in .json")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        found = _existing_ancestor(parent)
        if not found.is_dir():
            raise InputError(f"out: {str(found)!r} is a file, not a directory, so {value!r} cannot be written")
        if not mkdir:
            raise InputError(f"out: directory {str(parent)!r} does not exist; create it or pass --mkdir")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"out: cannot create directory {str(parent)!r} ({err.strerror or err})") from None
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".write-check-", suffix=".tmp"):
            pass
    except OSError as err:
        raise InputError(f"out: cannot write in {str(parent)!r} ({err.strerror or err}); choose another --out") from None
    if out.exists() and not os.access(out, os.W_OK):
        raise InputError(f"out: {value!r} exists and cannot be overwritten; choose another --out")
    return out
