"""Sweeps on a local Ray cluster (2 actors here): the same rows and answers as one process, one retry when an actor
dies mid-shard, a clear error naming the shard on a second death, and cancel stops every actor.

The cluster (tests/distributed/conftest.py) is started once and joined by the runner; the tiny random model and
adapters of tests/conftest.py are loaded by every actor from their directories."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal

import pytest

from tests.distributed.conftest import wait_gone
from tests.distributed.gates import GatedSpec

from playground.cli import sweep as sweep_cli
from playground.cli.errors import run_command
from playground.distributed import cluster, specs
from playground.distributed.jobs import JudgeHost, RayDecoder
from playground.distributed.options import RayOptions
from playground.distributed.pool import ShardFailed
from playground.distributed.shards import shard_prompts
from playground.judges.judges import available_judges
from playground.tradeoff.sweep import SweepCancelled, run_sweep
from playground.settings.validation import sweep_settings

pytestmark = pytest.mark.ray

PROMPTS = ["Tell me something about cats.", "Give me a tip for a rainy day.", "What is a good name for a boat?",
           "How do bees make honey?"]


def settings(pg, **raw):
    return sweep_settings(pg.adapters, available_judges(), **({"adapter": "a", "prompts": PROMPTS, "lambdas": [0.0, 1.0, 3.0],
                                                               "temperatures": [0.0, 1.0], "samples": 2, "max_new_tokens": 6} | raw))


@pytest.fixture(scope="module")
def single(tiny_playground):
    """The single-process sweep every Ray run must reproduce."""
    return run_sweep(tiny_playground, settings(tiny_playground))


def same(a, b) -> bool:
    """Equal to the last bit (JSON text; nan equals nan)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def differences(got: list[dict], want: list[dict]) -> list[str]:
    """Where two lists of rows or samples differ: index, key, both values (empty when they are the same)."""
    out = [f"{len(got)} rows, want {len(want)}"] if len(got) != len(want) else []
    for i, (g, w) in enumerate(zip(got, want)):
        out += [f"[{i}].{k}: {g.get(k)!r} != {w.get(k)!r}" for k in sorted(set(g) | set(w)) if not same(g.get(k), w.get(k))]
    return out


def test_shards_are_contiguous_prompt_runs_as_even_as_possible():
    assert shard_prompts(4, 2) == [range(0, 2), range(2, 4)]
    assert shard_prompts(5, 3) == [range(0, 2), range(2, 4), range(4, 5)]
    assert shard_prompts(2, 8) == [range(0, 1), range(1, 2)]  # never an empty shard
    assert shard_prompts(3, 1) == [range(0, 3)]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sweep_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["sweep", *argv])


@pytest.mark.parametrize("argv, name", [
    (["--ray", "nowhere"], "ray must be local, auto, HOST:PORT"), (["--ray", "local", "--ray-actors", "0"], "ray-actors"),
    (["--ray", "local", "--ray-actors", "two"], "ray-actors"), (["--ray", "auto", "--ray-cpus-per-actor", "0"], "ray-cpus-per-actor"),
])
def test_bad_ray_options_are_one_error_line_before_anything_loads(monkeypatch, capsys, tmp_path, argv, name):
    monkeypatch.setattr(sweep_cli, "load_playground", lambda adapter: pytest.fail("the model must not load on bad input"))
    monkeypatch.setattr(cluster, "connect", lambda address: pytest.fail("no cluster is joined on bad input"))
    assert run_command(lambda: sweep_cli.run(_args("--prompt", "hi", *argv, "--out", str(tmp_path / "r.json")))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and name in err[0]
    assert not (tmp_path / "r.json").exists()


def test_without_ray_installed_the_option_says_how_to_get_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "ray" else object())
    assert run_command(lambda: sweep_cli.run(_args("--prompt", "hi", "--ray", "local", "--out", str(tmp_path / "r.json")))) == 2
    assert "requirements-ray.txt" in capsys.readouterr().err


def test_cli_sweep_with_ray_writes_the_single_process_rows_and_answers(cluster, spec, monkeypatch, capsys, tmp_path, tiny_playground):
    monkeypatch.setattr(sweep_cli, "load_playground", lambda adapter: tiny_playground)
    monkeypatch.setattr(sweep_cli, "pick_adapter", lambda name: name)
    monkeypatch.setattr(sweep_cli.registry, "get_adapter", lambda name: tiny_playground.adapters[name])
    monkeypatch.setattr(specs, "registry_spec", lambda name: spec)
    argv = ["--adapter", "a", *[x for p in PROMPTS for x in ("--prompt", p)], "--lambdas", "0,1,3", "--temperatures", "0,1",
            "--samples", "2", "--max-new-tokens", "6"]
    assert sweep_cli.run(_args(*argv, "--out", str(tmp_path / "one.json"))) == 0
    capsys.readouterr()
    assert sweep_cli.run(_args(*argv, "--ray", "local", "--out", str(tmp_path / "ray.json"))) == 0
    err = capsys.readouterr().err
    assert "2 actors: rows" in err and "tok/s" in err and "ETA" in err  # one progress line over both actors
    one, ray = (json.loads((tmp_path / f"{stem}.json").read_text()) for stem in ("one", "ray"))
    assert differences(ray, one) == []  # every metric of every row
    one, ray = (json.loads((tmp_path / f"{stem}_samples.json").read_text()) for stem in ("one", "ray"))
    assert same(ray["settings"], one["settings"])
    assert len(ray["samples"]) == 48 and differences(ray["samples"], one["samples"]) == []  # every answer's text, seed and readouts
    assert cluster.is_initialized()  # a cluster it joined is left running


def test_an_actor_killed_mid_shard_has_its_shard_retried_once_on_another(cluster, spec, tmp_path, tiny_playground, single):
    gate = tmp_path / "go"
    killed: list[int] = []

    def observer(shards):
        s0 = shards[0]
        if not killed and s0.state == "running" and s0.tokens > 0 and s0.pid:  # decoding, held after its first step
            os.kill(s0.pid, signal.SIGKILL)
            killed.append(s0.pid)
            gate.touch()

    dec = RayDecoder(gated(spec, gate), RayOptions("local", actors=2), observer)
    result = run_sweep(JudgeHost(), settings(tiny_playground), decode=dec)
    assert killed and dec.actors_started == 3  # two, then one for the retry
    assert dec.shard_attempts == [2, 1]
    assert differences(result.rows, single.rows) == [] and differences(result.samples, single.samples) == []  # once, and correct


@pytest.mark.slow  # 13 s; the retry-once path runs by default (actor killed mid-shard)
def test_a_shard_whose_actors_die_twice_is_an_error_naming_it(cluster, spec, tmp_path, tiny_playground):
    killed: list[int] = []

    def observer(shards):
        s1 = shards[1]
        if s1.state == "running" and s1.tokens > 0 and s1.pid and s1.pid not in killed:
            os.kill(s1.pid, signal.SIGKILL)
            killed.append(s1.pid)

    dec = RayDecoder(gated(spec, tmp_path / "never"), RayOptions("local", actors=2),
                     observer)
    with pytest.raises(ShardFailed, match=r"shard 1 \(prompts 2–3, 24 rows\) failed twice"):
        run_sweep(JudgeHost(), settings(tiny_playground), decode=dec)
    assert len(killed) == 2 and wait_gone(dec.pids) == []  # the other actor is stopped too


def test_cancel_stops_every_actor(cluster, spec, tmp_path, tiny_playground):
    seen: list[bool] = []

    def observer(shards):
        seen.append(all(x.state == "running" and x.tokens > 0 for x in shards))

    dec = RayDecoder(gated(spec, tmp_path / "never"), RayOptions("local", actors=2),
                     observer)
    with pytest.raises(SweepCancelled, match="stopped all 2 actors"):
        run_sweep(JudgeHost(), settings(tiny_playground), should_stop=lambda: any(seen), decode=dec)
    assert len(dec.pids) == 2 and wait_gone(dec.pids) == []  # both were mid-decode; none is left


def gated(spec, gate) -> GatedSpec:
    """The same engines, each holding every batch after its first step until the file `gate` exists."""
    return GatedSpec(**{f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}, gate=str(gate))
