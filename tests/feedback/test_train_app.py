"""The "Train an adapter from these votes" panel in the app: off unless PLAYGROUND_ALLOW_TRAINING=1 (button disabled
with the reason shown, the /train_votes route refuses too); when on, an adapter trained through /train_votes (fake
trainer) is usable at once, and survives a SIGKILL of the app and a restart (it is in the adapter pickers)."""
from __future__ import annotations

import os
import signal
import time

import pytest

from playground.feedback.config import sqlite_url
from playground.feedback.store import VoteStore
from tests.conftest import make_lora
from tests.feedback.factory import make_vote
from tests.feedback.test_reliability import app_process
from tests.test_app import GOOD, launch

pytestmark = pytest.mark.app


def _block(demo, elem_id):
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def test_training_is_off_by_default_and_the_api_refuses_too(tiny_playground, monkeypatch, tmp_path):
    from gradio_client import Client

    from app import build_demo
    from ui.components import adapter_pickers

    monkeypatch.delenv("PLAYGROUND_ALLOW_TRAINING", raising=False)
    monkeypatch.setenv("PLAYGROUND_DATA_DIR", str(tmp_path))
    demo = build_demo(tiny_playground)
    assert _block(demo, "train-go").interactive is False and _block(demo, "train-off").visible is True
    assert len(adapter_pickers(demo)) == 6  # chat, duel, trade-off, DeRa check (2), probes
    url = launch(demo)
    try:
        client = Client(url, verbose=False)
        with pytest.raises(Exception, match="training is off on this server: the operator enables it with "
                                            "PLAYGROUND_ALLOW_TRAINING=1"):
            client.predict("mine", 0.1, 5, api_name="/train_votes")
    finally:
        demo.close()
    assert not (tmp_path / "adapters").exists()

    monkeypatch.setenv("PLAYGROUND_ALLOW_TRAINING", "1")
    on = build_demo(tiny_playground)
    assert _block(on, "train-go").interactive is True and _block(on, "train-off").visible is False


def picker_choices(client) -> list[list[str]]:
    """The choices of every adapter picker in the app's config (what a freshly opened page shows)."""
    return [[c[1] for c in comp["props"]["choices"]] for comp in client.config["components"]
            if "adapter-picker" in (comp["props"].get("elem_classes") or [])]


def cancelled_job_stops(client, adapters_dir) -> None:
    """A job (200 fake steps of 50 ms) shows progress; a client's cancel stops it and removes its files within 1.5 s."""
    job = client.submit("too-slow", 0.1, 200, api_name="/train_votes")
    deadline = time.monotonic() + 60
    while not (job.status().progress_data and list(adapters_dir.glob(".staging-*"))):
        assert time.monotonic() < deadline, f"no progress: {job.status()}"
        time.sleep(0.05)
    assert 0 <= job.status().progress_data[0].progress <= 1  # the progress bar's fraction
    job.cancel()
    start = time.monotonic()
    while list(adapters_dir.glob(".staging-*")) and time.monotonic() - start < 1.5:
        time.sleep(0.02)
    assert not list(adapters_dir.glob(".staging-*")) and not (adapters_dir / "too-slow").exists()


def test_a_trained_adapter_survives_a_sigkill_and_a_restart(tiny_model_dir, tiny_adapters, tmp_path):
    from gradio_client import Client

    db = sqlite_url(tmp_path / "votes.sqlite3")
    with VoteStore(db) as store:
        for i in range(22):
            store.record(make_vote(f"k{i}", outcome="ab"[i % 2], answer_a=f"A{i}", answer_b=f"B{i}",
                                   judge_scores={"on_topic": [0.9, 0.1]}))
    lora = make_lora(tiny_model_dir, tmp_path / "lora", seed=5)
    env = {"PLAYGROUND_ALLOW_TRAINING": "1", "PLAYGROUND_DATA_DIR": str(tmp_path / "data"),
           "TEST_FAKE_TRAINER_LORA": str(lora)}
    log = tmp_path / "app.log"
    with app_process(db, tiny_model_dir, {"a": tiny_adapters["a"]}, log, env) as (proc, url):
        client = Client(url, verbose=False)
        assert all(choices == ["a"] for choices in picker_choices(client))
        cancelled_job_stops(client, tmp_path / "data" / "adapters")
        result, card = client.predict("from-votes", 0.2, 4, api_name="/train_votes")
        assert result.startswith("**Done.**") and "22 votes" in result and "It is in the adapter pickers now" in result
        assert (card["votes_used"], card["beta"], card["steps"]) == (22, 0.2, 4)
        assert card["judge_agreement"]["on_topic"]["agree"] == 11
        with pytest.raises(Exception, match="name: an adapter called 'from-votes' exists already"):
            client.predict("from-votes", 0.2, 4, api_name="/train_votes")
        other = Client(url, verbose=False)  # another session: the server-side pickers offer it already
        assert other.predict(*{**GOOD, "adapter": "from-votes"}.values(), api_name="/chat")[2][1]["content"]
        os.kill(proc.pid, signal.SIGKILL)  # acknowledged above; now the app dies without any shutdown
        proc.wait(30)
    assert (tmp_path / "data" / "adapters" / "from-votes" / "card.json").is_file()
    with app_process(db, tiny_model_dir, {"a": tiny_adapters["a"]}, log, env) as (_proc, url):
        client = Client(url, verbose=False)
        choices = picker_choices(client)
        assert len(choices) == 6 and all(c == ["a", "from-votes"] for c in choices), choices
        assert client.predict(*{**GOOD, "adapter": "from-votes"}.values(), api_name="/chat")[2][1]["content"]
