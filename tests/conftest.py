"""Shared fixtures: a tiny random llama model and LoRA adapters built on the fly (no downloads)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Exactness tests compare against float32 references (apps launched by tests inherit this);
# tests/lm/test_dtype.py checks the bfloat16 default ("auto" on AMX CPUs) against float32 within a tolerance.
os.environ.setdefault("PLAYGROUND_DTYPE", "float32")
torch.set_num_threads(min(2, torch.get_num_threads()))


# A test whose call takes longer than this carries a mark saying why (the summary names those that do not).
LONG_TEST_S = 10.0
LONG_MARKS = {"slow", "browser", "model", "app", "ray"}
_long_unmarked: list[tuple[str, float]] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long tests (training, full benchmarks, fault runs); opt in with --runslow")
    config.addinivalue_line("markers", "browser: real headless Chromium tests (deselect: -m 'not browser')")
    config.addinivalue_line("markers", "model: tests on the shipped embedded model (deselect: -m 'not model')")
    config.addinivalue_line("markers", "app: tests that launch the app and drive it over HTTP (deselect: -m 'not app')")
    config.addinivalue_line("markers", "ray: tests on a local Ray cluster the test starts (deselect: -m 'not ray')")


def pytest_runtest_logreport(report):
    if report.when == "call" and report.duration > LONG_TEST_S and not LONG_MARKS & set(report.keywords):
        _long_unmarked.append((report.nodeid, report.duration))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say what the default suite left out, and which long tests carry no mark."""
    skipped = terminalreporter.stats.get("skipped", [])
    slow = sum("opt in with --runslow" in str(r.longrepr) for r in skipped)
    if slow:
        terminalreporter.write_line(f"left out: {slow} slow tests (opt in with --runslow); "
                                    f"{len(skipped) - slow} other skips, each with its reason above")
    for nodeid, seconds in _long_unmarked:
        terminalreporter.write_line(f"unmarked test over {LONG_TEST_S:g} s: {nodeid} ({seconds:.0f} s); "
                                    f"mark it {', '.join(sorted(LONG_MARKS))}")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    for item in items:  # the marks follow from the fixtures a test uses
        if "browser" in item.fixturenames:
            item.add_marker(pytest.mark.browser)
        if "app_url" in item.fixturenames or "client" in item.fixturenames:
            item.add_marker(pytest.mark.app)
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: opt in with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shipped_tokenizer_dir():
    """The embedded default's converted directory (tokenizer + safetensors); converted once per cache."""
    from playground.registry import get_base
    from playground.lm.loading import resolve_source

    return resolve_source(get_base("smollm2-135m-instruct").source)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, shipped_tokenizer_dir):
    """A 2-layer random llama with the real SmolLM2 tokenizer, saved as safetensors."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_llama")
    tok = AutoTokenizer.from_pretrained(shipped_tokenizer_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=2048,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def make_lora(model_dir: Path, out: Path, seed: int, beta: float = 0.1, judge: str = "upbeat", rank: int = 4) -> Path:
    """A random (non-zero B) peft LoRA adapter for `model_dir`, saved as safetensors, with a card."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0)
    peft_model = get_peft_model(model, cfg)
    gen = torch.Generator().manual_seed(seed)
    for name, p in peft_model.named_parameters():
        if "lora_" in name:
            p.data = torch.randn(p.shape, generator=gen) * 0.3
    peft_model.save_pretrained(out, safe_serialization=True)
    (out / "card.json").write_text(json.dumps({"beta": beta, "judge": judge, "base_model": str(model_dir)}))
    return out


@pytest.fixture(scope="session")
def tiny_adapters(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("adapters")
    return {
        "a": make_lora(tiny_model_dir, root / "a", seed=1, beta=0.1),
        "b": make_lora(tiny_model_dir, root / "b", seed=2, beta=0.5, judge="concise"),
    }


@pytest.fixture(scope="session")
def tiny_playground(tiny_model_dir, tiny_adapters):
    from playground.lm.loading import load_base
    from playground.service import AdapterInfo, Playground

    base = load_base(str(tiny_model_dir))
    infos = [AdapterInfo(n, p, json.loads((p / "card.json").read_text())["beta"], json.loads((p / "card.json").read_text())["judge"])
             for n, p in tiny_adapters.items()]
    return Playground(base, infos)


def engine_idle(pg) -> bool:
    """No decoding holds the engine's lock (a Lock or an RLock)."""
    lock = pg.engine.lock
    if lock.acquire(blocking=False):
        lock.release()
        return True
    return False


@pytest.fixture(scope="module")
def browser():
    """A headless Debian Chromium through Playwright (tests/browser.py), one per test module."""
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    from tests.browser import launch

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()
