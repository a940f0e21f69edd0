"""The Probes tab builds on a still-loading playground and its handlers turn a run into its outputs."""
from __future__ import annotations

import gradio as gr

import playground.probes.generation as gen
from ui.probes_tab import ALL, build_probes_tab, describe, estimate_line, filter_examples, outputs


class Loading:
    """Stands in for a LazyPlayground: only `adapters` may be read while building."""

    def __init__(self, adapters):
        self.adapters = adapters

    def __getattr__(self, name):
        raise AssertionError(f"the tab read pg.{name} at build time")


def test_tab_builds_reading_only_adapters(tiny_playground):
    with gr.Blocks() as demo:
        build_probes_tab(Loading(tiny_playground.adapters))
    api = [getattr(fn, "api_name", None) for fn in demo.fns.values()]
    assert "probe" in api


def test_describe_and_estimate(tiny_playground):
    assert "worse" in describe("made_up")
    line = estimate_line(tiny_playground, "made_up", "a", "0,1", 0.7, 1, 8, 0, 2)
    assert line.startswith("Estimate:") and "8 answers" in line
    assert "lambdas" in estimate_line(tiny_playground, "made_up", "a", "0,x", 0.7, 1, 8, 0, 2)


def test_outputs_of_a_run(tiny_playground, tmp_path):
    _, s = gen.probe_settings(tiny_playground.adapters, probe="refusal", adapter="a", lambdas="0,2", samples=1,
                              max_new_tokens=3, limit=1)
    run = gen.run_on_playground(tiny_playground, "refusal", s)
    summary, findings, fig, table, lams, examples, rows, files = outputs(run, str(tmp_path))
    assert "refusal" in summary.lower() or "Rephrasing" in summary
    assert findings.startswith("- ") and len(table) == len(run.result.rows) and len(files) == 3
    assert lams["choices"][0] == ALL and len(examples) == len(rows) > 0
    at0 = filter_examples(rows, "0")
    assert 0 < len(at0) < len(rows) and set(at0["λ"]) == {"0"}
