"""run_probe, settings, statistics helpers, results and the registry."""
from __future__ import annotations

import json
import math

import pytest

from playground.probes.registry import PROBES, UnknownProbeError, get_probe
from playground.probes.base import (
    Generated,
    ProbeContext,
    ProbeRow,
    ProbeSettings,
    run_probe,
    user,
)
from playground.probes.result import ProbeResult
from playground.probes.statistics import per_lambda, share_interval
from playground.probes.made_up import MadeUpProbe
from tests.probes.fakes import FakeGenerate, context


def test_settings_validation_and_reference() -> None:
    s = ProbeSettings(lambdas=[2, 0.5], samples=1)
    assert s.lambdas == (2.0, 0.5) and s.reference_lambda == 0.5
    assert ProbeSettings(lambdas=(1, 0)).reference_lambda == 0.0
    for bad in ({"lambdas": ()}, {"lambdas": (0, 0)}, {"lambdas": (math.nan,)}, {"samples": 0},
                {"temperature": -1}, {"max_new_tokens": 0}, {"limit": 0}):
        with pytest.raises(ValueError):
            ProbeSettings(**bad)


def test_grid_rows_share_seed_across_lambda() -> None:
    rows = ProbeSettings(lambdas=(0, 1), samples=2, seed=7).grid("p", user("hi"))
    assert [(r.lam, r.sample, r.seed) for r in rows] == [(0, 0, 7), (0, 1, 8), (1, 0, 7), (1, 1, 8)]
    assert rows[0].prompt == "hi"


def test_run_probe_decodes_all_rows_in_one_call_and_checks_the_answers() -> None:
    settings = ProbeSettings(lambdas=(0, 1), samples=2, limit=3)
    gen = FakeGenerate(lambda r: "I'm not sure.")
    run_probe(MadeUpProbe(), settings, gen, context())
    assert len(gen.calls) == 1 and len(gen.calls[0]) == (3 + 3) * 2 * 2
    # plain strings are accepted as the text
    result = run_probe(MadeUpProbe(), settings, lambda rows: ["I don't know."] * len(rows), context())
    assert result.get("hedged_on_invented", 1.0).value.estimate == 1.0
    with pytest.raises(ValueError, match="one per row"):
        run_probe(MadeUpProbe(), settings, lambda rows: [], context())
    with pytest.raises(ValueError, match="out of order"):
        run_probe(MadeUpProbe(), settings, lambda rows: [Generated(r, "x") for r in reversed(rows)], context())
    with pytest.raises(TypeError):
        run_probe(MadeUpProbe(), settings, lambda rows: [1] * len(rows), context())


def test_share_interval_falls_back_to_wilson_when_degenerate() -> None:
    iv = share_interval([0.0] * 12, [f"p{i}" for i in range(12)], n_boot=200)
    assert iv.estimate == 0.0 and iv.low == 0.0 and 0.2 < iv.high < 0.3  # Wilson 0/12: [0, 0.243]
    iv = share_interval([0, 1] * 10, [f"p{i}" for i in range(20)], n_boot=200)
    assert iv.estimate == 0.5 and 0 < iv.low < 0.5 < iv.high < 1


def test_per_lambda_pairs_by_prompt_and_labels_noise() -> None:
    s = ProbeSettings(lambdas=(0, 1, 2), samples=1)
    rec = [(0.0, f"p{i}", 0.0) for i in range(10)] + [(1.0, f"p{i}", float(i % 2)) for i in range(10)]
    rec += [(2.0, f"p{i}", 1.0) for i in range(10)] + [(2.0, "p0", math.nan)]
    rows = per_lambda("m", rec, s, ProbeContext(n_boot=200), binary=True)
    assert [r.noise for r in rows] == ["reference", "up", "up"]
    assert rows[0].vs_reference is None
    assert rows[2].vs_reference.estimate == pytest.approx(1.0) and rows[2].n_rows == 10  # NaN left out
    assert rows[1].vs_reference.estimate == pytest.approx(0.5)


def test_result_json_is_strict_json() -> None:
    settings = ProbeSettings(lambdas=(0, 1), samples=1, limit=2)
    result = run_probe(MadeUpProbe(), settings, FakeGenerate(lambda r: "Paris."), context())
    assert isinstance(result, ProbeResult)
    data = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert data["probe"] == "made_up" and data["settings"]["lambdas"] == [0.0, 1.0]
    assert {m["name"] for m in data["metrics"]} >= {"hedged_on_invented", "invented_confidently"}
    assert result.table()[0].keys() >= {"metric", "lambda", "value", "noise"}
    with pytest.raises(KeyError, match="have"):
        result.get("nope", 0.0)


def test_registry() -> None:
    assert list(PROBES) == ["answers_question", "judge_bias", "made_up", "sycophancy", "language", "refusal"]
    for name, probe in PROBES.items():
        assert probe.name == name and probe.title and probe.description.endswith(".")
        assert get_probe(name) is probe
    with pytest.raises(UnknownProbeError) as err:
        get_probe("vibes")
    assert "answers_question" in str(err.value) and "refusal" in str(err.value)
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)


def test_rows_are_unique_per_probe() -> None:
    settings = ProbeSettings(lambdas=(0, 1), samples=2)
    for probe in PROBES.values():
        rows = probe.rows(settings)
        keys = [(r.prompt_id, r.lam, r.sample, r.meta.get("variant")) for r in rows]
        assert len(keys) == len(set(keys)), probe.name
        assert all(isinstance(r, ProbeRow) and r.messages[-1]["role"] == "user" for r in rows)
