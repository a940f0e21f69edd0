"""The DeRa check: KL(π_B ‖ π_λ) math on synthetic logits, the run on the tiny model, the CLI and the tab."""
from __future__ import annotations

import asyncio

import argparse
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from playground.cli import calibrate as cal_cli
from playground.cli.errors import run_command
from playground.settings.request import DecodeSettings
from playground.tradeoff.calibrate import (CalibrationSettings, best_on_grid, bootstrap_best, calibration_figure,
                                           calibration_settings, kl_to_mix, run_calibration, verdict)
from playground.settings.validation import InputError

GRID = [round(0.05 * i, 2) for i in range(41)]  # 0 … 2 step 0.05
PROMPTS = ["Tell me something about cats.", "Give me a tip for a rainy day.", "How should I spend a free Sunday?"]


def synthetic(n: int = 12, v: int = 300, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v, generator=g) * 2, torch.randn(n, v, generator=g) * 2


@pytest.mark.parametrize("lam", [0.5, 0.2, 1.3])
def test_kl_is_zero_at_the_lambda_that_built_b(lam):
    l_base, l_a = synthetic()
    l_b = l_base + lam * (l_a - l_base)  # π_B = softmax(ℓ_base + λ(ℓ_A − ℓ_base))
    kl = kl_to_mix(l_b, l_base, l_a, GRID)
    curve = kl.mean(-1).numpy()
    i = GRID.index(lam)
    assert kl.dtype == torch.float32 and kl.shape == (len(GRID), 12)
    assert curve[i] == pytest.approx(0.0, abs=1e-5) and curve.min() == curve[i]
    assert best_on_grid(GRID, curve) == pytest.approx(lam, abs=1e-3)
    assert np.all(np.diff(curve[:i]) < 0) and np.all(np.diff(curve[i:]) > 0)  # convex: falls, then rises


def test_kl_matches_the_direct_formula():
    l_base, l_a = synthetic(seed=1)
    l_b = torch.randn(l_base.shape, generator=torch.Generator().manual_seed(5))
    lams = [0.0, 0.7, 2.5]
    got = kl_to_mix(l_b, l_base, l_a, lams)
    for row, lam in zip(got, lams):
        logq = torch.log_softmax(l_base + lam * (l_a - l_base), -1)
        logp = torch.log_softmax(l_b, -1)
        assert torch.allclose(row, (logp.exp() * (logp - logq)).sum(-1), atol=1e-4)


def test_best_lambda_off_grid_is_refined_between_points():
    l_base, l_a = synthetic(seed=2)
    l_b = l_base + 0.37 * (l_a - l_base)
    curve = kl_to_mix(l_b, l_base, l_a, GRID).mean(-1).numpy()
    assert best_on_grid(GRID, curve) == pytest.approx(0.37, abs=0.01)


def test_bootstrap_interval_covers_the_spread_of_prompt_minima():
    l_base, l_a = synthetic(n=6, seed=3)
    per_prompt = []
    for lam in (0.3, 0.4, 0.5, 0.6, 0.7):
        l_b = l_base + lam * (l_a - l_base)
        per_prompt.append(kl_to_mix(l_b, l_base, l_a, GRID).mean(-1).numpy())
    best, lo, hi = bootstrap_best(GRID, np.array(per_prompt), n_boot=400)
    assert best.estimate == pytest.approx(0.5, abs=0.02)
    assert 0.3 <= best.low < best.estimate < best.high <= 0.7
    assert np.all(lo <= np.array(per_prompt).mean(0) + 1e-9) and np.all(hi >= np.array(per_prompt).mean(0) - 1e-9)


def test_teacher_force_is_the_lambda_mix_of_base_and_tuned(tiny_playground):
    pg = tiny_playground
    ids = pg.encode(PROMPTS[0])
    cont = [pg.encode("Hello there")[-1], 42, 7]
    d1 = DecodeSettings(lam=1.0, temperature=1.0, top_p=1.0)
    base = pg.teacher_force(ids, None, DecodeSettings(lam=0.0), cont)
    tuned = pg.teacher_force(ids, "a", d1, cont)
    half = pg.teacher_force(ids, "a", DecodeSettings(lam=0.5), cont)
    assert len(base) == len(cont) + 1 and all(x.dtype == torch.float32 and x.shape == (pg.vocab_size,) for x in base)
    for b, t, h in zip(base, tuned, half):
        assert torch.allclose(h, b + 0.5 * (t - b), atol=1e-4)
    assert not torch.allclose(base[1], tuned[1])


def test_an_adapter_against_itself_is_best_at_lambda_one(tiny_playground):
    s = CalibrationSettings("a", "a", 0.1, 0.1, tuple(PROMPTS), samples=2, max_new_tokens=6, seed=0, lambdas=tuple(GRID))
    seen = []
    r = run_calibration(tiny_playground, s, progress=lambda f, m: seen.append(f), n_boot=200)
    assert r.nominal_lambda == 1.0 and r.n_prompts == 3 and r.tokens > 0
    assert r.kl_mean[GRID.index(1.0)] == pytest.approx(0.0, abs=1e-4) and r.kl_at["tuned"][0] == pytest.approx(0.0, abs=1e-4)
    assert r.best_lambda == pytest.approx(1.0, abs=0.01) and r.best_lambda_lo <= 1.0 <= r.best_lambda_hi
    assert r.reached and "consistent with the KL-regularised optimum" in verdict(r)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert calibration_figure(r).axes[0].get_xlabel().startswith("λ")


def test_two_adapters_give_a_finite_curve_with_an_interval(tiny_playground):
    s = calibration_settings(tiny_playground.adapters, adapter="a", against="b", prompts=PROMPTS, samples=2, max_new_tokens=5)
    assert s.nominal_lambda == pytest.approx(0.2) and s.lambdas[0] == 0.0 and s.lambdas[-1] == 2.0
    r = run_calibration(tiny_playground, s, n_boot=200)
    d = r.to_dict()
    assert len(d["kl_mean"]) == len(d["kl_lo"]) == len(d["lambdas"]) == 41
    assert all(lo <= m + 1e-9 <= hi + 2e-9 for lo, m, hi in zip(d["kl_lo"], d["kl_mean"], d["kl_hi"]))
    assert d["best_lambda_lo"] <= d["best_lambda"] <= d["best_lambda_hi"] and "nominal λ = 0.2" in d["verdict"]
    assert json.loads(json.dumps(d))["per_prompt"][0]["prompt"] == PROMPTS[0]


@pytest.mark.parametrize("raw, name", [
    ({"against": "a"}, "against"), ({"adapter": "zz"}, "adapter"), ({"prompts": PROMPTS[:1]}, "prompts"),
    ({"samples": 0}, "samples"), ({"max_new_tokens": 999}, "max_new_tokens"), ({"lambda_max": -1}, "lambda_max"),
])
def test_settings_refuse_bad_input(tiny_playground, raw, name):
    with pytest.raises(InputError, match=name):
        calibration_settings(tiny_playground.adapters, **({"adapter": "a", "against": "b", "prompts": PROMPTS} | raw))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cal_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["calibrate", *argv])


@pytest.mark.parametrize("argv, name", [
    (["--out", "x.txt"], "out"), (["--adapter", "nope"], "nope"), (["--against", "upbeat-b0.1"], "against"),
    (["--prompts", "1"], "prompts"), (["--prompts", "many"], "prompts"), (["--samples", "0"], "samples"),
    (["--max-new-tokens", "0"], "max_new_tokens"), (["--lambda-max", "-1"], "lambda_max"),
    (["--prompts-file", "/nonexistent/p.txt"], "prompts-file"), (["--seed", "x"], "seed"),
])
def test_cli_bad_input_is_one_error_line_and_exit_2(monkeypatch, capsys, tmp_path, argv, name):
    monkeypatch.setattr(cal_cli, "load_playground", lambda adapters: pytest.fail("the model must not load on bad input"))
    defaults = {"--adapter": "upbeat-b0.1", "--against": "upbeat-b0.5", "--out": str(tmp_path / "c.json")}
    for flag, value in defaults.items():
        if flag not in argv:
            argv = [*argv, flag, value]
    assert run_command(lambda: cal_cli.run(_args(*argv))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and name in err[0]


def test_cli_writes_json_png_and_records_the_card(monkeypatch, capsys, tmp_path, tiny_playground, tiny_adapters):
    shutil.copytree(tiny_adapters["a"], tmp_path / "a")
    entries = {n: SimpleNamespace(beta_train=info.beta_train, judge=info.judge, path=tmp_path / n if n == "a" else info.path)
               for n, info in tiny_playground.adapters.items()}
    monkeypatch.setattr(cal_cli, "load_playground", lambda adapters: tiny_playground)
    monkeypatch.setattr(cal_cli, "check_installed", lambda name, what: name)
    monkeypatch.setattr(cal_cli.registry, "get_adapter", lambda name: entries[name])
    (tmp_path / "p.txt").write_text("\n".join(PROMPTS))
    out = tmp_path / "cal.json"
    argv = ["--adapter", "a", "--against", "b", "--prompts-file", str(tmp_path / "p.txt"), "--prompts", "3",
            "--samples", "2", "--max-new-tokens", "4", "--lambda-points", "21", "--record", "--out", str(out)]
    assert cal_cli.run(_args(*argv)) == 0
    data = json.loads(out.read_text())
    assert data["adapter"] == "a" and data["against"] == "b" and len(data["lambdas"]) == 21
    assert out.with_suffix(".png").stat().st_size > 1000
    card = json.loads((tmp_path / "a" / "card.json").read_text())
    entry = card["calibration"]["b"]
    assert entry["best_lambda"] == data["best_lambda"] and entry["nominal_lambda"] == pytest.approx(0.2)
    assert entry["command"].startswith("python -m playground calibrate --adapter a --against b") and "--record" in entry["command"]
    captured = capsys.readouterr()
    assert "nominal λ = 0.2" in captured.out and "best λ" in captured.out and "different judges" in captured.out
    assert "100%" in captured.err


def test_calibrate_verb_is_registered():
    from playground.__main__ import VERBS

    assert VERBS["calibrate"] == "playground.cli.calibrate"


class Loading:
    """Stands in for a LazyPlayground: only `adapters` may be read while building."""

    def __init__(self, adapters):
        self.adapters = adapters

    def __getattr__(self, name):
        raise AssertionError(f"the tab read pg.{name} at build time")


def _tab_fn(pg, api_name: str):
    import gradio as gr

    from ui.calibrate_tab import build_calibrate_tab

    with gr.Blocks() as demo:
        build_calibrate_tab(pg)
    return next(fn for fn in demo.fns.values() if getattr(fn, "api_name", None) == api_name)


def test_tab_builds_reading_only_adapters_and_runs_as_a_job(tiny_playground):
    from playground.settings.request import LIMITS
    from playground.settings.server import SERVE

    fn = _tab_fn(Loading(tiny_playground.adapters), "dera_check")
    assert fn.concurrency_id == "lm_jobs" and fn.concurrency_limit == SERVE.job_concurrency
    assert fn.time_limit == LIMITS.sweep_timeout_s
    run = _tab_fn(tiny_playground, "dera_check").fn
    async def last():
        out = None
        async for update in run("a", "b", 2, 1, 4, 0, None, progress=lambda f, desc=None: None):
            out = update  # heartbeats (gr.skip) until the result
        return out

    text, fig, files = asyncio.run(last())
    assert text.startswith("**nominal λ = 0.2, best λ = ") and "optimum" in text
    assert fig.axes and [f.rsplit(".", 1)[1] for f in files] == ["json", "png"]
    assert json.loads(open(files[0]).read())["n_prompts"] == 2


def test_teacher_force_of_several_policies_is_one_pass_with_the_same_logits(tiny_playground):
    pg = tiny_playground
    ids, cont = pg.encode(PROMPTS[1]), [11, 12, 13]
    ds = [DecodeSettings(lam=0.0), DecodeSettings(lam=1.0), DecodeSettings(lam=1.0)]
    both = pg.teacher_force(ids, [None, "a", "b"], ds, cont)
    assert len(both) == 4 and both[0].shape == (3, pg.vocab_size) and both[0].dtype == torch.float32
    for k, (name, d) in enumerate(zip([None, "a", "b"], ds)):
        alone = pg.teacher_force(ids, name, d, cont)
        assert all(torch.allclose(x[k], y, atol=1e-4) for x, y in zip(both, alone))
    with pytest.raises(ValueError, match="adapters"):
        pg.teacher_force(ids, ["a", "b"], ds, cont)
