"""Adapters trained in the app live in `<data dir>/adapters/<name>/` and are loaded at startup, next to the registry's:
by `Playground.from_registry` (via `Playground.load_trained`) and, before the model loads, by
`LazyPlayground.from_registry`. Unfinished (`.staging-*`), broken or foreign folders are skipped with the reason."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from playground import registry
from playground.settings.request import DecodeSettings
from playground.settings.votes import TrainingSettings
from playground.runtime.startup import LazyPlayground
from tests.conftest import make_lora


def trained(root: Path, name: str, src: Path, base: str, **card) -> Path:
    """A folder like the training job leaves: the LoRA files and a card naming `base`."""
    out = root / name
    out.mkdir(parents=True)
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copyfile(src / f, out / f)
    (out / "card.json").write_text(json.dumps({"beta": 0.3, "judge": "on_topic", "base_model": base,
                                               "description": f"Trained in the app on 20 votes ({name})", **card}))
    return out


@pytest.fixture(scope="module")
def lora(tiny_model_dir, tmp_path_factory) -> Path:
    return make_lora(tiny_model_dir, tmp_path_factory.mktemp("lora") / "src", seed=4)


def test_usable_folders_are_found_and_the_others_skipped_with_the_reason(lora, tmp_path):
    root = tmp_path / "adapters"
    trained(root, "good", lora, "base-x")
    trained(root, ".staging-half-1234", lora, "base-x")  # a job that died mid-way: not an adapter
    trained(root, "other-base", lora, "base-y")
    trained(root, "upbeat-b0.1", lora, "base-x")  # a registry name
    trained(root, "bad-beta", lora, "base-x", beta=0)
    (trained(root, "no-weights", lora, "base-x") / "adapter_model.safetensors").unlink()
    (root / "stray-file").write_text("")
    found, skipped = registry.trained_adapters(root, ("base-x",))
    assert [(e.name, e.beta_train, e.judge, e.description) for e in found] == [
        ("good", 0.3, "on_topic", "Trained in the app on 20 votes (good)")]
    reasons = "\n".join(skipped)
    assert len(skipped) == 4
    for why in ("is not the loaded base", "the name is a registry adapter's", "beta must be a positive number",
                "adapter_model.safetensors missing"):
        assert why in reasons
    assert registry.trained_adapters(tmp_path / "absent", ("base-x",)) == ([], [])


def test_the_playground_loads_them_and_decodes_with_them(tiny_model_dir, lora, tmp_path):
    from playground.lm.loading import load_base
    from playground.service import Playground

    pg = Playground(load_base(str(tiny_model_dir)), [])
    root = tmp_path / "adapters"
    trained(root, "kept", lora, pg.base_name)
    trained(root, "foreign", lora, "another-base")
    skipped = pg.load_trained(root)
    assert sorted(pg.adapters) == ["kept"] and len(skipped) == 1 and "another-base" in skipped[0]
    assert pg.adapters["kept"].beta_train == 0.3
    req = pg.request(pg.encode("Hi"), "kept", DecodeSettings(lam=1.0, max_new_tokens=2))
    assert len(list(pg.stream([req]))[-1][0].tokens) == 2
    assert pg.load_trained(root) == [f"{root / 'foreign' / 'card.json'}: base_model 'another-base' is not the loaded base "
                                     f"{(pg.base_name, pg.base.source)}", f"{root / 'kept'}: the name 'kept' is taken"]


def test_the_ui_lists_them_before_the_model_loads(lora, tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_DATA_DIR", str(tmp_path))
    root = TrainingSettings.from_env().adapters_dir
    assert root == tmp_path / "adapters"
    trained(root, "from-votes", lora, registry.DEFAULT_BASE)
    lazy = LazyPlayground.from_registry()
    shipped = {a.name for a in registry.installed_adapters(registry.DEFAULT_BASE)}
    assert set(lazy.adapters) == shipped | {"from-votes"} and not lazy.ready
    assert lazy.adapters["from-votes"].beta_train == 0.3


def test_training_is_off_unless_the_deployment_says_so(tmp_path):
    env = {"PLAYGROUND_DATA_DIR": str(tmp_path)}
    assert not TrainingSettings.from_env(env).allowed
    assert not TrainingSettings.from_env({**env, "PLAYGROUND_ALLOW_TRAINING": "true"}).allowed  # only "1" turns it on
    assert TrainingSettings.from_env({**env, "PLAYGROUND_ALLOW_TRAINING": "1"}).allowed
