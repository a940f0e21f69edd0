"""Every probe end to end on the tiny model through the real Playground facade, the CLI, and cancellation."""
from __future__ import annotations

import argparse
import dataclasses
import json

import pandas as pd
import pytest

from tests.conftest import engine_idle

import playground.cli.probe as probe_cli
import playground.probes.generation as gen
from playground.cli.errors import run_command
from playground.probes.base import ProbeSettings, load_data, run_probe
from playground.probes.outputs import figure, readable, text_table, write_outputs
from playground.probes.registry import PROBES, get_probe
from playground.settings.validation import InputError

SMALL = {"lambdas": "0,2", "samples": 1, "temperature": 0.7, "max_new_tokens": 4, "seed": 0, "limit": 2}


def settings(pg, name: str, adapter: str = "a", **kw):
    return gen.probe_settings(pg.adapters, probe=name, adapter=adapter, **(SMALL | kw))[1]


@pytest.fixture
def batches(tiny_playground, monkeypatch):
    """Sizes of the batches handed to the engine."""
    sizes: list[int] = []
    stream = tiny_playground.engine.stream
    monkeypatch.setattr(tiny_playground.engine, "stream", lambda reqs, **kw: (sizes.append(len(reqs)), stream(reqs, **kw))[1])
    return sizes


@pytest.mark.parametrize("name", list(PROBES))
def test_every_probe_end_to_end(name, tiny_playground, batches, tmp_path):
    s = settings(tiny_playground, name, adapter="b")
    probe = get_probe(name)
    rows = probe.rows(s)
    ctx = gen.make_context(tiny_playground, "b", n_boot=100)
    assert ctx.adapter_judge == "concise" and ctx.judge == tiny_playground.judge
    run = gen.run_on_playground(tiny_playground, name, s, ctx=ctx)
    r = run.result
    assert r.probe == name and r.rows and r.findings
    # one engine batch per stage, holding every row of that stage
    assert batches == [len(rows)] * (gen.stages(probe) if rows else 0)
    assert run.answers == len(rows) * gen.stages(probe)
    lams = {row.lam for row in r.rows}
    assert lams == ({None} if not rows else {0.0, 2.0})
    if rows:
        assert all(e.lam in (0.0, 2.0) for e in r.examples) and (r.examples or name == "sycophancy")
    paths = write_outputs(tmp_path / f"{name}.json", r, figure(r))
    assert json.loads(paths[0].read_text())["probe"] == name
    assert len(pd.read_csv(paths[1])) == len(r.rows) and paths[2].stat().st_size > 1000
    assert readable(r) and text_table(r).count("\n") == len(r.rows) + 1


def test_answers_carry_kl_and_tokens_and_follow_up_continues_the_chat(tiny_playground, monkeypatch):
    s = settings(tiny_playground, "sycophancy", lambdas="0,3", limit=1)
    seen: list[tuple[str, int]] = []
    encode = tiny_playground.encode
    monkeypatch.setattr(tiny_playground, "encode", lambda p, h=(): (seen.append((p, len(h))), encode(p, h))[1])
    out: list = []
    generate = gen.make_generate(tiny_playground, "a", s)
    run_probe(get_probe("sycophancy"), s, lambda rows: out.extend(generate(rows)) or out[-len(rows):])
    assert [h for _, h in seen] == [0, 0, 2, 2]  # stage 2: question + first answer as history
    assert seen[2][0] == load_data("sycophancy")["follow_up"]
    assert all(1 <= g.tokens <= 4 for g in out)
    assert all(g.kl_to_base == 0.0 for g in out if g.row.lam == 0.0)
    assert all(g.kl_to_base > 0.0 for g in out if g.row.lam == 3.0)


def test_chunks_only_past_the_row_limit_and_match_one_batch(tiny_playground, batches, monkeypatch):
    s = settings(tiny_playground, "made_up", limit=2)  # 2 sets × 2 prompts × 2 λ = 8 rows
    rows = get_probe("made_up").rows(s)
    whole = [g.text for g in gen.make_generate(tiny_playground, "a", s)(rows)]
    monkeypatch.setattr(gen, "LIMITS", dataclasses.replace(gen.LIMITS, max_sweep_rows=3))
    chunked = [g.text for g in gen.make_generate(tiny_playground, "a", s)(rows)]
    assert batches == [8, 3, 3, 2] and chunked == whole


def test_cancel_stops_within_a_step(tiny_playground):
    s = settings(tiny_playground, "answers_question", max_new_tokens=200, limit=1)
    calls: list[float] = []
    with pytest.raises(InputError, match="cancelled; nothing was computed"):
        gen.run_on_playground(tiny_playground, "answers_question", s, progress=lambda f, m: calls.append(f),
                              should_stop=lambda: len(calls) >= 3)
    assert len(calls) <= 4  # stopped at the step after the stop turned true, not at token 200
    assert engine_idle(tiny_playground)


@pytest.mark.parametrize("change, name", [
    ({"probe": "nope"}, "probe"), ({"adapter": "zz"}, "adapter"), ({"lambdas": "0,x"}, "lambdas"),
    ({"lambdas": "0,9"}, "lambdas"), ({"lambdas": "1,1"}, "lambdas"), ({"samples": 0}, "samples"),
    ({"temperature": -1}, "temperature"), ({"max_new_tokens": 0}, "max_new_tokens"), ({"seed": -1}, "seed"),
    ({"limit": "x"}, "limit"),
])
def test_settings_name_the_parameter(tiny_playground, change, name):
    kw = {"probe": "made_up", "adapter": "a", **SMALL, **change}
    with pytest.raises(InputError, match=name):
        gen.probe_settings(tiny_playground.adapters, **kw)


def test_estimate_counts_rows_and_stages():
    s = ProbeSettings(lambdas=(0, 1), samples=2, max_new_tokens=10, limit=3)
    assert "24 answers" in gen.estimate("sycophancy", s)  # 3 prompts × 2 λ × 2 samples, twice
    assert "no decoding" in gen.estimate("judge_bias", s)


# ------------------------------------------------------------------------------------------------ CLI

def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    probe_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["probe", *argv])


def test_cli_list(capsys):
    assert probe_cli.run(_args("--list")) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PROBES) and "worse" in out


@pytest.mark.parametrize("argv, name", [
    (["nope"], "probe"), (["made_up", "--samples", "0"], "samples"), (["made_up", "--lambdas", "0,abc"], "lambdas"),
    (["made_up", "--temperature", "9"], "temperature"), (["made_up", "--max-new-tokens", "9999"], "max_new_tokens"),
    (["made_up", "--adapter", "nope"], "adapter"), (["made_up", "--out", "x.txt"], "out"), ([], "probe"),
])
def test_cli_bad_input_is_one_error_line_and_exit_2(monkeypatch, capsys, tmp_path, argv, name):
    monkeypatch.setattr(probe_cli, "load_playground", lambda adapter: pytest.fail("the model must not load on bad input"))
    argv = argv if "--out" in argv else [*argv, "--out", str(tmp_path / "r.json")]
    assert run_command(lambda: probe_cli.run(_args(*argv))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and name in err[0]


def test_main_dispatches_probe(capsys):
    from playground.__main__ import main

    assert main(["probe", "--list"]) == 0 and "sycophancy" in capsys.readouterr().out


def test_cli_runs_on_the_tiny_playground(monkeypatch, capsys, tmp_path, tiny_playground):
    monkeypatch.setattr(probe_cli, "load_playground", lambda adapter: tiny_playground)
    monkeypatch.setattr(probe_cli, "pick_adapter", lambda name: name)
    monkeypatch.setattr(probe_cli.registry, "get_adapter", lambda name: tiny_playground.adapters[name])
    out = tmp_path / "made_up.json"
    argv = ["made_up", "--adapter", "a", "--lambdas", "0,1", "--samples", "1", "--max-new-tokens", "3", "--limit", "1",
            "--out", str(out)]
    assert probe_cli.run(_args(*argv)) == 0
    data = json.loads(out.read_text())
    assert data["probe"] == "made_up" and data["adapter"] == "a" and data["answers"] == 4
    assert {r["lambda"] for r in data["rows"]} == {0.0, 1.0}
    assert len(pd.read_csv(out.with_suffix(".csv"))) == len(data["rows"])
    assert out.with_suffix(".png").stat().st_size > 1000
    captured = capsys.readouterr()
    assert "hedged_on_invented" in captured.out and "95% CI" in captured.out and "100%" in captured.err
