"""The "Probes" tab: the known limits of preference tuning, measured against λ (KL strength).

Call `build_probes_tab(pg)` inside `gr.Tab("Probes")`. Only components and event wiring live here; rows,
decoding, statistics, tables and figures come from `playground.probes` (generation, outputs).
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from playground import registry
from playground.probes.generation import DEFAULT_LAMBDAS, QUICK, estimate, probe_settings, run_on_playground
from playground.probes.outputs import EXAMPLE_HEADERS, HEADERS, examples, figure, readable, write_outputs
from playground.probes.registry import PROBES
from playground.settings.request import DEFAULT_DECODE, LIMITS
from playground.settings.validation import InputError
from playground.runtime.job_folders import job_folder
from ui import pools
from ui.components import ADAPTER_PICKER, Dropdown, Number, Slider
from ui.jobs import SessionJobs, long_job, show_cancelled

# A probe decodes prompts × λ × samples answers (minutes on a CPU): the sweep's limit, enforced here as well,
# since Gradio applies `time_limit` to streaming events only.
PROBE_EVENT = pools.LM_JOBS
ALL = "all λ"
EXPLAIN = """**Probes: the known limits of preference tuning.** Each probe decodes a fixed, documented prompt set
at every λ (0 = base model, 1 = the adapter as trained, > 1 = weaker KL, i.e. pushed further) and measures one
failure mode. Every number carries a 95% interval bootstrapped over prompts; "within noise" means the change vs
λ = 0 is not distinguishable from zero at this sample size."""

PROBE_JOBS = SessionJobs("a probe", LIMITS.sweep_timeout_s)  # one per session; Cancel finds it
SHORT_HEADERS = ("Metric", "Group", "λ", "Estimate", "Change vs reference")  # the table shown first (fits a phone)


def short_table(full) -> pd.DataFrame:
    """The estimates table's key columns; a Group column only where some row has one."""
    if full is None or len(full) == 0 or not len(full.columns):
        return pd.DataFrame(columns=[h for h in SHORT_HEADERS if h != "Group"])
    keep = [h for h in SHORT_HEADERS if h in full.columns and not (h == "Group" and (full[h].astype(str).str.strip() == "").all())]
    return full[keep]



def describe(name: str) -> str:
    """What the probe measures, which way is worse, and its metrics."""
    p = PROBES.get(name)
    if p is None:
        return ""
    metrics = "\n".join(f"- `{m.name}`: {m.description}" + (f" (worse: **{m.worse}**)" if m.worse else "")
                        for m in p.metrics)
    stop = "" if p.title.endswith(("?", ".")) else "."
    return f"**{p.title}{stop}** {p.description}\n\n{metrics}"


def _settings(pg, name, adapter, lambdas, temperature, samples, max_new, seed, limit):
    return probe_settings(pg.adapters, probe=name, adapter=adapter, lambdas=lambdas, samples=samples,
                          temperature=temperature, max_new_tokens=max_new, seed=seed, limit=limit or None)


def estimate_line(pg, *knobs) -> str:
    """The cost line shown before running (or what is wrong with the knobs)."""
    try:
        name, s = _settings(pg, *knobs)
    except InputError as err:
        return f"⚠️ {err}"
    return "Estimate: " + estimate(name, s)


def filter_examples(rows: list[dict], lam: str) -> pd.DataFrame:
    """The examples behind one λ's point (all when `lam` is ALL)."""
    chosen = [r for r in rows if lam in (None, "", ALL) or r["λ"] == lam]
    return pd.DataFrame(chosen, columns=list(EXAMPLE_HEADERS))


def outputs(run, out_dir: str) -> list:
    """[summary, findings, figure, table, λ choices, examples, example rows, files] for one finished run."""
    r = run.result
    fig = figure(r)
    paths = write_outputs(Path(out_dir) / f"probe_{r.probe}.json", r, fig,
                          {"adapter": run.adapter, "answers": run.answers, "wall_s": run.wall_s})
    s = r.settings
    summary = (f"**{r.title}** on **{run.adapter}**: {run.answers} answers in {run.wall_s:.0f} s · "
               f"λ {', '.join(f'{v:g}' for v in s.lambdas)} · {s.samples} sample(s) · T {s.temperature:g} · "
               f"≤ {s.max_new_tokens} tokens · seed {s.seed}" + (f" · first {s.limit} prompts per set" if s.limit else "")
               + " · intervals: 95% bootstrap over prompts")
    findings = "\n".join(f"- {f}" for f in r.findings) or "_No findings._"
    rows = examples(r)
    lams = [ALL, *dict.fromkeys(x["λ"] for x in rows)]
    return [summary, findings, fig, pd.DataFrame(readable(r), columns=list(HEADERS)),
            gr.update(choices=lams, value=ALL), filter_examples(rows, ALL), rows, [str(p) for p in paths]]


def build_probes_tab(pg) -> None:
    """`pg`: a Playground, or a LazyPlayground still loading (only `pg.adapters` is read here)."""
    names = sorted(pg.adapters)
    default_adapter = registry.default_adapter(names)
    first = next(iter(PROBES))
    gr.Markdown(EXPLAIN)
    with gr.Row():
        probe = Dropdown([(p.title, n) for n, p in PROBES.items()], value=first, label="Probe", scale=2)
        adapter = Dropdown(names, value=default_adapter, label="Adapter", scale=1, elem_classes=[ADAPTER_PICKER])
    about = gr.Markdown(describe(first))
    with gr.Row():
        lambdas = gr.Textbox(",".join(f"{v:g}" for v in DEFAULT_LAMBDAS), label="λ values (comma-separated)",
                             elem_id="probe-lambdas",
                             info=f"In [0, {LIMITS.max_lambda:g}]; 0 = base (the reference), 1 = tuned, > 1 = weaker KL")
        temperature = Slider(0, LIMITS.max_temperature, value=DEFAULT_DECODE.temperature, step=0.05, label="Temperature", info="0 = greedy")
        samples = Slider(1, LIMITS.max_samples_per_setting, value=QUICK["samples"], step=1,
                            label="Samples per prompt per λ", info="More = steadier estimates, slower")
    with gr.Row():
        max_new = Slider(1, LIMITS.max_new_tokens, value=QUICK["max_new_tokens"], step=1, label="Max new tokens",
                            elem_id="probe-max-new", info="Longer = slower")
        limit = Number(QUICK["limit"], precision=0, minimum=0, label="Prompts per set (0 = all)", elem_id="probe-limit",
                          info="Fewer = quicker, wider intervals")
        seed = Number(0, precision=0, minimum=0, label="Seed", info="Sample k uses seed + k at every λ")
    knobs = [probe, adapter, lambdas, temperature, samples, max_new, seed, limit]
    cost = gr.Markdown(estimate_line(pg, *[k.value for k in knobs]))
    with gr.Row():
        run_btn = gr.Button("Run probe", variant="primary", elem_id="probe-run")
        cancel_btn = gr.Button("Cancel", variant="stop", visible=False, elem_id="probe-cancel")
    summary = gr.Markdown(elem_id="probe-summary")
    findings = gr.Markdown(label="Findings")
    plot = gr.Plot(label="Metrics vs λ (95% intervals)")
    small = gr.Dataframe(short_table(None), label="Estimates per λ (change vs the reference λ, paired by prompt)",
                         interactive=False, wrap=True, elem_id="probe-table")
    show_all = gr.Checkbox(False, label="Show every column (95% intervals, Δ, prompts, answers)", elem_id="probe-all-columns")
    table = gr.Dataframe(headers=list(HEADERS), label="Estimates per λ (Δ vs the reference λ, paired by prompt)",
                         interactive=False, wrap=True, visible=False)
    with gr.Row():
        lam_pick = Dropdown([ALL], value=ALL, label="Examples at λ", scale=1)
        files = gr.File(label="Downloads (JSON, CSV, PNG)", file_count="multiple", interactive=False, scale=3)
    examples_df = gr.Dataframe(headers=list(EXAMPLE_HEADERS), label="The answers behind the points",
                               interactive=False, wrap=True)
    example_rows = gr.State([])

    async def run(name, adapter, lambdas, temperature, samples, max_new, seed, limit, request: gr.Request,
                  progress=gr.Progress()):  # noqa: B008 (Gradio's way of asking for a progress tracker)
        def work(control):
            checked, s = _settings(pg, name, adapter, lambdas, temperature, samples, max_new, seed, limit)
            try:
                done = run_on_playground(pg, checked, s, progress=lambda f, m: progress(f, desc=m), should_stop=control)
            except InputError as err:
                raise InputError(f"{err}{' (over the time limit)' if control.late else ''}") from None
            return outputs(done, job_folder("probe"))  # a fresh directory per request

        async for update in PROBE_JOBS.run(request, work, 8):
            yield update

    def cancel(request: gr.Request):
        PROBE_JOBS.cancel(request)

    quiet = {"queue": False, "api_visibility": "private", "show_progress": "hidden"}
    probe.change(describe, probe, about, **quiet)
    for k in knobs:
        k.change(lambda *v: estimate_line(pg, *v), knobs, cost, **quiet)
    lam_pick.change(filter_examples, [example_rows, lam_pick], examples_df, **quiet)
    out = [summary, findings, plot, table, lam_pick, examples_df, example_rows, files]
    run_event = long_job(run_btn.click, [run_btn], cancel_btn, summary, run, knobs, out, api_name="probe", **PROBE_EVENT)
    run_event.then(short_table, table, small, **quiet)
    show_all.change(lambda on: (gr.Dataframe(visible=on), gr.Dataframe(visible=not on)), show_all, [table, small], **quiet)
    cancel_btn.click(cancel, None, None, cancels=[run_event], api_name="probe_cancel", queue=False)
    show_cancelled(cancel_btn, [run_btn], summary)


