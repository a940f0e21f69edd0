"""Where things live on disk: the repository, the cache for derived weights, the data directory and its files.

The data directory holds what must survive a restart (votes, the vote salt, adapters trained in the app);
the environment variables are documented on `playground.settings.votes.FeedbackSettings`. Stdlib only.
"""
from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """Where converted weights and other derived files live (outside git). Override with PLAYGROUND_CACHE."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "controllability-playground"
    path = Path(os.environ.get("PLAYGROUND_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path



SPACE_DATA_DIR = Path("/data")  # Hugging Face Spaces persistent storage
APP_DIR_NAME = "controllability-playground"
DB_FILE_NAME = "votes.sqlite3"
SALT_FILE_NAME = "vote_salt"
TRAINED_DIR_NAME = "adapters"  # <data dir>/adapters/<name>/: adapters trained in the app, loaded at startup


def sqlite_url(path: Path) -> str:
    """`sqlite:////abs/path` for a file path."""
    return f"sqlite:///{Path(path).resolve()}"


def default_data_dir(env: Mapping[str, str] | None = None, space_dir: Path = SPACE_DATA_DIR) -> Path:
    """PLAYGROUND_DATA_DIR, else `space_dir` (/data) when it is a writable folder, else the user data folder."""
    env = os.environ if env is None else env
    if env.get("PLAYGROUND_DATA_DIR"):
        return Path(env["PLAYGROUND_DATA_DIR"]).expanduser()
    if space_dir.is_dir() and os.access(space_dir, os.W_OK | os.X_OK):
        return space_dir / APP_DIR_NAME
    base = Path(env["XDG_DATA_HOME"]) if env.get("XDG_DATA_HOME") else Path.home() / ".local" / "share"
    return base / APP_DIR_NAME


def load_or_create_salt(data_dir: Path) -> str:
    """The salt in `data_dir/vote_salt`, created (32 random bytes, hex, mode 0600) on first use.

    Safe against two processes starting together: the file is created with O_EXCL, and the loser reads
    the winner's salt.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SALT_FILE_NAME
    for _ in range(50):
        try:
            salt = path.read_text().strip()
        except FileNotFoundError:
            salt = ""
        if salt:
            return salt
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process is writing it: read again
            time.sleep(0.01)
            continue
        salt = secrets.token_hex(32)
        with os.fdopen(fd, "w") as f:
            f.write(salt)
            f.flush()
            os.fsync(f.fileno())
        return salt
    raise RuntimeError(f"{path} exists but stays empty; delete it or set PLAYGROUND_VOTE_SALT")
