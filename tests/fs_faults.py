"""Filesystems a test can break on purpose: read-only and full, on a small tmpfs the test mounts (root) or, for
read-only without root, a directory without write permission. Skips with the reason when neither is possible."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest


def _mount(target: Path, options: str) -> None:
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


@contextlib.contextmanager
def small_tmpfs(target: Path, size: str = "1m"):
    """A `size` tmpfs mounted on `target` (created) for the block; needs root, else skips."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    target.mkdir(parents=True, exist_ok=True)
    _mount(target, f"size={size},mode=0777")
    try:
        yield target
    finally:
        _umount(target)


def remount(target: Path, options: str) -> None:
    """Change a mounted tmpfs's options, e.g. "ro" or "rw" (remount keeps its files)."""
    done = subprocess.run(["mount", "-o", f"remount,{options}", str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount {target} {options} ({done.stderr.strip()})")


def fill(target: Path) -> Path:
    """Fill the filesystem at `target` to the last byte; the file that did it (delete it to free the space)."""
    filler = target / "filler.bin"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: nothing is left to flush (and fail) at close
        for block in (65536, 1):
            with contextlib.suppress(OSError):
                while f.write(b"\0" * block):
                    pass
    return filler


@contextlib.contextmanager
def readonly_dir(target: Path):
    """A directory nothing can be created in: a read-only tmpfs as root, a 0555 directory otherwise."""
    target.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        _mount(target, "ro,size=64k")
        try:
            yield target
        finally:
            _umount(target)
    else:
        target.chmod(0o555)
        try:
            yield target
        finally:
            target.chmod(0o755)
