"""The Trade-off tab's every-control view: several controls on the same axes, the Pareto front across them, the formula table."""
from __future__ import annotations

import math

import pytest

PROMPTS = ["Tell me something about cats.", "Give me a tip for a rainy day."]


def hand_rows():
    """Three controls: dera (λ 0, 1), bon (n 1, 4) and cfg (γ 1, 2) with rewards and KL chosen by hand."""
    def r(control, knob, value, reward, kl, div):
        base = {"lambda": 0.0, "n": 1, "gamma": 1.0} | {knob: value}
        return base | {"control": control, "temperature": 1.0, "reward_mean": reward, "reward_lo": reward - 0.05,
                       "reward_hi": reward + 0.05, "heldout_reward_mean": 0.5, "heldout_reward_lo": 0.4,
                       "heldout_reward_hi": 0.6, "kl_seq": kl, "kl_seq_lo": kl * 0.8, "kl_seq_hi": kl * 1.2,
                       "kl_bound": math.log(value) - (value - 1) / value if control == "bon" else None,
                       "semantic_diversity": div, "semantic_diversity_lo": div - 0.02, "semantic_diversity_hi": div + 0.02,
                       "kl_to_base": kl / 30, "length_mean": 30, "boilerplate": 0.0, "entropy": 2.0}
    return [r("dera", "lambda", 0.0, 0.1, 0.0, 0.5), r("dera", "lambda", 1.0, 0.4, 6.0, 0.4),
            r("bon", "n", 1, 0.1, 0.0, 0.5), r("bon", "n", 4, 0.35, 0.6, 0.45),
            r("cfg", "gamma", 1.0, 0.1, 0.0, 0.5), r("cfg", "gamma", 2.0, 0.2, 3.0, 0.3)]


def test_pareto_front_across_controls_wants_more_reward_for_less_kl():
    from playground.tradeoff.plots import cross_pareto

    rows = hand_rows()
    assert cross_pareto(rows, "kl") == [0, 1, 2, 3, 4]  # cfg γ=2 is beaten by bon n=4 (more reward, less KL)
    assert 5 not in cross_pareto(rows, "diversity")


def test_every_control_figure_draws_each_control_on_the_same_axes():
    from playground.tradeoff.plots import controls_figures

    figures = controls_figures(hand_rows(), "upbeat", "on_topic")
    labels = [t.get_text() for t in figures["controls_frontier"].axes[0].get_legend().get_texts()]
    assert {"dera", "bon (λ=0)", "cfg (λ=0)", "Pareto front (all controls)"} <= set(labels)
    assert any("bound" in label for label in labels)
    for fig in figures.values():
        fig.savefig(__import__("io").BytesIO(), format="png", dpi=40)


def test_formula_table_is_in_the_docs_and_the_tab_intro():
    from pathlib import Path

    from playground.tradeoff.formulas import FORMULA_TABLE
    from ui.tradeoff_tab import CONTROLS_EXPLAIN

    assert FORMULA_TABLE in CONTROLS_EXPLAIN
    assert FORMULA_TABLE in (Path(__file__).resolve().parents[2] / "docs" / "controls.md").read_text(encoding="utf-8")
    for control in ("dera", "weights", "cfg", "bon"):
        assert f"`{control}`" in FORMULA_TABLE


def test_tab_runs_several_controls_on_the_same_prompts_and_draws_them_together(tiny_playground, tmp_path):
    from playground.tradeoff.sweep import run_controls
    from ui.tradeoff_tab import SOURCES, _control_settings, _controls_outputs

    chosen = _control_settings(tiny_playground, ["cfg", "dera", "bon"], "1,2", "1,2", "0", "", "a", SOURCES[1],
                               "\n".join(PROMPTS), None, "λ", "0,1", "1", 2, 4, "upbeat", "", 0)
    assert [s.control for s in chosen] == ["dera", "bon", "cfg"]
    assert {s.prompts for s in chosen} == {tuple(PROMPTS)} and {s.decode.seed for s in chosen} == {0}
    result = run_controls(tiny_playground, chosen)
    table, frontier, diversity, overopt, files, summary = _controls_outputs(result, str(tmp_path))
    assert len(table) == 6 and list(table["control"]) == ["dera"] * 2 + ["bon"] * 2 + ["cfg"] * 2
    labels = {t.get_text() for t in frontier.axes[0].get_legend().get_texts()}
    assert {"dera", "bon (λ=0)", "cfg (λ=0)"} <= labels
    assert "Pareto front" in summary and any(f.endswith("controls.json") for f in files)


def test_tab_refuses_no_controls_and_names_the_parameter(tiny_playground):
    from playground.settings.validation import InputError
    from ui.tradeoff_tab import SOURCES, _control_settings

    for picked, name in (([], "controls"), (["nope"], "controls")):
        with pytest.raises(InputError, match=name):
            _control_settings(tiny_playground, picked, "1,2", "1,2", "0", "", "a", SOURCES[1], PROMPTS[0], None, "λ",
                              "0,1", "1", 2, 4, "upbeat", "", 0)
