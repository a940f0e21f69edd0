"""`probe`, `calibrate` and the adapter report with `--ray`: the same answers and numbers as one process.

On the module's local cluster (2 CPUs, so 2 actors) with the tiny model and adapters of tests/conftest.py.
Each comparison is the whole output (JSON text, nan equal to nan) of the run with and without Ray."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tests.distributed.test_ray_sweep import same

from playground.cli import calibrate as calibrate_cli, probe as probe_cli
from playground.cli.errors import run_command
from playground.distributed import cluster, specs
from playground.distributed.jobs import JudgeHost, RayDecoder
from playground.distributed.options import RayOptions
from playground.distributed.pool import RayPool
from playground.distributed.shards import ProbeShard
from playground.probes import generation as gen
from playground.probes.registry import get_probe

pytestmark = pytest.mark.ray


def _args(module, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


@pytest.fixture()
def tiny_registry(monkeypatch, tiny_playground, spec):
    """The CLIs see the tiny model's adapters as installed registry adapters; the actors load the tiny spec."""
    monkeypatch.setattr(probe_cli, "load_playground", lambda adapter: tiny_playground)
    monkeypatch.setattr(probe_cli, "pick_adapter", lambda name: name)
    monkeypatch.setattr(calibrate_cli, "load_playground", lambda adapters: tiny_playground)
    monkeypatch.setattr(calibrate_cli, "check_installed", lambda name, what: name)
    monkeypatch.setattr(probe_cli.registry, "get_adapter", lambda name: tiny_playground.adapters[name])
    monkeypatch.setattr(specs, "registry_spec", lambda *names: spec)


def _json(path) -> dict:
    data = json.loads(path.read_text())
    data.pop("wall_s", None)
    data.get("run", {}).pop("wall_s", None)
    return data


def test_probe_rows_answers_of_one_stage_are_the_single_process_answers(cluster, spec, tiny_playground):
    _, s = gen.probe_settings(tiny_playground.adapters, probe="answers_question", adapter="a", lambdas="0,2", samples=2,
                              temperature=1.0, max_new_tokens=6, seed=3, limit=3)
    rows = get_probe("answers_question").rows(s)
    one = gen.make_generate(tiny_playground, "a", s)(rows)
    with RayPool(spec, RayOptions("local", actors=2)) as pool:
        shards = pool.shards(rows, lambda row: row.prompt_id, lambda part: ProbeShard(s, tuple(part)))
        assert len(shards) == 2 and {r.prompt_id for r in shards[0].keys}.isdisjoint(r.prompt_id for r in shards[1].keys)
        ray = pool.map(shards, lambda f, m: None, lambda: False)
    assert [(g.row, g.text, g.tokens, g.kl_to_base) for g in ray] == [(g.row, g.text, g.tokens, g.kl_to_base) for g in one]


def test_cli_probe_with_ray_writes_the_single_process_result(cluster, tiny_registry, capsys, tmp_path):
    """sycophancy: two stages (the follow-up needs the first answers), both decoded on the same two actors."""
    argv = ["sycophancy", "--adapter", "b", "--lambdas", "0,2", "--samples", "1", "--max-new-tokens", "5", "--limit", "2"]
    assert probe_cli.run(_args(probe_cli, "probe", *argv, "--out", str(tmp_path / "one.json"))) == 0
    capsys.readouterr()
    assert probe_cli.run(_args(probe_cli, "probe", *argv, "--ray", "local", "--out", str(tmp_path / "ray.json"))) == 0
    err = capsys.readouterr().err
    assert "stage 2/2" in err and "actors: rows" in err
    one, ray = _json(tmp_path / "one.json"), _json(tmp_path / "ray.json")
    assert one["rows"] and same(ray, one)  # every row, interval and finding
    assert cluster.is_initialized()


def test_cli_calibrate_with_ray_writes_the_single_process_result(cluster, tiny_registry, capsys, tmp_path):
    argv = ["calibrate", "--adapter", "a", "--against", "b", "--prompts", "3", "--samples", "2", "--max-new-tokens", "6",
            "--lambda-points", "9", "--seed", "1"]
    assert calibrate_cli.run(_args(calibrate_cli, *argv, "--out", str(tmp_path / "one.json"))) == 0
    assert calibrate_cli.run(_args(calibrate_cli, *argv, "--ray", "local", "--out", str(tmp_path / "ray.json"))) == 0
    assert "actors: rows" in capsys.readouterr().err
    one, ray = _json(tmp_path / "one.json"), _json(tmp_path / "ray.json")
    assert one["tokens"] > 0 and len(one["per_prompt"]) == 3
    assert same(ray, one)  # the curve, best λ and its interval, per-prompt KL


def test_adapter_report_with_ray_equals_one_process(cluster, spec, tiny_playground):
    from models.report_adapters import report

    one = report(tiny_playground, "a", ["Tell me about cats.", "Give me a tip.", "Name a boat."], 2, 5)
    with RayDecoder(spec, RayOptions("local", actors=2)) as dec:
        ray = report(JudgeHost(tiny_playground.adapters), "a", ["Tell me about cats.", "Give me a tip.", "Name a boat."], 2, 5,
                     decode=dec)
    assert one["metrics"]["kl"]["tuned"] > 0 and same(ray, one)  # every judge's base, tuned and change with its interval


@pytest.mark.app  # launches the app (tests/test_app.serve)
def test_the_trade_off_tab_with_a_ray_address_gives_the_in_process_sweep(cluster, tiny_playground, monkeypatch):
    """PLAYGROUND_RAY_ADDRESS=local (SERVE.ray_address): the tab's /tradeoff_sweep decodes on the cluster; its rows and
    answers are the ones the tab computes in process."""
    import dataclasses

    from gradio_client import Client

    import ui.tradeoff_tab as tab
    from tests.test_app import serve
    from playground.tradeoff.outputs import to_json
    from playground.tradeoff.sweep import run_sweep

    monkeypatch.setattr(tab, "SERVE", dataclasses.replace(tab.SERVE, ray_address="local"))
    knobs = ("a", tab.SOURCES[1], "Tell me about cats.\nName a boat.\nWhy rain?", None, "λ", "0,2", "0,1", 2, 5, "", "", 0)
    one = run_sweep(tiny_playground, tab._settings(tiny_playground, *knobs))
    demo, url = serve(tiny_playground)
    try:
        out = Client(url, verbose=False).predict(*knobs, api_name="/tradeoff_sweep")
    finally:
        demo.close()
    files = {Path(f).name: Path(f) for f in out[tab.SWEEP_OUTPUTS.index("files")]}
    assert same(json.loads(files["sweep.json"].read_text()), json.loads(to_json(one.rows)))  # every metric of every row
    samples = json.loads(files["sweep_samples.json"].read_text())["samples"]
    assert len(samples) == 24 and same(samples, json.loads(json.dumps(one.samples, default=str)))  # every answer


def test_never_more_actors_than_the_clusters_cpus_hold():
    """An actor keeps its CPUs while it lives: one the cluster cannot place would hold its shard forever."""
    class TwoCpus:
        @staticmethod
        def cluster_resources():
            return {"CPU": 2.0}

    assert RayPool(None, RayOptions("local", actors=8))._actors(TwoCpus, 5) == 2
    assert RayPool(None, RayOptions("local", actors=8, cpus_per_actor=4))._actors(TwoCpus, 5) == 1
    assert RayPool(None, RayOptions("local", actors=1))._actors(TwoCpus, 5) == 1
    assert RayPool(None, RayOptions("local"))._actors(TwoCpus, 1) == 1 and RayPool(None, RayOptions("local"))._actors(TwoCpus, 9) == 2


@pytest.mark.parametrize("module, argv", [(probe_cli, ["probe", "made_up", "--limit", "1"]),
                                          (calibrate_cli, ["calibrate", "--adapter", "a", "--against", "b"])])
def test_a_bad_ray_address_is_one_error_line_before_anything_loads(monkeypatch, capsys, tmp_path, module, argv):
    monkeypatch.setattr(module, "load_playground", lambda *a: pytest.fail("the model must not load on bad input"))
    monkeypatch.setattr(cluster, "connect", lambda address: pytest.fail("no cluster is joined on bad input"))
    assert run_command(lambda: module.run(_args(module, *argv, "--ray", "nowhere", "--out", str(tmp_path / "r.json")))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ray must be local, auto, HOST:PORT")
    assert not (tmp_path / "r.json").exists()
