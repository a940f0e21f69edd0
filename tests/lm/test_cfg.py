"""Prompt guidance for the language model (LM CFG): ℓ = ℓ_uncond + γ(ℓ_cond − ℓ_uncond), in the engine's batch."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from playground.lm.batch import routes_of, row_prompts
from tests.lm.requests import request
from playground.settings.validation import InputError, cfg_guidance

PROMPT = "Tell me something about cats."
CONT = [510, 2111, 314, 253, 1345]


@pytest.fixture(scope="module")
def ids(tiny_playground):
    return tiny_playground.encode(PROMPT)


@pytest.fixture(scope="module")
def uncond(tiny_playground):
    return tiny_playground.uncond_ids()


def tokens(pg, reqs):
    return [s.tokens for s in pg.engine.generate(reqs)]


def test_unconditional_branch_is_the_chat_template_without_the_users_text(tiny_playground, ids, uncond):
    text = tiny_playground._tokenizer.decode(uncond)
    assert PROMPT not in text and "<|im_start|>user" in text and text.endswith("<|im_start|>assistant\n")
    negative = tiny_playground.uncond_ids("Answer gloomily.")
    assert "Answer gloomily." in tiny_playground._tokenizer.decode(negative)


def test_gamma_one_adds_no_rows_and_is_the_plain_model_token_for_token(tiny_playground, ids, uncond):
    plain = request(ids, adapter="a", lam=0.5, temperature=1.0, max_new_tokens=12, seed=3)
    same = request(ids, adapter="a", lam=0.5, temperature=1.0, max_new_tokens=12, seed=3, cfg_scale=1.0,
                   uncond_prompt_ids=uncond)
    assert routes_of(same) == routes_of(plain)
    assert tokens(tiny_playground, [same]) == tokens(tiny_playground, [plain])


def test_guided_request_owns_its_rows_again_on_the_unconditional_prompt(ids, uncond):
    r = request(ids, adapter="a", lam=0.5, cfg_scale=2.0, uncond_prompt_ids=uncond)
    assert routes_of(r) == [(None, 0.0), ("a", 1.0), (None, 0.0), ("a", 1.0)]
    assert row_prompts(r) == [tuple(ids), tuple(ids), uncond, uncond]
    with pytest.raises(ValueError, match="uncond_prompt_ids"):
        request(ids, cfg_scale=2.0)


@pytest.mark.parametrize("lam, gamma", [(0.0, 2.0), (0.5, 3.0), (1.0, 0.5)])
def test_guided_logits_are_uncond_plus_gamma_times_the_difference_of_the_realigned_policy(tiny_playground, ids, uncond,
                                                                                          lam, gamma):
    eng = tiny_playground.engine
    guided = request(ids, adapter="a", lam=lam, cfg_scale=gamma, uncond_prompt_ids=uncond)
    cond, unc = request(ids, adapter="a", lam=lam), request(uncond, adapter="a", lam=lam)
    got = eng.step_logits([guided], CONT)
    ref = eng.step_logits([cond, unc], CONT)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g[0], r[1] + gamma * (r[0] - r[1]), rtol=1e-5, atol=1e-4)


def test_gamma_zero_is_the_unconditional_model(tiny_playground, ids, uncond):
    guided = request(ids, adapter="a", lam=1.0, temperature=0.0, max_new_tokens=10, cfg_scale=0.0, uncond_prompt_ids=uncond)
    alone = request(uncond, adapter="a", lam=1.0, temperature=0.0, max_new_tokens=10)
    assert tokens(tiny_playground, [guided]) == tokens(tiny_playground, [alone])


def test_batch_mixing_guided_and_plain_rows_keeps_each_row_as_it_is_alone(tiny_playground, ids, uncond):
    pg = tiny_playground
    other = pg.encode("Give me a tip for a rainy day.")
    negative = pg.uncond_ids("Answer gloomily and at length, please.")  # longer than the prompt: its own KV width
    reqs = [request(ids, adapter="a", lam=0.5, temperature=1.0, max_new_tokens=10, seed=1),
            request(ids, adapter="a", lam=0.5, temperature=1.0, max_new_tokens=10, seed=1, cfg_scale=2.0, uncond_prompt_ids=uncond),
            request(other, adapter=None, temperature=0.0, max_new_tokens=10, cfg_scale=3.0, uncond_prompt_ids=negative),
            request(other, adapter="a", lam=2.0, mode="weights", temperature=0.7, max_new_tokens=7, seed=5, cfg_scale=1.5,
                    uncond_prompt_ids=uncond)]
    together = tokens(pg, reqs)
    assert together == [tokens(pg, [r])[0] for r in reqs]


def test_chat_turn_guides_the_realigned_column_only(tiny_playground):
    pg = tiny_playground
    knobs = dict(lam=0.5, temperature=0.0, max_new_tokens=8)
    plain = pg.side_by_side(pg.turn(PROMPT, "a", **knobs))
    same = pg.side_by_side(pg.turn(PROMPT, "a", cfg_scale=1.0, **knobs))
    guided = pg.side_by_side(pg.turn(PROMPT, "a", cfg_scale=4.0, negative_prompt="cats", **knobs))
    assert {c: a.text for c, a in same.items()} == {c: a.text for c, a in plain.items()}
    assert guided["base"].text == plain["base"].text and guided["tuned"].text == plain["tuned"].text
    reqs = pg.requests(pg.turn(PROMPT, "a", cfg_scale=4.0, negative_prompt="cats", **knobs))
    assert reqs["realigned"].cfg_scale == 4.0 and reqs["realigned"].uncond_prompt_ids == pg.uncond_ids("cats")
    assert reqs["base"].cfg_scale == 1.0 and reqs["tuned"].cfg_scale == 1.0


@pytest.mark.parametrize("raw, message", [({"cfg_scale": 11}, "cfg_scale must be in [0, 10]"),
                                          ({"cfg_scale": "x"}, "cfg_scale"), ({"negative_prompt": 3}, "negative_prompt")])
def test_guidance_input_is_checked_once_naming_the_parameter(raw, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cfg_guidance(**raw)
    assert cfg_guidance() == (1.0, "")


def test_cli_generate_refuses_a_bad_cfg_scale_with_one_line():
    out = subprocess.run([sys.executable, "-m", "playground", "generate", "--prompt", "hi", "--cfg-scale", "-1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "cfg_scale must be in [0, 10]" in lines[0], out.stderr[-2000:]


TIMING = {"tokens_per_s", "first_token_s"}  # an answer's fields that are measured times, not its content


def generate_json(monkeypatch, capsys, pg, *argv: str, adapters: dict | None = None) -> dict:
    """`python -m playground generate ARGV --json` in this process, decoding on `pg` (the Playground it would load);
    `adapters`: name → entry standing in for the registry's cards (the tiny model's adapters)."""
    import json

    from playground import registry
    from playground.__main__ import main
    from playground.service import Playground

    monkeypatch.setattr(Playground, "from_registry", classmethod(lambda cls, *a, **k: pg))
    if adapters is not None:
        monkeypatch.setattr(registry, "get_adapter", lambda name: adapters[name])
    capsys.readouterr()
    assert main(["generate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def assert_cfg_one_is_plain(monkeypatch, capsys, pg, adapter: str, temperature: str, adapters: dict | None = None) -> None:
    """generate --cfg-scale 1 writes the plain run's answers: every column's text, token count, KL, entropy, reward."""
    argv = ["--prompt", "Give me a tip for a rainy day.", "--adapter", adapter, "--lambda", "2", "--temperature", temperature,
            "--seed", "3", "--max-new-tokens", "12"]
    plain = generate_json(monkeypatch, capsys, pg, *argv, adapters=adapters)
    same = generate_json(monkeypatch, capsys, pg, *argv, "--cfg-scale", "1", adapters=adapters)
    columns = ("base", "realigned", "tuned")
    assert plain["realigned"]["tokens"] > 0
    assert {c: {k: v for k, v in same[c].items() if k not in TIMING} for c in columns} == \
           {c: {k: v for k, v in plain[c].items() if k not in TIMING} for c in columns}
    assert same["settings"]["cfg_scale"] == 1.0 and plain["settings"]["cfg_scale"] == 1.0


@pytest.mark.parametrize("temperature", ["0", "0.8"])  # greedy and one seeded sample
def test_cli_generate_cfg_scale_one_is_the_plain_model_token_for_token(tiny_playground, monkeypatch, capsys, temperature):
    assert_cfg_one_is_plain(monkeypatch, capsys, tiny_playground, "a", temperature, adapters=tiny_playground.adapters)


@pytest.fixture(scope="module")
def shipped_float32():
    """The shipped base model (the embedded GGUF) at float32 with the default adapter, loaded once."""
    from playground import registry
    from playground.service import Playground

    if registry.DEFAULT_ADAPTER not in [a.name for a in registry.installed_adapters()]:
        pytest.skip(f"adapter {registry.DEFAULT_ADAPTER} is not installed")
    return Playground.from_registry(adapters=[registry.DEFAULT_ADAPTER], dtype="float32")


# Opt in (--runslow): on this 2-core machine one load is ~15–20 s and the four 12-token turns (three columns each,
# judged) take minutes when the machine is shared (both cases: 769 s at a load average of 15; passed); the
# tiny-model test above checks the same path by default.
@pytest.mark.slow
@pytest.mark.model
@pytest.mark.parametrize("temperature", ["0", "0.8"])
def test_cli_generate_cfg_scale_one_is_the_plain_model_token_for_token_on_the_shipped_model(shipped_float32, monkeypatch,
                                                                                          capsys, temperature):
    from playground import registry

    monkeypatch.setenv("PLAYGROUND_DTYPE", "float32")
    assert_cfg_one_is_plain(monkeypatch, capsys, shipped_float32, registry.DEFAULT_ADAPTER, temperature)
