"""Where votes are stored and how sessions are hashed, from the environment."""
from __future__ import annotations

import stat

import pytest

from playground.feedback.config import default_data_dir, load_or_create_salt
from playground.settings.votes import FeedbackSettings
from playground.feedback.store import VoteStore
from playground.feedback.vote import FeedbackError, hash_session


def test_database_url_from_the_environment_wins(tmp_path):
    env = {"PLAYGROUND_DATABASE_URL": "postgresql+psycopg://u@db/votes", "PLAYGROUND_DATA_DIR": str(tmp_path)}
    s = FeedbackSettings.from_env(env)
    assert s.database_url == "postgresql+psycopg://u@db/votes"
    assert s.duel_lambdas == (0.0, 0.5, 1.0, 2.0)


def test_default_is_an_sqlite_file_in_the_data_dir(tmp_path):
    s = FeedbackSettings.from_env({"PLAYGROUND_DATA_DIR": str(tmp_path / "data")})
    assert s.database_url == f"sqlite:///{tmp_path / 'data' / 'votes.sqlite3'}"
    with VoteStore.open(s) as store:
        assert store.count() == 0
    assert (tmp_path / "data" / "votes.sqlite3").exists()


def test_data_dir_is_the_space_volume_when_writable_else_the_user_folder(tmp_path):
    space = tmp_path / "space-data"
    assert default_data_dir({"XDG_DATA_HOME": str(tmp_path / "xdg")}, space) == tmp_path / "xdg" / \
        "controllability-playground"
    space.mkdir()
    assert default_data_dir({}, space) == space / "controllability-playground"
    assert default_data_dir({"PLAYGROUND_DATA_DIR": str(tmp_path / "x")}, space) == tmp_path / "x"


def test_salt_is_random_persisted_private_and_overridable(tmp_path):
    first = load_or_create_salt(tmp_path)
    assert len(first) == 64 and load_or_create_salt(tmp_path) == first  # same salt after a restart
    assert stat.S_IMODE((tmp_path / "vote_salt").stat().st_mode) == 0o600
    assert load_or_create_salt(tmp_path / "other") != first
    env = {"PLAYGROUND_DATA_DIR": str(tmp_path), "PLAYGROUND_VOTE_SALT": "from-env"}
    s = FeedbackSettings.from_env(env)
    assert s.salt == "from-env" and "from-env" not in repr(s)


def test_session_hash_is_salted_and_stable():
    h = hash_session("session-123", "salt-1")
    assert h == hash_session("session-123", "salt-1") and len(h) == 64
    assert h != hash_session("session-123", "salt-2") and h != hash_session("session-124", "salt-1")
    assert "session-123" not in h
    with pytest.raises(FeedbackError, match="session_id"):
        hash_session("", "salt")


def test_duel_answer_length_comes_from_the_environment():
    from playground.feedback.config import duel_max_new_tokens
    from playground.settings.request import DEFAULT_DECODE

    assert duel_max_new_tokens({}) == DEFAULT_DECODE.max_new_tokens
    assert duel_max_new_tokens({"PLAYGROUND_DUEL_MAX_NEW_TOKENS": "48"}) == 48
    for bad in ("0", "257", "many"):
        with pytest.raises(ValueError, match="PLAYGROUND_DUEL_MAX_NEW_TOKENS must be an integer in"):
            duel_max_new_tokens({"PLAYGROUND_DUEL_MAX_NEW_TOKENS": bad})


def test_feedback_settings_live_in_settings_which_imports_no_feedback_module():
    import subprocess
    import sys

    from playground.feedback import config
    from playground.settings.votes import FeedbackSettings as FromSettings

    assert config.FeedbackSettings is FromSettings
    code = ("import sys, playground.settings.votes as s; s.FeedbackSettings.from_env({'PLAYGROUND_VOTE_SALT': 'x', "
            "'PLAYGROUND_DATABASE_URL': 'sqlite://'}); print(sorted(m for m in sys.modules if m.startswith('playground')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "playground.feedback" not in out and "playground.settings" in out
