"""The Feedback tab's "Train an adapter from these votes" panel, and the refresh of every adapter picker.

Only components and event wiring; the job (one per process, in its own process group, cancellable) is
`playground/feedback/training.py`. The button works only where the deployment sets PLAYGROUND_ALLOW_TRAINING=1
(`TrainingSettings.from_env`); elsewhere it is disabled with the reason shown, and the API route refuses too.
The event stays open while the job runs (progress bar); Cancel, or closing the tab, stops the job.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr

from playground.feedback.training import TrainingError, VoteTraining
from playground.settings.votes import TrainingSettings
from ui import pools
from ui.components import Number, Slider, Textbox, adapter_pickers
from ui.first_screen import adapter_choices
from ui.jobs import JobControl, run_job, session_key

QUICK = pools.quick("adapter-pickers")
EXPLAIN = """**Train an adapter from these votes.** DPO on every decisive vote (ties and both-bad are dropped): the
preferred answer is *chosen*, the other *rejected*, and a LoRA adapter learns the difference at your β. It runs in the
background on this server's CPU (≈ 11–16 s per step for the shipped model), one job at a time; **Cancel** or closing
the tab stops it and keeps nothing. When it finishes, the adapter appears in every adapter picker; its card records
the votes used, β, steps and how often each judge agrees with those votes."""
OFF = """🔒 **Training is off on this server.** The operator turns it on with `PLAYGROUND_ALLOW_TRAINING=1` (off by
default, so a visitor of a public Space cannot start a CPU-heavy job). Meanwhile, train with
`python models/train_adapter.py all --judge votes --name my-votes --beta 0.1` (README, *Human feedback*)."""


@dataclass
class TrainPanel:
    """What `wire_adapter_pickers` hooks into: the train event, and callbacks run in the handler when a job is done
    (also for API callers, whose chained events do not run)."""

    event: object
    after_training: list[Callable[[], None]] = field(default_factory=list)


def build_train_panel(pg, service, settings: TrainingSettings | None = None) -> TrainPanel:
    """The panel (inside the Feedback tab). `service`: the DuelService whose store holds the votes."""
    settings = settings or TrainingSettings.from_env()
    training = VoteTraining(pg, lambda: service.store().votes(), settings)
    on = settings.allowed
    title = "Train an adapter from these votes" + ("" if on else " (off on this server)")
    with gr.Accordion(title, open=True, elem_id="train-panel"):
        gr.Markdown(EXPLAIN)
        gr.Markdown(OFF, visible=not on, elem_id="train-off")
        with gr.Row():
            name = Textbox(label="Name", placeholder="my-votes-b0.1", max_length=settings.max_name_chars, elem_id="train-name",
                           info="lowercase letters, digits, '.', '-', '_'; not an existing adapter's")
            beta = Number(settings.default_beta, label="β", minimum=settings.min_beta, maximum=settings.max_beta,
                          info="DPO's KL strength: higher = closer to the base model", elem_id="train-beta")
            steps = Slider(1, settings.max_steps, value=settings.default_steps, step=1, label="DPO steps",
                           info="more = further from the base model, slower", elem_id="train-steps")
        with gr.Row():
            go = gr.Button("Train an adapter from these votes", variant="primary", interactive=on, elem_id="train-go")
            cancel_btn = gr.Button("Cancel", variant="stop", interactive=on, scale=0, min_width=120, elem_id="train-cancel")
        result = gr.Markdown("No training job yet: the progress bar shows here.", min_height=60, elem_id="train-result")
        card = gr.JSON(visible=False, label="card")

    async def train(name_value, beta_value, steps_value, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        control = JobControl()

        def work(should_stop):
            training.start(name_value, beta_value, steps_value, owner=session_key(request))  # TrainingError: a toast
            while True:
                st = training.wait(settings.poll_s)
                if st.running:
                    progress(st.fraction, desc=st.message)
                    if should_stop():  # Cancel, or the tab was closed
                        training.cancel()
                    continue
                if st.state == "failed":
                    raise TrainingError(st.message)
                if st.state == "cancelled":
                    return [f"**Stopped**: {st.message}", None]
                for callback in panel.after_training:
                    callback()
                return [f"**Done.** {st.message} It is in the adapter pickers now.", st.card]

        async for update in run_job(work, 2, control):
            yield update

    def cancel(request: gr.Request):
        try:
            stopped = training.cancel(owner=session_key(request))
        except TrainingError as err:
            raise gr.Error(str(err)) from None
        return "**Stopped**: cancelled" if stopped else "no training job of yours is running"

    # Its own pool (a job holds a slot for minutes, not one of the chat's); see TrainingSettings.event_concurrency.
    event = go.click(train, [name, beta, steps], [result, card], api_name="train_votes", concurrency_id="train",
                     concurrency_limit=settings.event_concurrency, time_limit=settings.timeout_s + 60)
    cancel_btn.click(cancel, None, result, cancels=[event], api_name="train_cancel", queue=False)
    panel = TrainPanel(event)
    return panel


def wire_adapter_pickers(demo: gr.Blocks, pg, panel: TrainPanel | None = None) -> None:
    """Every adapter picker (ui.components.ADAPTER_PICKER) offers the current adapters: an adapter trained while
    serving shows up without a restart. The server-side pickers (what a session without its own copy, e.g. an API
    client, is checked against) change when a job is done; a browser's pickers on page load and after its own job.
    Call inside `demo`."""
    pickers = adapter_pickers(demo)
    if not pickers:
        return

    def sync_server_side() -> list[tuple[str, str]]:
        choices = adapter_choices(pg.adapters)  # (label, name): helpful / reward-hacking example where the card says
        for p in pickers:
            p.choices = list(choices)
            p.constructor_args["choices"] = list(choices)  # what Gradio rebuilds a session's copy from on its next update
        return choices

    def refresh():
        choices = sync_server_side()
        updates = [gr.Dropdown(choices=choices) for _ in pickers]
        return updates if len(updates) > 1 else updates[0]

    demo.load(refresh, None, pickers, **QUICK)
    if panel is not None:
        panel.after_training.append(sync_server_side)
        panel.event.success(refresh, None, pickers, **QUICK)
