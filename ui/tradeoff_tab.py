"""The "Trade-off" tab: sweep λ (or β) × temperature on one adapter; plot reward, KL and diversity.

Call `build_tradeoff_tab(pg)` inside `gr.Tab("Trade-off")`. Only components and event wiring live here;
the sweep, metrics and figures come from `playground.tradeoff.sweep` and `playground.tradeoff.plots`.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from playground import registry
from playground.judges.judges import available_judges
from playground.settings.request import CONTROLS, LIMITS, SWEEP
from playground.settings.server import SERVE, job_estimate
from playground.tradeoff.outputs import COLUMNS, default_prompts, read_prompt_file, readable, split_prompts, write_outputs
from playground.tradeoff.formulas import FORMULA_TABLE
from playground.tradeoff.plots import all_figures, controls_figures, cross_pareto, knob_label, overoptimisation_warning
from playground.tradeoff.sweep import SweepCancelled, SweepResult, run_controls, run_sweep
from playground.tradeoff.token_view import token_view
from playground.settings.validation import InputError, check_choice, check_job_cost, check_prompt, decode_settings, sweep_settings
from playground.runtime.job_folders import job_folder
from playground.distributed.jobs import app_runner
from ui import pools
from ui.components import ADAPTER_PICKER, Dropdown, Number, Radio, Slider
from ui.jobs import JobControl, SessionJobs, long_job, run_job, show_cancelled

# A sweep decodes prompts × settings × samples answers and can take minutes on a CPU, so it gets a larger
# limit than a chat turn. Gradio applies `time_limit` only to streaming events, so the limit is also enforced
# here: `should_stop` turns true past it and the sweep ends, freeing its "lm" slot.
SWEEP_EVENT, TOKEN_EVENT = pools.LM_JOBS, pools.LM
SOURCES = ["Built-in held-out prompts", "Typed (one per line)", "Uploaded .txt"]
SAMPLE_COLUMNS = ["prompt", "lambda", "temperature", "sample", "text", "reward", "heldout_reward", "kl_mean", "tokens"]
EXPLAIN = """**Trade-off explorer.** Each setting realigns the adapter at `λ = β_train/β` (β is nominal: see the DeRa
check) and samples every prompt several times. Per setting: reward under the adapter's own (training) judge and a
held-out judge, KL to the base model, and diversity across the samples of each prompt, each with a 95% interval
over prompts. **Higher λ moves further from the base model and raises the training judge's reward; whether
diversity falls depends on the adapter**: on 81 held-out prompts, upbeat-b0.1's meaning diversity changed within
noise from λ 0 to 1, while on-topic-b0.1's fell clearly (see the README). Higher temperature → more diverse."""

CONTROLS_EXPLAIN = """**Every control on one frontier.** Which knob buys the most reward per nat of KL, and at what cost in
diversity? Each control below is one formula (the first four are the same extrapolation, ℓ_ref + w·(ℓ_x − ℓ_ref);
best-of-n is a selection). Pick several: they run on the same prompts, temperatures, samples and seeds, and are drawn
on the same axes with 95% intervals clustered by prompt and the Pareto front across controls. KL is per answer (nats);
for best-of-n it is estimated from the candidates' reward ranks, beside its bound log n − (n−1)/n (hollow ▲);
`compute` in the table is what each answer cost in forward token-rows (best-of-n: n× the decoding).

""" + FORMULA_TABLE
CONTROL_NAMES = {"dera": "λ mixing (DeRa)", "weights": "weight scaling (ExPO)", "bon": "best-of-n", "cfg": "prompt guidance (CFG)"}

SWEEPS = SessionJobs("a sweep", LIMITS.sweep_timeout_s)  # one per session; Cancel finds it
SWEEP_OUTPUTS = ("table", "frontier", "diversity", "metrics", "overopt", "warning", "files", "samples", "summary")
# The table shown first (fits a phone): these columns, means with their ↑ / ↓ / ≈ mark; the full one is one click away
COMPACT = {"control": "control", "λ": "λ", "n": "n", "γ": "γ", "T": "T", "reward [95% CI] vs ref": "reward",
           "held-out [95% CI] vs ref": "held-out", "KL (nats/answer) [95% CI]": "KL/answer",
           "meaning diversity [95% CI] vs ref": "diversity"}  # Pareto: ringed in the plots, and in the full table


def compact_table(full) -> pd.DataFrame:
    """The full readable table → its key columns (a knob column only where it varies or is set), intervals dropped."""
    if full is None or len(full) == 0 or not len(full.columns):
        return pd.DataFrame(columns=["λ", "T", "reward", "held-out", "KL/answer", "diversity"])
    keep = []
    for title in COMPACT:
        if title not in full.columns:
            continue
        values = full[title].astype(str)
        if (values == "–").all() or (title in ("control", "n", "γ") and values.nunique() <= 1):
            continue  # a knob this table does not vary
        keep.append(title)
    out = full[keep].rename(columns=COMPACT).astype(str)
    out = out.apply(lambda col: col.str.replace(r"\s*\[[^\]]*\]", "", regex=True)  # no interval
                    .str.replace(r"([+-]?\d+\.\d\d)\d+", r"\1", regex=True))  # 2 decimals
    if "Pareto" in out:
        out["Pareto"] = out["Pareto"].map({"True": "yes", "False": ""}).fillna(out["Pareto"])
    return out



def _prompts(source: str, typed: str, upload: str | None) -> list[str]:
    if source == SOURCES[1]:
        return split_prompts(typed or "")
    if source == SOURCES[2]:
        if not upload:
            raise InputError("prompts file: upload a .txt file with one prompt per line")
        return read_prompt_file(upload, "prompts file")
    return default_prompts()


def _settings(pg, adapter, source, typed, upload, grid_kind, grid, temps, samples, max_new, judge, heldout, seed):
    """Every sweep knob checked once, into a SweepSettings."""
    kind = "kl_strengths" if grid_kind == "β" else "lambdas"
    return sweep_settings(pg.adapters, available_judges(), adapter=adapter, prompts=_prompts(source, typed, upload),
                          **{kind: grid or ""}, temperatures=temps or "", samples=samples, max_new_tokens=max_new,
                          seed=seed, judge=judge or None, heldout_judge=heldout or None)


def _control_settings(pg, controls, ns, gammas, policy_lam, negative, adapter, source, typed, upload, grid_kind, grid,
                      temps, samples, max_new, judge, heldout, seed) -> list:
    """One checked SweepSettings per chosen control (same prompts, temperatures, samples, seed), the total cost checked."""
    if not controls:
        raise InputError(f"controls: pick at least one of {', '.join(CONTROLS)}")
    chosen = [c for c in CONTROLS if c in {check_choice("controls", c, CONTROLS) for c in controls}]
    common = dict(adapter=adapter, prompts=_prompts(source, typed, upload), temperatures=temps or "", samples=samples,
                  max_new_tokens=max_new, seed=seed, judge=judge or None, heldout_judge=heldout or None)
    out = []
    for c in chosen:
        if c in ("dera", "weights"):
            knobs = {"kl_strengths" if grid_kind == "β" else "lambdas": grid or ""}
        else:
            knobs = {"lambdas": policy_lam or "0"} | ({"ns": ns or ""} if c == "bon" else {"gammas": gammas or "", "negative_prompt": negative})
        out.append(sweep_settings(pg.adapters, available_judges(), control=c, **common, **knobs))
    rows = sum(s.rows * (2 if s.control == "cfg" else 1) for s in out)
    check_job_cost(rows, max(map(len, out[0].prompts)), out[0].decode.max_new_tokens)
    return out


def _controls_outputs(result, out_dir: str) -> list:
    s = result.settings
    figures = controls_figures(result.rows, s["judge"], s["heldout_judge"])
    paths = write_outputs(Path(out_dir) / "controls.json", result)
    best = [result.rows[i] for i in cross_pareto(result.rows, "kl")]
    front = ", ".join(f"{r['control']} {knob_label(r)} (reward {r['reward_mean']:+.3f}, KL {r['kl_seq']:.2f})"
                      for r in sorted(best, key=lambda r: r["kl_seq"]))
    summary = (f"{len(result.rows)} settings of {len(s['sweeps'])} controls on {len(s['prompts'])} prompts × {s['samples']} "
               f"samples in {result.wall_s:.0f} s · judge **{s['judge']}**, held-out **{s['heldout_judge']}** · "
               f"Pareto front (reward vs KL, all controls): {front or 'none'}")
    plots = [figures[k] for k in ("controls_frontier", "controls_diversity", "controls_overopt")]
    return [pd.DataFrame(readable(result.rows)), *plots, [str(p) for p in paths], summary]


def _outputs(result, out_dir: str) -> list:
    s = result.settings
    figures = all_figures(result.rows, s["judge"], s["heldout_judge"])
    paths = write_outputs(Path(out_dir) / "sweep.json", result, figures)
    warning = overoptimisation_warning(result.rows, s["judge"], s["heldout_judge"])
    summary = (f"{len(result.samples)} answers ({len(s['prompts'])} prompts × {len(result.rows)} settings × {s['samples']} "
               f"samples) in {result.wall_s:.0f} s · judge **{s['judge']}**, held-out **{s['heldout_judge']}** · "
               f"β_train = {s['beta_train']:g} (β = β_train/λ is nominal) · intervals: 95% bootstrap over prompts · "
               f"ringed = Pareto-optimal (reward vs meaning diversity)")
    samples = pd.DataFrame(result.samples)[SAMPLE_COLUMNS].round(4)
    message = f"⚠️ {warning}" if warning else ("No reward hacking detected: no setting raises the proxy reward while the "
                                               "held-out judge falls beyond noise.")
    plots = [figures[k] for k in ("frontier", "diversity", "metrics", "overopt")]
    return [pd.DataFrame(readable(result.rows)), *plots, message, [str(p) for p in paths], samples, summary]


def _highlights(view: dict) -> tuple[list, list, str]:
    """(tokens coloured by KL scaled to the answer's max, tokens marked where shifted, readout)."""
    top = max((t["kl"] for t in view["tokens"]), default=0.0) or 1.0
    by_kl = [(t["text"], round(t["kl"] / top, 3)) for t in view["tokens"]]
    shifted = [(t["text"], "shifted" if t["shifted"] else None) for t in view["tokens"]]
    readout = (f"**{view['shifted_share']:.0%}** of {len(view['tokens'])} positions shifted (base model's top token ≠ "
               f"realigned top token) · mean KL {view['kl_mean']:.4f} nats/token (max {top:.3f}, the darkest colour) · "
               f"sequence KL {view['kl_sum']:.3f} · λ = {view['lambda']:g}")
    return by_kl, shifted, readout


def build_tradeoff_tab(pg) -> None:
    """`pg`: a Playground, or a LazyPlayground that is still loading (only `pg.adapters` is read here)."""
    names = sorted(pg.adapters)
    default_adapter = registry.default_adapter(names)
    # In this process, or on the Ray cluster PLAYGROUND_RAY_ADDRESS names (off by default; docs/distributed.md)
    run_sweep, run_controls = app_runner(SERVE.ray_address)
    judges = available_judges()
    gr.Markdown(EXPLAIN)
    with gr.Accordion("1 · Adapter and prompts", open=True):
        with gr.Row():
            adapter = Dropdown(names, value=default_adapter, label="Adapter", elem_classes=[ADAPTER_PICKER])
            judge = Dropdown(["", *judges], value="", label="Training judge (reward)", info="Empty = the adapter's own judge")
            heldout = Dropdown(["", *judges], value="", label="Held-out judge",
                               info="Empty = on_topic: does the answer address the prompt?")
        with gr.Row():
            source = Radio(SOURCES, value=SOURCES[0], label="Prompts", elem_id="sweep-source")
            typed = gr.Textbox("\n".join(default_prompts()), lines=4, label="Typed prompts, one per line", elem_id="sweep-typed",
                               info=f"At most {LIMITS.max_sweep_prompts}; more prompts = steadier averages, slower")
            upload = gr.File(file_types=[".txt"], type="filepath", label="Prompts file (.txt, one per line)")
    with gr.Accordion("2 · Grid", open=True):
        with gr.Row():
            grid_kind = Radio(["λ", "β"], value="λ", label="Sweep", info="λ = β_train/β; β = nominal KL strength (inf = base)")
            grid = gr.Textbox(",".join(f"{v:g}" for v in SWEEP.lambdas), label="Values (comma-separated)", elem_id="sweep-grid",
                              info=f"λ in [0, {LIMITS.max_lambda:g}]: higher = further from the base model")
            temps = gr.Textbox(",".join(f"{v:g}" for v in SWEEP.temperatures), label="Temperatures", elem_id="sweep-temps",
                               info="Higher = more diverse; 0 = greedy")
        with gr.Row():
            samples = Slider(1, LIMITS.max_samples_per_setting, value=SWEEP.samples, step=1, label="Samples per prompt per setting", elem_id="sweep-samples",
                             info="More = steadier diversity estimates, slower")
            max_new = Slider(1, LIMITS.max_new_tokens, value=SWEEP.max_new_tokens, step=1, label="Max new tokens", elem_id="sweep-max-new",
                             info="Longer = slower")
            seed = Number(0, precision=0, label="Seed", info="Sample k uses seed + k")
    with gr.Row():
        run_btn = gr.Button("Run sweep", variant="primary", elem_id="run-sweep")
        cancel_btn = gr.Button("Cancel", variant="stop", visible=False, elem_id="sweep-cancel")
    estimate = gr.Markdown(elem_id="sweep-estimate")
    summary = gr.Markdown(elem_id="sweep-summary")
    warning = gr.Markdown()
    with gr.Accordion("3 · Results", open=True):
        small = gr.Dataframe(compact_table(None), label="One row per (λ, T): means; ↑ / ↓ = above / below λ = 0 beyond noise, "
                             "≈ = within noise (paired by prompt)", interactive=False, wrap=True, elem_id="sweep-table")
        show_all = gr.Checkbox(False, label="Show every column, with 95% intervals", elem_id="sweep-all-columns")
        table = gr.Dataframe(label="Every column — 95% intervals bootstrapped over prompts", visible=False,
                             headers=[title for _, title, _ in COLUMNS], interactive=False, wrap=True, elem_id="sweep-table-full")
        with gr.Row():
            frontier, diversity = gr.Plot(show_label=False), gr.Plot(show_label=False)
        with gr.Row():
            metrics, overopt = gr.Plot(show_label=False), gr.Plot(show_label=False)
        files = gr.File(label="Downloads (JSON, CSV, samples, PNG)", file_count="multiple", interactive=False)
    with gr.Accordion("4 · Every control on one frontier: λ mixing, weight scaling, best-of-n, prompt guidance", open=True):
        gr.Markdown(CONTROLS_EXPLAIN, elem_id="controls-intro")
        with gr.Row():
            controls = gr.CheckboxGroup([(CONTROL_NAMES[c], c) for c in CONTROLS], value=["dera", "bon", "cfg"],
                                        label="Controls", elem_id="controls-pick",
                                        info="λ mixing and weight scaling use the λ grid above; best-of-n and prompt guidance wrap one policy")
            ns = gr.Textbox("1,2,4", label="best-of-n: n values", elem_id="controls-n",
                            info=f"1 … {LIMITS.max_bon_n}; n× the decoding; selection by the training judge")
            gammas = gr.Textbox("1,1.5,2,3", label="prompt guidance: γ values", elem_id="controls-gammas",
                                info=f"0 … {LIMITS.max_cfg_scale:g}; 1 = plain, 0 = ignores the prompt; 2× the rows")
        with gr.Row():
            policy_lam = gr.Textbox("0", label="λ of the policy best-of-n and guidance wrap", elem_id="controls-lambda",
                                    info="0 = the base model, 1 = the tuned model")
            negative = gr.Textbox("", label="Negative prompt (guidance's unconditional branch)", elem_id="controls-negative",
                                  info="Empty = the chat template with an empty user turn")
            compare_btn = gr.Button("Compare controls", variant="primary", elem_id="run-controls")
            c_cancel = gr.Button("Cancel", variant="stop", visible=False, elem_id="controls-cancel")
        controls_summary = gr.Markdown(elem_id="controls-summary")
        c_small = gr.Dataframe(compact_table(None), label="One row per setting of each control: means; ↑ / ↓ / ≈ against each "
                               "control's reference (λ = 0, the smallest n, γ = 1)", interactive=False, wrap=True,
                               elem_id="controls-table")
        c_show_all = gr.Checkbox(False, label="Show every column, with 95% intervals (clustered by prompt)")
        controls_table = gr.Dataframe(label="Every column — 95% intervals clustered by prompt", visible=False,
                                      headers=[title for _, title, _ in COLUMNS], interactive=False, wrap=True)
        with gr.Row():
            c_frontier, c_diversity = gr.Plot(show_label=False, elem_id="controls-frontier"), gr.Plot(show_label=False)
        c_overopt = gr.Plot(show_label=False)
        c_files = gr.File(label="Downloads (JSON, CSV, samples, PNG)", file_count="multiple", interactive=False)
    with gr.Accordion("Every sample (full answers)", open=False):
        samples_df = gr.Dataframe(headers=list(SAMPLE_COLUMNS), interactive=False, wrap=True, column_widths=[
            "18%", "6%", "6%", "5%", "45%", "5%", "5%", "5%", "5%"])
    with gr.Accordion("Token-level view: where does the realigned model depart from the base?", open=True):
        with gr.Row():
            tv_prompt = gr.Textbox(default_prompts()[0], label="Prompt", scale=3)
            tv_lam = Number(2.0, label="λ", minimum=LIMITS.min_lambda, maximum=LIMITS.max_lambda)
            tv_temp = Number(0.0, label="Temperature", info="0 = greedy", minimum=0, maximum=LIMITS.max_temperature)
            tv_seed = Number(0, precision=0, label="Seed")
            tv_btn = gr.Button("Show tokens")
        tv_kl = gr.HighlightedText(label="Each token coloured by KL(π_λ ‖ π_base) at that position", show_legend=False)
        tv_shift = gr.HighlightedText(label="Shifted positions", color_map={"shifted": "orange"}, show_legend=True)
        tv_readout = gr.Markdown()

    async def sweep(adapter, source, typed, upload, grid_kind, grid, temps, samples, max_new, judge, heldout, seed,
                    request: gr.Request, progress=gr.Progress()):
        def work(control):
            settings = _settings(pg, adapter, source, typed, upload, grid_kind, grid, temps, samples, max_new, judge, heldout, seed)
            try:
                result = run_sweep(pg, settings, progress=lambda f, m: progress(f, desc=m), should_stop=control)
            except SweepCancelled as err:
                why = "over the time limit" if control.late else "cancelled"
                raise InputError(f"{err} ({why}): nothing was computed; the results shown are from before") from None
            return _outputs(result, job_folder("tradeoff"))  # a fresh directory per request

        async for update in SWEEPS.run(request, work, len(SWEEP_OUTPUTS)):
            yield update

    async def compare(controls, ns, gammas, policy_lam, negative, adapter, source, typed, upload, grid_kind, grid, temps,
                      samples, max_new, judge, heldout, seed, request: gr.Request, progress=gr.Progress()):
        def work(control):
            chosen = _control_settings(pg, controls, ns, gammas, policy_lam, negative, adapter, source, typed, upload,
                                       grid_kind, grid, temps, samples, max_new, judge, heldout, seed)
            try:
                result = run_controls(pg, chosen, progress=lambda f, m: progress(f, desc=m), should_stop=control)
            except SweepCancelled as err:
                why = "over the time limit" if control.late else "cancelled"
                raise InputError(f"{err} ({why}): nothing was computed; the results shown are from before") from None
            return _controls_outputs(result, job_folder("tradeoff"))

        async for update in SWEEPS.run(request, work, 6):
            yield update

    def cancel(request: gr.Request):
        SWEEPS.cancel(request)

    async def tokens(adapter, prompt, lam, temperature, seed, max_new):
        def work(should_stop):
            checked = check_prompt(prompt)
            d = decode_settings(lam=lam, beta_train=pg.beta_train(adapter), temperature=temperature, top_p=1.0,
                                max_new_tokens=max_new, seed=seed)
            view = token_view(pg, checked, adapter, d, should_stop=should_stop)
            return _highlights(view)

        async for update in run_job(work, 3, JobControl(LIMITS.request_timeout_s)):  # the deadline is in the control
            yield update

    def estimate_text(*values):
        """Before it runs: how many answers and how long, from the measured batched speed (or why it is refused)."""
        try:
            s = _settings(pg, *values)
        except InputError as err:
            return f"⚠️ {err}"
        seconds, _ = job_estimate(s.rows, max(map(len, s.prompts)), s.decode.max_new_tokens)
        return (f"**Estimate:** {s.rows} answers × up to {s.decode.max_new_tokens} tokens ≈ {max(seconds, 1):.0f} s on a "
                f"2-core CPU (limit {LIMITS.max_job_seconds / 60:.0f} min)")

    inputs = [adapter, source, typed, upload, grid_kind, grid, temps, samples, max_new, judge, heldout, seed]
    estimate.value = estimate_text(*[box.value for box in inputs])  # before anything is touched
    for box in inputs:
        box.change(estimate_text, inputs, estimate, api_visibility="private", show_progress="hidden",
                   **pools.ESTIMATES)  # in order: the last wins
    outputs = [table, frontier, diversity, metrics, overopt, warning, files, samples_df, summary]
    assert len(outputs) == len(SWEEP_OUTPUTS)
    runs = [run_btn, compare_btn]
    run_event = long_job(run_btn.click, runs, cancel_btn, summary, sweep, inputs, outputs, api_name="tradeoff_sweep",
                         show_progress_on=[summary], **SWEEP_EVENT)
    compare_event = long_job(compare_btn.click, runs, c_cancel, controls_summary, compare,
                             [controls, ns, gammas, policy_lam, negative, *inputs],
                             [controls_table, c_frontier, c_diversity, c_overopt, c_files, controls_summary],
                             api_name="tradeoff_controls", show_progress_on=[controls_summary], **SWEEP_EVENT)
    quiet = {"queue": False, "api_visibility": "private", "show_progress": "hidden"}
    run_event.then(compact_table, table, small, **quiet)
    compare_event.then(compact_table, controls_table, c_small, **quiet)
    for box, full, short in ((show_all, table, small), (c_show_all, controls_table, c_small)):
        box.change(lambda on: (gr.Dataframe(visible=on), gr.Dataframe(visible=not on)), box, [full, short], **quiet)
    cancel_btn.click(cancel, None, None, cancels=[run_event, compare_event], api_name="tradeoff_cancel")
    c_cancel.click(cancel, None, None, cancels=[run_event, compare_event], api_visibility="private")
    show_cancelled(cancel_btn, runs, summary)
    show_cancelled(c_cancel, runs, controls_summary)
    tv_btn.click(tokens, [adapter, tv_prompt, tv_lam, tv_temp, tv_seed, max_new], [tv_kl, tv_shift, tv_readout],
                 api_name="token_view", **TOKEN_EVENT)
