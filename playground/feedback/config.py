"""Where human-feedback votes live and the limits they are checked against.

Resolved from the environment at call time (never at import), so tests and the app can point it elsewhere:

- `PLAYGROUND_DATABASE_URL`: any SQLAlchemy URL, e.g. `postgresql+psycopg://user:pw@host/db`. Unset: an
  SQLite file `votes.sqlite3` in the data directory.
- `PLAYGROUND_DATA_DIR`: the data directory. Unset: `/data` when it exists and is writable (a Hugging Face
  Space with persistent storage mounts it there), else `$XDG_DATA_HOME/controllability-playground`
  (`~/.local/share/controllability-playground`).
- `PLAYGROUND_DUEL_MAX_NEW_TOKENS`: answer length cap of a duel's two answers (default 160, at most 256):
  shorter duels are cheaper to serve and quicker to read.
- `PLAYGROUND_VOTE_SALT`: the secret that session ids are hashed with. Unset: a random salt created once and
  kept in `<data dir>/vote_salt` (mode 0600), so a restart keeps hashing the same session to the same value.
"""
from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SPACE_DATA_DIR = Path("/data")  # Hugging Face Spaces persistent storage
APP_DIR_NAME = "controllability-playground"
DB_FILE_NAME = "votes.sqlite3"
SALT_FILE_NAME = "vote_salt"


@dataclass(frozen=True)
class FeedbackSettings:
    """Storage location, privacy salt and limits of the vote store (later part of playground/settings.py)."""

    # SQLAlchemy URL of the vote database: "sqlite:///path/votes.sqlite3" or "postgresql+psycopg://...".
    database_url: str
    # Folder for the default SQLite file and the persisted salt (PLAYGROUND_DATA_DIR, /data, or a user folder).
    data_dir: Path
    # Secret mixed into every session-id hash (HMAC-SHA256). Never logged or shown; repr hides it.
    salt: str = field(repr=False)
    # A duel (two answers waiting for a vote) expires after this many seconds; a late vote is refused.
    duel_expiry_s: float = 30 * 60
    # Longest stored user prompt, in characters (the UI caps prompts at 4000 before generating).
    max_prompt_chars: int = 4000
    # Longest stored answer text, in characters (256 tokens rarely exceed 2000 characters).
    max_answer_chars: int = 16000
    # Longest stored earlier conversation, JSON-encoded, in characters (8 turns of prompt + answer).
    max_conversation_chars: int = 200_000
    # Longest model / adapter name, hash, idempotency key or judge name, in characters.
    max_name_chars: int = 200
    # Longest JSON of one answer's settings or of the judge scores, in characters.
    max_json_chars: int = 4000
    # λ values a duel draws its two answers from: 0 = base model, 1 = tuned as trained, 2 = extrapolated.
    duel_lambdas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, space_dir: Path = SPACE_DATA_DIR) -> FeedbackSettings:
        """Settings from the environment (`env` defaults to os.environ); creates the data dir if needed."""
        env = os.environ if env is None else env
        data_dir = default_data_dir(env, space_dir)
        url = env.get("PLAYGROUND_DATABASE_URL", "").strip()
        if not url:
            data_dir.mkdir(parents=True, exist_ok=True)
            url = sqlite_url(data_dir / DB_FILE_NAME)
        salt = env.get("PLAYGROUND_VOTE_SALT", "").strip() or load_or_create_salt(data_dir)
        return cls(database_url=url, data_dir=data_dir, salt=salt)


def duel_max_new_tokens(env: Mapping[str, str] | None = None) -> int:
    """PLAYGROUND_DUEL_MAX_NEW_TOKENS (1…LIMITS.max_new_tokens), else the chat default; ValueError names a bad value."""
    from playground.settings import DEFAULT_DECODE, LIMITS

    env = os.environ if env is None else env
    raw = env.get("PLAYGROUND_DUEL_MAX_NEW_TOKENS", "").strip()
    if not raw:
        return DEFAULT_DECODE.max_new_tokens
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= LIMITS.max_new_tokens:
        raise ValueError(f"PLAYGROUND_DUEL_MAX_NEW_TOKENS must be an integer in [1, {LIMITS.max_new_tokens}]; got {raw!r}")
    return value


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
