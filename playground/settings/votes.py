"""Human feedback's settings: where votes and adapters trained on them live, and their limits.

Stdlib only: the data directory's files (folder, SQLite URL, salt) come from `playground.settings.paths`.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from playground.settings.paths import (DB_FILE_NAME, SPACE_DATA_DIR, TRAINED_DIR_NAME, default_data_dir, load_or_create_salt,
                                       sqlite_url)


@dataclass(frozen=True)
class FeedbackSettings:
    """The vote store: location, privacy salt and limits. `from_env` reads (at call time, never at import):

    - `PLAYGROUND_DATABASE_URL`: any SQLAlchemy URL, e.g. `postgresql+psycopg://user:pw@host/db` (several replicas
      share one database). Unset: the SQLite file `votes.sqlite3` (WAL mode) in the data directory.
    - `PLAYGROUND_DATA_DIR`: the data directory. Unset: `/data/controllability-playground` when `/data` is a
      writable folder (a Space's persistent storage), else `$XDG_DATA_HOME` (`~/.local/share`)`/controllability-playground`.
    - `PLAYGROUND_VOTE_SALT`: the secret session ids are hashed with. Unset: a random salt created once and kept in
      `<data dir>/vote_salt` (mode 0600), so a restart hashes the same session to the same value.
    - `PLAYGROUND_DUEL_MAX_NEW_TOKENS` (read by `playground.feedback.config.duel_max_new_tokens`): a duel's answer
      length cap, default `DEFAULT_DECODE.max_new_tokens`, at most `LIMITS.max_new_tokens`.
    """

    database_url: str  # "sqlite:///path/votes.sqlite3" or "postgresql+psycopg://..."
    data_dir: Path  # the default SQLite file and the persisted salt
    salt: str = field(repr=False)  # mixed into every session-id hash (HMAC-SHA256); never logged or shown
    duel_expiry_s: float = 30 * 60  # a duel waiting for a vote expires; a late vote is refused
    max_prompt_chars: int = 4000  # longest stored prompt (the UI caps prompts at 4000 before generating)
    max_answer_chars: int = 16000  # longest stored answer (256 tokens rarely exceed 2000 characters)
    max_conversation_chars: int = 200_000  # earlier conversation, JSON-encoded (8 turns of prompt + answer)
    max_name_chars: int = 200  # model / adapter name, hash, idempotency key or judge name
    max_json_chars: int = 4000  # JSON of one answer's settings, or of the judge scores
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


FEEDBACK_LIMITS = FeedbackSettings(database_url="", data_dir=Path("."), salt="")  # the default limits alone





@dataclass(frozen=True)
class TrainingSettings:
    """"Train an adapter from these votes" (playground/feedback/training.py). `from_env` reads
    `PLAYGROUND_ALLOW_TRAINING` (`1` turns the button on; off by default: a Space visitor cannot start a CPU-heavy
    job) and the data directory (adapters go to `<data dir>/adapters/<name>/`, which survives restarts)."""

    allowed: bool = False
    adapters_dir: Path = Path(".")
    # Fewer usable votes (decisive, two different answers) than this: refused up front, the count shown.
    min_votes: int = 20
    # DPO β: higher = the adapter stays closer to the base model. Steps: more = further from it, slower
    # (≈ 11–16 s per step for SmolLM2-135M on a 2-core CPU).
    default_beta: float = 0.1
    min_beta: float = 0.01
    max_beta: float = 10.0
    default_steps: int = 25
    max_steps: int = 300
    max_name_chars: int = 40
    name_pattern: re.Pattern = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")  # a slug; no leading dot
    timeout_s: float = 3 * 3600  # a job running longer is stopped (failed)
    term_grace_s: float = 0.5  # SIGTERM to the job's process group, then SIGKILL after this
    poll_s: float = 0.1  # how often the UI reads the job's progress
    # The train event's own pool. 2, not 1: one job runs per process, and a second request reaches the manager and is
    # refused at once (with 1 it would wait in the queue until the first job ends, then start).
    event_concurrency: int = 2
    nice: int = 10  # the trainer's process and session run at a lower CPU priority than the app, so chat keeps answering
    # Share of the progress bar per step of models/train_adapter.py (no evaluate step: it is slow on a CPU).
    phases: tuple[tuple[str, float], ...] = (("pairs", 0.05), ("train", 0.9), ("export", 0.05))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, space_dir: Path = SPACE_DATA_DIR) -> TrainingSettings:

        env = os.environ if env is None else env
        return cls(allowed=env.get("PLAYGROUND_ALLOW_TRAINING", "").strip() == "1",
                   adapters_dir=default_data_dir(env, space_dir) / TRAINED_DIR_NAME)


TRAINING = TrainingSettings()  # the defaults alone (training off)
