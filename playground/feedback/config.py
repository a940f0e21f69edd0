"""Where human-feedback votes live: `FeedbackSettings` (defined, with its environment variables, in
`playground/settings/`) and the helpers that resolve the data directory and the salt (`playground/settings/paths.py`),
re-exported here for the feedback package, `models/` and the tests; plus the duel's answer-length cap.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from playground.settings.paths import default_data_dir, load_or_create_salt, sqlite_url
from playground.settings.paths import APP_DIR_NAME, DB_FILE_NAME, SALT_FILE_NAME
from playground.settings.request import DEFAULT_DECODE, LIMITS
from playground.settings.votes import FEEDBACK_LIMITS
from playground.settings.paths import SPACE_DATA_DIR
from playground.settings.votes import FeedbackSettings

__all__ = ["APP_DIR_NAME", "DB_FILE_NAME", "FEEDBACK_LIMITS", "SALT_FILE_NAME", "SPACE_DATA_DIR", "FeedbackSettings",
           "default_data_dir", "duel_max_new_tokens", "load_or_create_salt", "sqlite_url"]


def duel_max_new_tokens(env: Mapping[str, str] | None = None) -> int:
    """PLAYGROUND_DUEL_MAX_NEW_TOKENS (1…LIMITS.max_new_tokens), else the chat default; ValueError names a bad value."""
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
