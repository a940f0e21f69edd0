"""The command line as a user runs it: JSON output, exit code 2 with one line for bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from playground import registry


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "playground", *args], capture_output=True, text=True, timeout=600)


def test_adapters_json_lists_registry():
    out = run_cli("adapters", "--json")
    assert out.returncode == 0
    rows = json.loads(out.stdout)
    assert {r["name"] for r in rows} == set(registry.ADAPTERS)
    for r in rows:
        if r["installed"]:
            assert r["beta_train"] > 0 and r["judge"]


@pytest.mark.parametrize("args, message", [
    (["--prompt", "  "], "prompt is empty"),
    (["--prompt", "hi", "--temperature", "-1"], "temperature must be in [0, 2]"),
    (["--prompt", "hi", "--temperature", "nan"], "temperature must be a finite number"),
    (["--prompt", "hi", "--top-p", "0"], "top_p must be in (0, 1]"),
    (["--prompt", "hi", "--lambda", "99"], "lambda must be in [0, 8]"),
    (["--prompt", "hi", "--max-new-tokens", "100000"], "max_new_tokens must be in [1, 256]"),
    (["--prompt", "hi", "--adapter", "nope"], "unknown adapter 'nope'; available:"),
])
def test_bad_input_exits_2_with_one_line(args, message):
    out = run_cli("generate", *args)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def installed() -> list[str]:
    return [a.name for a in registry.installed_adapters()]


@pytest.mark.model
@pytest.mark.skipif(not installed(), reason="no trained adapter installed in models/adapters")
def test_generate_json_endpoints_match_plain_greedy(shipped_tokenizer_dir):
    """λ = 0 at T = 0 is greedy decoding of the base model; λ = 1 is greedy base+adapter (peft)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = installed()[0]
    n = 12
    outs = {lam: json.loads(run_cli("generate", "--prompt", "Give me a tip for a rainy day.", "--adapter", name,
                                    "--lambda", str(lam), "--temperature", "0", "--max-new-tokens", str(n), "--json").stdout)
            for lam in (0, 1)}
    for key in ("base", "realigned", "tuned", "settings"):
        assert key in outs[0]
    for col in ("base", "realigned", "tuned"):
        assert {"text", "tokens", "kl_to_base", "reward"} <= set(outs[0][col])
    tok = AutoTokenizer.from_pretrained(shipped_tokenizer_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "Give me a tip for a rainy day."}], add_generation_prompt=True, tokenize=False)
    x = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(shipped_tokenizer_dir).eval()
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(shipped_tokenizer_dir), registry.get_adapter(name).path).eval()
    for model, lam in ((base, 0), (tuned, 1)):
        with torch.no_grad():
            ids = model.generate(x, max_new_tokens=n, do_sample=False, eos_token_id=[0, 2], pad_token_id=2)[0, x.shape[1]:]
        assert outs[lam]["realigned"]["text"] == tok.decode(ids, skip_special_tokens=True)
    assert outs[0]["realigned"]["kl_to_base"] == pytest.approx(0.0, abs=1e-6)
    assert outs[0]["base"]["text"] == outs[1]["base"]["text"]
    assert outs[1]["tuned"]["text"] == outs[1]["realigned"]["text"]


# --- `--out` is checked before anything loads or decodes; probe names; seeds -------------------------------

def in_process(monkeypatch, *argv: str) -> tuple[int, str]:
    """`python -m playground ...` in this process, with model loading forbidden: (exit code, stderr)."""
    import io
    from contextlib import redirect_stderr

    from playground.__main__ import main
    from playground.cli import probe as probe_cli, sweep as sweep_cli

    for module in (probe_cli, sweep_cli):
        monkeypatch.setattr(module, "load_playground", lambda adapter: pytest.fail("decoding started before --out was checked"))
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


def one_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("verb", [["sweep", "--prompt", "hi", "--samples", "1"], ["probe", "made_up", "--limit", "1"]])
def test_out_is_checked_before_decoding(monkeypatch, tmp_path, verb):
    from tests.fs_faults import readonly_dir

    afile = tmp_path / "a_file.txt"
    afile.write_text("x")
    cases = [
        (str(afile / "r.json"), f"out: '{afile}' is a file, not a directory"),
        (str(tmp_path / "new" / "tree" / "r.json"), f"out: directory '{tmp_path / 'new' / 'tree'}' does not exist; "
                                                    "create it or pass --mkdir"),
        (str(tmp_path), "out must end in .json"),
    ]
    for out, message in cases:
        code, err = in_process(monkeypatch, *verb, "--out", out)
        assert code == 2 and message in one_error(err), (out, err)
    assert not (tmp_path / "new").exists()  # nothing created on the way
    with readonly_dir(tmp_path / "ro") as ro:
        code, err = in_process(monkeypatch, *verb, "--out", str(ro / "r.json"))
        assert code == 2 and f"out: cannot write in '{ro}'" in one_error(err)


def test_mkdir_creates_the_missing_directories_when_asked(tmp_path):
    from playground.cli.out import check_out

    out = check_out(str(tmp_path / "new" / "tree" / "r.json"), mkdir=True)
    assert out.parent.is_dir() and list(out.parent.iterdir()) == []  # the write check leaves nothing behind


def test_an_unknown_probe_is_named_without_out(monkeypatch):
    code, err = in_process(monkeypatch, "probe", "nope")
    assert code == 2 and "unknown probe 'nope'; available: " in one_error(err)


@pytest.mark.parametrize("seed, message", [
    ("18446744073709551616", "seed must be in [0, 2147483647]; got 18446744073709551616"),
    ("9007199254740993", "seed must be in [0, 2147483647]; got 9007199254740993"),
    ("1.5", "seed must be a whole number in [0, 2147483647]; got 1.5"),
    ("true", "seed must be a number; got 'true'"),
])
def test_seeds_are_whole_numbers_echoed_exactly(seed, message):
    out = run_cli("generate", "--prompt", "hi", "--seed", seed)
    assert out.returncode == 2 and message in one_error(out.stderr)


def test_validation_refuses_booleans_and_echoes_large_ints_exactly():
    from playground.settings.validation import InputError, check_int, decode_settings

    for call, message in [(lambda: decode_settings(lam=1, seed=True), "seed must be a number; got bool True"),
                          (lambda: decode_settings(lam=1, seed=2**64), "got 18446744073709551616"),
                          (lambda: check_int("seed", 10**100, 0, 9), "got 10000000000000000000… (101 digits)")]:
        with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            call()
    assert check_int("seed", "42", 0, 100) == 42 and check_int("seed", 3.0, 0, 100) == 3
