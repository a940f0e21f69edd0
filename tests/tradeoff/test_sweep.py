"""Trade-off sweeps on the tiny random model: grid coverage, KL behaviour, cancellation, I/O, validation, CLI."""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math

import pandas as pd
import pytest

from tests.conftest import engine_idle

from playground.cli import sweep as sweep_cli
from playground.cli.errors import run_command
from playground.judges.judges import available_judges
from playground.tradeoff import sweep as sw
from playground.tradeoff.outputs import to_csv, to_json
from playground.tradeoff.sweep import ROW_KEYS, SweepCancelled, run_sweep
from playground.tradeoff.token_view import token_view
from playground.settings.validation import InputError, decode_settings, sweep_settings

PROMPTS = ["Tell me something about cats.", "Give me a tip for a rainy day."]
LAMBDAS, TEMPS, SAMPLES = [0.0, 1.0, 4.0], [0.0, 1.0], 3


def settings(pg, **raw):
    """A sweep checked once, as the UI and CLI build it."""
    return sweep_settings(pg.adapters, available_judges(), **({"adapter": "a", "prompts": PROMPTS} | raw))


@pytest.fixture(scope="module")
def result(tiny_playground):
    s = settings(tiny_playground, lambdas=LAMBDAS, temperatures=TEMPS, samples=SAMPLES, max_new_tokens=8)
    return run_sweep(tiny_playground, s)


def test_one_decode_settings_shape_for_chat_sweep_and_token_view(tiny_playground):
    d = decode_settings(lam=0.5, temperature=0.3, max_new_tokens=5, seed=4)
    turn = tiny_playground.turn(PROMPTS[0], "a", lam=0.5, temperature=0.3, max_new_tokens=5, seed=4)
    assert turn.decode == d and turn.column("realigned") == d
    s = settings(tiny_playground, lambdas=[0.5], temperatures=[0.3], samples=1, max_new_tokens=5, seed=4, top_p=0.95)
    assert s.cell(0.5, 0.3, 0) == d
    req = tiny_playground.request(tiny_playground.encode(PROMPTS[0]), "a", d).settings  # the request carries d
    assert (req.lam, req.temperature, req.max_new_tokens, req.seed) == (0.5, 0.3, 5, 4)
    assert token_view(tiny_playground, PROMPTS[0], "a", d)["text"] == tiny_playground.side_by_side(turn)["realigned"].text


def row(result, lam, t):
    return next(r for r in result.rows if r["lambda"] == lam and r["temperature"] == t)


def test_one_row_per_setting_and_samples_kept(result):
    assert [(r["lambda"], r["temperature"]) for r in result.rows] == [(l, t) for l in LAMBDAS for t in TEMPS]
    assert all(tuple(r) == ROW_KEYS for r in result.rows)
    assert all(r["reward_lo"] <= r["reward_mean"] <= r["reward_hi"] for r in result.rows)  # bootstrap over 2 prompts
    assert {r["reward_vs_base"] for r in result.rows} <= {"up", "down", "within noise"}
    assert len(result.samples) == len(PROMPTS) * len(LAMBDAS) * len(TEMPS) * SAMPLES
    assert {x["seed"] for x in result.samples} == {0, 1, 2}  # distinct seed per sample
    assert all(isinstance(x["text"], str) and "reward" in x and "heldout_reward" in x for x in result.samples)
    assert result.settings["judge"] == "upbeat" and result.settings["heldout_judge"] == "on_topic"
    assert [r["kl_strength"] for r in result.rows[::2]] == [None, pytest.approx(0.1), pytest.approx(0.025)]
    assert any(r["pareto"] for r in result.rows)


def test_lambda_zero_has_no_kl_and_kl_grows_with_lambda_when_greedy(result):
    for t in TEMPS:
        assert row(result, 0.0, t)["kl_to_base"] == pytest.approx(0.0, abs=1e-5)
        assert row(result, 0.0, t)["kl_seq"] == pytest.approx(0.0, abs=1e-4)
    kls = [row(result, lam, 0.0)["kl_to_base"] for lam in LAMBDAS]
    assert kls[0] < kls[1] < kls[2]


def test_diversity_is_across_samples_of_a_prompt(result):
    greedy, sampled = row(result, 1.0, 0.0), row(result, 1.0, 1.0)
    assert greedy["semantic_diversity"] == pytest.approx(0.0, abs=1e-4)  # greedy samples are identical
    assert sampled["semantic_diversity"] > 0.05 and sampled["distinct_2"] > greedy["distinct_2"]


def test_json_and_csv_round_trip(result):
    rows = json.loads(to_json(result.rows))
    assert rows[0]["kl_strength"] is None and rows == json.loads(json.dumps(result.rows))
    frame = pd.read_csv(io.StringIO(to_csv(result.rows)))
    assert list(frame.columns) == list(ROW_KEYS) and len(frame) == len(result.rows)
    assert math.isnan(frame["kl_strength"][0])
    for col in ("reward_mean", "kl_to_base", "semantic_diversity"):
        assert frame[col].tolist() == pytest.approx([r[col] for r in result.rows])


def test_should_stop_cancels_and_progress_is_reported(tiny_playground):
    calls: list[float] = []
    s = settings(tiny_playground, prompts=PROMPTS[:1], lambdas=[1.0], temperatures=[1.0], samples=2, max_new_tokens=50)
    with pytest.raises(SweepCancelled):
        run_sweep(tiny_playground, s, progress=lambda f, m: calls.append(f), should_stop=lambda: len(calls) >= 3)
    assert 3 <= len(calls) <= 4 and calls == sorted(calls) and calls[-1] < 0.9  # stops within a step
    assert engine_idle(tiny_playground)


def test_chunked_batches_match_one_batch(tiny_playground, monkeypatch):
    s = settings(tiny_playground, lambdas=[0.0, 2.0], temperatures=[1.0], samples=2, max_new_tokens=5)
    whole = run_sweep(tiny_playground, s)
    batches: list[int] = []
    stream = tiny_playground.engine.stream
    monkeypatch.setattr(tiny_playground.engine, "stream", lambda reqs, **kw: (batches.append(len(reqs)), stream(reqs, **kw))[1])
    monkeypatch.setattr(sw, "LIMITS", dataclasses.replace(sw.LIMITS, max_sweep_rows=4))
    chunked = run_sweep(tiny_playground, s)
    assert batches == [4, 4]
    assert [x["text"] for x in chunked.samples] == [x["text"] for x in whole.samples]


def test_kl_strengths_become_lambdas(tiny_playground):
    s = settings(tiny_playground, kl_strengths=[float("inf"), 0.1, 0.05])
    assert list(s.lambdas) == [0.0, pytest.approx(1.0), pytest.approx(2.0)]


@pytest.mark.parametrize("change, name", [
    (dict(lambdas=[0, 9]), "lambdas"), (dict(lambdas="0,x"), "lambdas"), (dict(temperatures=[-0.1]), "temperatures"),
    (dict(temperatures=[float("nan")]), "temperatures"), (dict(samples=0), "samples"), (dict(samples=99), "samples"),
    (dict(prompts=[]), "prompts"), (dict(prompts=["ok", "  "]), "prompts"), (dict(prompts=["p"] * 65), "prompts"),
    (dict(lambdas=[0, 1, 2, 3, 4], temperatures=[0.5, 1, 1.5], samples=16), "lambdas × temperatures × samples"),
    (dict(kl_strengths=[0.001]), "kl_strength"), (dict(lambdas=[1], kl_strengths=[1]), "kl_strengths"),
    (dict(adapter="nope"), "adapter"), (dict(judge="nope"), "judge"), (dict(heldout_judge="nope"), "heldout_judge"),
    (dict(max_new_tokens=0), "max_new_tokens"), (dict(top_p=0), "top_p"), (dict(seed=-1), "seed"),
])
def test_validation_names_the_parameter(tiny_playground, change, name):
    with pytest.raises(InputError, match=name):
        settings(tiny_playground, **change)


def test_token_view(tiny_playground):
    view = token_view(tiny_playground, PROMPTS[0], "a", decode_settings(lam=3.0, temperature=0.0, max_new_tokens=6))
    assert view["text"] == "".join(t["text"] for t in view["tokens"]) and 0 < len(view["tokens"]) <= 6
    assert 0.0 <= view["shifted_share"] <= 1.0 and view["kl_mean"] > 0
    base = token_view(tiny_playground, PROMPTS[0], "a", decode_settings(lam=0.0, temperature=0.0, max_new_tokens=4))
    assert base["shifted_share"] == 0.0 and base["kl_sum"] == pytest.approx(0.0, abs=1e-5) and base["kl_strength"] is None
    with pytest.raises(InputError, match="lambda"):
        decode_settings(lam=-1.0)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sweep_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["sweep", *argv])


@pytest.mark.parametrize("argv, name", [
    (["--lambdas", "0,abc"], "lambdas"), (["--temperatures", "-1"], "temperatures"), (["--samples", "0"], "samples"),
    (["--prompt", " "], "prompts"), (["--kl-strengths", "0,1"], "kl_strengths"), (["--out", "x.txt"], "out"),
    (["--prompts-file", "/nonexistent/p.txt"], "prompts-file"), (["--judge", "nope"], "judge"),
])
def test_cli_bad_input_is_one_error_line_and_exit_2(monkeypatch, capsys, tmp_path, argv, name):
    monkeypatch.setattr(sweep_cli, "load_playground", lambda adapter: pytest.fail("the model must not load on bad input"))
    argv = argv if "--out" in argv else [*argv, "--out", str(tmp_path / "r.json")]
    assert run_command(lambda: sweep_cli.run(_args(*argv))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and name in err[0]


def test_cli_writes_json_csv_and_plots(monkeypatch, capsys, tmp_path, tiny_playground):
    monkeypatch.setattr(sweep_cli, "load_playground", lambda adapter: tiny_playground)
    monkeypatch.setattr(sweep_cli, "pick_adapter", lambda name: name)
    monkeypatch.setattr(sweep_cli.registry, "get_adapter", lambda name: tiny_playground.adapters[name])
    out = tmp_path / "res.json"
    argv = ["--adapter", "b", "--prompt", PROMPTS[0], "--prompt", PROMPTS[1], "--lambdas", "0,1", "--temperatures", "1",
            "--samples", "2", "--max-new-tokens", "4", "--out", str(out)]
    assert sweep_cli.run(_args(*argv)) == 0
    rows = json.loads(out.read_text())
    assert [(r["lambda"], r["temperature"]) for r in rows] == [(0.0, 1.0), (1.0, 1.0)]
    assert len(pd.read_csv(out.with_suffix(".csv"))) == 2
    for name in ("frontier", "diversity", "metrics", "overopt"):
        assert (tmp_path / f"res_{name}.png").stat().st_size > 1000
    captured = capsys.readouterr()
    assert "judge concise" in captured.out and "100%" in captured.err  # adapter b's judge; progress bar on stderr
