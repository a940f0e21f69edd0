"""The "DeRa check" tab: which λ of adapter A reproduces adapter B? Nominal λ = β_A/β_B vs measured.

Call `build_calibrate_tab(pg)` inside `gr.Tab("DeRa check")`. Only components and event wiring live here;
the run and the figure come from `playground.tradeoff.calibrate`.
"""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from playground import registry
from playground.settings.request import EVAL_PROMPTS, FALLBACK_PROMPTS, LIMITS
from playground.settings.server import job_estimate
from playground.tradeoff.calibrate import (CALIBRATION, CalibrationCancelled, calibration_figure, calibration_settings,
                                           run_calibration, verdict)
from playground.tradeoff.outputs import read_prompt_file
from playground.settings.validation import InputError
from playground.runtime.job_folders import job_folder
from ui import pools
from ui.components import ADAPTER_PICKER, Dropdown, Number, Slider
from ui.jobs import SessionJobs, long_job, show_cancelled

# A long LM job: its own pool (chat keeps its slots); Gradio applies time_limit to streaming events only, so
# the deadline is also enforced through should_stop.
CALIBRATE_EVENT = pools.LM_JOBS
EXPLAIN = """**Is λ = β_train/β more than nominal?** Two adapters trained on the same pairs *to the KL-regularised
optimum* satisfy π_B ≈ π_λ of A with **λ = β_A/β_B**. This samples answers from adapter B, teacher-forces them under
the λ-mix of adapter A (ℓ_base + λ(ℓ_A − ℓ_base)) and finds the λ with the smallest mean per-token KL(π_B ‖ π_λ);
the 95% interval is a bootstrap over the held-out prompts. **Nominal λ outside the interval: the adapters did not
reach the optimum, and the β shown beside λ elsewhere in the app is nominal.**"""

CHECKS = SessionJobs("a DeRa check", LIMITS.sweep_timeout_s)  # one per session; Cancel finds it



def heldout_prompts(n: int) -> list[str]:
    """The first n prompts of models/prompts/eval.txt (held out from training), else the built-in examples."""
    prompts = read_prompt_file(EVAL_PROMPTS, "eval prompts") if EVAL_PROMPTS.is_file() else list(FALLBACK_PROMPTS)
    return prompts[:int(n)]


def _defaults(names: list[str]) -> tuple[str | None, str | None]:
    a = registry.default_adapter(names)
    b = "upbeat-b0.5" if "upbeat-b0.5" in names else next((n for n in names if n != a), None)
    return a, b


def build_calibrate_tab(pg) -> None:
    """`pg`: a Playground, or a LazyPlayground that is still loading (only `pg.adapters` is read here)."""
    names = sorted(pg.adapters)
    default_a, default_b = _defaults(names)
    gr.Markdown(EXPLAIN)
    with gr.Row():
        adapter = Dropdown(names, value=default_a, label="Adapter A (its λ-mix is fitted)", elem_classes=[ADAPTER_PICKER])
        against = Dropdown(names, value=default_b, label="Adapter B (same pairs, another β)", elem_classes=[ADAPTER_PICKER])
    with gr.Row():
        prompts = Slider(2, LIMITS.max_sweep_prompts, value=CALIBRATION.prompts, step=1, label="Held-out prompts",
                            info="From models/prompts/eval.txt; more = tighter interval, slower")
        samples = Slider(1, 8, value=2, step=1, label="Answers from B per prompt", info="More = steadier, slower")
        max_new = Slider(4, LIMITS.max_new_tokens, value=32, step=1, label="Max new tokens", info="Longer = slower")
        seed = Number(0, precision=0, label="Seed")
    with gr.Row():
        run_btn = gr.Button("Run DeRa check", variant="primary")
        cancel_btn = gr.Button("Cancel", variant="stop", visible=False, elem_id="dera-cancel")
    estimate = gr.Markdown(elem_id="dera-estimate")
    sentence = gr.Markdown(elem_id="calibrate-verdict")
    plot = gr.Plot(label="KL(π_B ‖ π_λ) vs λ")
    files = gr.File(label="Downloads (JSON, PNG)", file_count="multiple", interactive=False)

    def settings(a, b, n, k, t, s):
        return calibration_settings(pg.adapters, adapter=a, against=b, prompts=heldout_prompts(n), samples=k,
                                    max_new_tokens=t, seed=s)

    async def run(a, b, n, k, t, s, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        def work(control):
            checked = settings(a, b, n, k, t, s)
            try:
                result = run_calibration(pg, checked, progress=lambda f, m: progress(f, desc=m), should_stop=control)
            except CalibrationCancelled as err:
                raise InputError(f"{err} ({'over the time limit' if control.late else 'cancelled'}); no results") from None
            return list(present(result))

        async for update in CHECKS.run(request, work, 3):
            yield update

    def present(result) -> tuple:
        out = Path(job_folder("calibrate")) / f"calibration_{result.adapter}_vs_{result.against}.json"
        out.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        fig = calibration_figure(result)
        fig.savefig(out.with_suffix(".png"))
        k_at = result.kl_at
        text = (f"**{verdict(result)}.**  \nKL(π_B ‖ π_λ) per token: λ = 0 (base) {k_at['base'][0]:.4f}, nominal "
                f"{k_at['nominal'][0]:.4f}, best {k_at['best'][0]:.4f} nats; the mix reproduces {result.explained:.0%} of "
                f"B's KL to the base. {result.n_prompts} prompts × {result.samples} answers, {result.tokens} tokens, "
                f"{result.wall_s:.0f} s.")
        return text, fig, [str(out), str(out.with_suffix(".png"))]

    def cancel(request: gr.Request):
        CHECKS.cancel(request)

    def estimate_text(a, b, n, k, t, s):
        try:
            checked = settings(a, b, n, k, t, s)
        except InputError as err:
            return f"⚠️ {err}"
        rows = len(checked.prompts) * checked.samples
        seconds, _ = job_estimate(rows * CALIBRATION.passes, max(map(len, checked.prompts)), checked.max_new_tokens)
        return (f"**Estimate:** {rows} answers from {checked.against}, each teacher-forced under the base, A and B ≈ "
                f"{max(seconds, 1):.0f} s on a 2-core CPU; nominal λ = β_A/β_B = {checked.nominal_lambda:.3g}")

    inputs = [adapter, against, prompts, samples, max_new, seed]
    estimate.value = estimate_text(*[box.value for box in inputs])  # before anything is touched
    for box in inputs:
        box.change(estimate_text, inputs, estimate, api_visibility="private", show_progress="hidden",
                   **pools.ESTIMATES)  # in order: the last wins
    run_event = long_job(run_btn.click, [run_btn], cancel_btn, sentence, run, inputs, [sentence, plot, files],
                         api_name="dera_check", **CALIBRATE_EVENT)  # Cancel only while it runs (ui/jobs.py)
    cancel_btn.click(cancel, None, None, cancels=[run_event], api_name="dera_check_cancel", queue=False)
    show_cancelled(cancel_btn, [run_btn], sentence)
