"""The whole app (app.build_demo + launch, the same launch options as production) on the tiny test model, as its
own process, so a test can SIGKILL it mid-way and start it again on the same vote database.

    python tests/feedback/app_server.py PORT MODEL_DIR NAME=ADAPTER_DIR ...

The vote database and the rest come from the environment as in production (PLAYGROUND_DATABASE_URL,
PLAYGROUND_VOTE_SALT, PLAYGROUND_DUEL_MAX_NEW_TOKENS, PLAYGROUND_DATA_DIR, PLAYGROUND_ALLOW_TRAINING); adapters
trained in the app (`<data dir>/adapters/`) are loaded as `Playground.from_registry` does. With
TEST_FAKE_TRAINER_LORA=DIR, training jobs run tests/feedback/fake_trainer.py (exporting that LoRA) instead of
models/train_adapter.py. Prints "ready" once it serves; runs until killed.
"""
from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # run as `python -m tests.feedback.app_server` from the repository


def main() -> None:
    port, model_dir, specs = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    import app as app_module
    from playground.lm.loading import load_base
    from playground.service import AdapterInfo, Playground

    infos = []
    for spec in specs:
        name, _, path = spec.partition("=")
        card = json.loads((Path(path) / "card.json").read_text())
        infos.append(AdapterInfo(name, Path(path), card["beta"], card["judge"]))
    pg = Playground(load_base(model_dir), infos)
    from playground.settings.votes import TrainingSettings

    pg.load_trained(TrainingSettings.from_env().adapters_dir)
    if os.environ.get("TEST_FAKE_TRAINER_LORA"):
        use_fake_trainer(Path(os.environ["TEST_FAKE_TRAINER_LORA"]))
    pg.judge("on_topic").score(["warm up"], ["the embedding model"])  # load judges before "ready"
    demo = app_module.build_demo(pg)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **app_module.launch_kwargs(demo))
    print("ready", flush=True)
    threading.Event().wait()  # serve until killed


def use_fake_trainer(lora: Path) -> None:
    from playground.feedback import training

    fake = Path(__file__).with_name("fake_trainer.py")

    def commands(req, paths, settings):
        return [("train", [sys.executable, str(fake), "--out", str(paths.out_dir), "--lora", str(lora), "--base", paths.base,
                           "--beta", repr(req.beta), "--steps", str(req.steps), "--limit", str(paths.limit),
                           "--delay", "0.05"], 1.0)]

    training.vote_commands = commands


if __name__ == "__main__":
    main()
