"""The UI is built and served before torch is imported; requests sent while the model loads wait for it."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from playground import registry
from playground.runtime.startup import LazyPlayground
from playground.settings.validation import InputError

ROOT = Path(__file__).resolve().parents[2]


def test_building_the_ui_imports_no_torch():
    code = ("import sys, app; from playground.runtime.startup import LazyPlayground; app.build_demo(LazyPlayground.from_registry()); "
            "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'sklearn') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_adapters_come_from_the_registry_before_the_model():
    lazy = LazyPlayground.from_registry()
    names = {a.name for a in registry.installed_adapters(registry.DEFAULT_BASE)}
    assert set(lazy.adapters) == names and not lazy.ready
    assert all(a.beta_train > 0 and a.description for a in lazy.adapters.values())


class _FakePlayground:
    adapters = {"a": object()}

    def settings(self, prompt: str) -> str:
        return f"settings for {prompt}"


def test_a_request_during_loading_waits_for_the_model():
    lazy = LazyPlayground({"a": object()})
    answers: list[str] = []
    waiting = threading.Thread(target=lambda: answers.append(lazy.settings("hi")))
    waiting.start()
    time.sleep(0.2)
    assert not answers  # still waiting: nothing answered, nothing lost
    pg = lazy.load(_FakePlayground)
    waiting.join(timeout=5)
    assert answers == ["settings for hi"] and lazy.ready and lazy.adapters is pg.adapters


def test_a_request_gives_up_with_a_clear_message():
    with pytest.raises(InputError, match="still loading after 0 s"):
        LazyPlayground({}).get(timeout=0.01)
    with pytest.raises(AttributeError):
        LazyPlayground({})._private  # noqa: B018 - private look-ups never wait
