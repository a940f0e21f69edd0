"""Every control on one frontier: best-of-n, λ mixing, weight scaling and prompt guidance as rows of one sweep."""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pandas as pd
import pytest

from playground.cli import sweep as sweep_cli
from playground.cli.errors import run_command
from playground.judges.judges import available_judges
from playground.tradeoff.sweep import ROW_KEYS, bon_kl_bound, bon_log_ratio, run_sweep
from playground.settings.validation import sweep_settings

PROMPTS = ["Tell me something about cats.", "Give me a tip for a rainy day."]
SMALL = dict(prompts=PROMPTS, temperatures=[1.0], samples=2, max_new_tokens=4, judge="upbeat")


def settings(pg, **raw):
    return sweep_settings(pg.adapters, available_judges(), **({"adapter": "a"} | SMALL | raw))


@pytest.fixture(scope="module")
def bon(tiny_playground):
    return run_sweep(tiny_playground, settings(tiny_playground, control="bon", ns="1,2,4"))


@pytest.fixture(scope="module")
def dera(tiny_playground):
    return run_sweep(tiny_playground, settings(tiny_playground, lambdas=[0.0, 1.0]))


def test_bon_bound_is_log_n_minus_n_minus_1_over_n():
    assert bon_kl_bound(1) == 0.0
    assert bon_kl_bound(4) == pytest.approx(math.log(4) - 3 / 4)


def test_bon_log_ratio_is_the_exact_likelihood_ratio_and_its_mean_stays_under_the_bound():
    n, pool = 4, list(range(50))  # 50 distinct rewards, uniform policy
    ranks = np.arange(1, 51) / 50
    p_bon = ranks ** n - (ranks - 1 / 50) ** n  # P(best of 4 has rank k)
    ratios = np.array([math.exp(bon_log_ratio(r, [v for v in pool if v != r], n)) for r in pool])  # F over the others ∪ {r}
    np.testing.assert_allclose(ratios, p_bon * 50)  # π_bon(y)/π(y)
    kl = float(np.sum(p_bon * np.log(ratios)))
    assert 0.9 * bon_kl_bound(n) < kl < bon_kl_bound(n)  # close to the bound with distinct rewards
    assert bon_log_ratio(0.0, [0.0] * 8, n) == 0.0  # all tied: selecting is sampling
    assert bon_log_ratio(3.0, pool, 1) == 0.0


def test_bon_kl_estimate_is_not_biased_up_by_the_kept_answers_own_candidates():
    """Distinct rewards, many kept answers: the plug-in estimate of a selection from 4 lands near the bound, not above."""
    from playground.settings.request import DecodeSettings, SweepSettings
    from playground.tradeoff.sweep import best_of_n

    rng = np.random.default_rng(0)
    s = SweepSettings("a", 0.1, ("p",), (0.0,), (1.0,), 200, DecodeSettings(), "upbeat", "on_topic", "bon", (1, 4))
    samples = [{"prompt_index": 0, "lambda": 0.0, "temperature": 1.0, "sample": k, "reward": float(rng.random()),
                "kl_sum": 0.0, "decoded": 1, "cost": 1} for k in range(200 * 4)]
    est = np.mean([x["kl_est"] for x in best_of_n(s, samples, 4)])
    assert abs(est - bon_kl_bound(4)) < 0.1


def row(result, **knobs):
    return next(r for r in result.rows if all(r[k] == v for k, v in knobs.items()))


def test_bon_rows_carry_control_n_bound_and_the_common_keys(bon):
    assert all(tuple(r) == ROW_KEYS for r in bon.rows)
    assert [(r["control"], r["n"], r["lambda"], r["gamma"]) for r in bon.rows] == [("bon", n, 0.0, 1.0) for n in (1, 2, 4)]
    assert [r["kl_bound"] for r in bon.rows] == [bon_kl_bound(n) for n in (1, 2, 4)]
    for r in bon.rows:  # a kept answer's log-ratio is at most log n (it can be negative: an estimate, not a KL)
        assert r["kl_seq"] <= math.log(r["n"]) + 1e-9
    assert row(bon, n=1)["kl_seq"] == 0.0


def test_bon_keeps_the_best_of_its_candidates_so_the_proxy_never_falls_with_n(bon):
    rewards = [row(bon, n=n)["reward_mean"] for n in (1, 2, 4)]
    assert rewards == sorted(rewards)


def test_bon_reports_n_times_the_decoding(bon):
    one, four = row(bon, n=1), row(bon, n=4)
    assert four["decode_tokens"] > 3 * one["length_mean"] and four["cost_tokens"] == four["decode_tokens"]  # base: 1 row
    assert one["decode_tokens"] == one["length_mean"]


def test_bon_of_one_is_the_base_model_sample_for_sample(bon, dera):
    assert row(bon, n=1)["reward_mean"] == row(dera, **{"lambda": 0.0})["reward_mean"]
    kept = sorted((x["prompt_index"], x["seed"], x["text"]) for x in bon.samples if 1 in x.get("kept_for_n", []))
    base = sorted((x["prompt_index"], x["seed"], x["text"]) for x in dera.samples if x["lambda"] == 0.0)
    assert kept == base


def test_bon_wraps_a_realigned_policy(tiny_playground):
    r = run_sweep(tiny_playground, settings(tiny_playground, control="bon", ns="1,2", lambdas="1"))
    assert [(x["lambda"], x["n"]) for x in r.rows] == [(1.0, 1), (1.0, 2)]
    assert r.rows[0]["kl_seq"] > 0  # the policy's own distance from the base
    assert r.rows[0]["cost_tokens"] == 2 * r.rows[0]["decode_tokens"]  # base + policy row


def test_cfg_rows_gamma_one_is_the_plain_policy_and_guidance_costs_two_rows(tiny_playground, dera):
    r = run_sweep(tiny_playground, settings(tiny_playground, control="cfg", gammas="1,2"))
    assert [(x["control"], x["gamma"], x["n"]) for x in r.rows] == [("cfg", 1.0, 1), ("cfg", 2.0, 1)]
    assert r.rows[0]["reward_mean"] == row(dera, **{"lambda": 0.0})["reward_mean"]
    assert r.rows[1]["cost_tokens"] == 2 * r.rows[1]["decode_tokens"]
    assert r.rows[1]["kl_seq"] > 0  # guidance moves the policy away from the base model
    assert all(r0["kl_bound"] is None for r0 in r.rows)


def test_weights_control_keeps_lambda_with_its_mode(tiny_playground):
    r = run_sweep(tiny_playground, settings(tiny_playground, control="weights", lambdas="0,1"))
    assert [(x["control"], x["mode"], x["lambda"]) for x in r.rows] == [("weights", "weights", 0.0), ("weights", "weights", 1.0)]
    assert settings(tiny_playground, mode="weights").control == "weights"  # the old --mode weights is the same control


@pytest.mark.parametrize("raw, name", [
    ({"control": "nope"}, "control"), ({"ns": "1,4"}, "ns"), ({"control": "bon", "ns": "0,2"}, "ns"),
    ({"control": "bon", "ns": "2.5"}, "ns"), ({"control": "cfg", "gammas": "1,99"}, "gammas"),
    ({"control": "bon", "lambdas": "0,1"}, "lambdas"), ({"gammas": "2"}, "gammas"),
    ({"control": "dera", "mode": "weights"}, "mode"), ({"control": "bon", "ns": "16", "samples": 16}, "max n"),
])
def test_validation_names_the_parameter(tiny_playground, raw, name):
    from playground.settings.validation import InputError

    with pytest.raises(InputError, match=name):
        settings(tiny_playground, **raw)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sweep_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["sweep", *argv])


@pytest.mark.parametrize("argv, expect", [
    (["--control", "bon", "--n", "1,4"], [("bon", 1, 1.0, 0.0), ("bon", 4, 1.0, math.log(4) - 3 / 4)]),
    (["--control", "cfg", "--gammas", "1,2"], [("cfg", 1, 1.0, None), ("cfg", 1, 2.0, None)]),
])
def test_cli_sweep_control_writes_rows_with_the_knob_under_its_key(monkeypatch, capsys, tmp_path, tiny_playground, argv, expect):
    monkeypatch.setattr(sweep_cli, "load_playground", lambda adapter: tiny_playground)
    monkeypatch.setattr(sweep_cli, "pick_adapter", lambda name: name)
    monkeypatch.setattr(sweep_cli.registry, "get_adapter", lambda name: tiny_playground.adapters[name])
    out = tmp_path / "res.json"
    base = ["--adapter", "a", "--prompt", PROMPTS[0], "--prompt", PROMPTS[1], "--temperatures", "1", "--samples", "2",
            "--max-new-tokens", "4", "--out", str(out)]
    assert sweep_cli.run(_args(*base, *argv)) == 0
    rows = json.loads(out.read_text())
    got = [(r["control"], r["n"], r["gamma"], r["kl_bound"]) for r in rows]
    assert [g[:3] for g in got] == [e[:3] for e in expect]
    for (*_, bound), (*_, want) in zip(got, expect):
        assert bound == pytest.approx(want) if want is not None else bound is None
    assert list(pd.read_csv(out.with_suffix(".csv"))["control"]) == [e[0] for e in expect]
    assert f"control {expect[0][0]}" in capsys.readouterr().out


def test_cli_refuses_n_without_bon_before_loading(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sweep_cli, "load_playground", lambda adapter: pytest.fail("the model must not load on bad input"))
    assert run_command(lambda: sweep_cli.run(_args("--n", "1,4", "--out", str(tmp_path / "r.json")))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ns")

