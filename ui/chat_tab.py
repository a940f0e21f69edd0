"""The "Side by side" tab: one prompt, base / realigned / tuned answers streaming together, one row per turn,
with "Prefer this one" under the latest turn's answers; its second mode is the blind duel (ui/duel_panel.py).

Only components and event wiring live here; every decision is made in `playground/`. A send is three events:
a quick check whose only output is a State (a bad input gives a toast, never an overlay on the conversation),
a quick step that shows the question and turns Send into Stop, then the streaming step in the "lm" pool.
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import gradio as gr

from playground.chat.export import conversation_json, conversation_markdown, conversation_record
from playground.chat.actions import TurnAction, kept
from playground.chat.conversation import CHAT_MAX_NEW_TOKENS, Conversation, StopFlags, turn_with
from playground.chat.knobs import DEFAULT_LAMBDA, LAMBDA_STEP, default_kl_strength
from playground.chat.knobs import knob_note as lambda_note
from playground.chat.readouts import beta_label
from playground.settings.request import CHAT, COLUMNS, DEFAULT_DECODE, LIMITS
from playground.settings.validation import InputError, decode_settings
from playground.chat.shared_answers import SharedAnswers
from ui import pools
from ui.chat_events import StreamEvents, verify_replay, wire_prefer
from ui.components import ADAPTER_PICKER, Dropdown, Number, Radio, Slider, TranscriptEvent, plain
from ui.duel_panel import build_duel_panel
from ui.first_screen import JARGON, adapter_choices, limits_table
from ui.first_screen import default_adapter as first_adapter
from ui.transcript import JS_ON_LOAD, legend, render

LM_EVENT, QUICK = pools.LM, pools.quick("chat-ui")
STOPS = StopFlags()
EXPLAIN = """**Base vs preference-tuned, one knob apart.** The tuned model is a LoRA adapter trained with DPO at KL strength
β_train. Decoding-time realignment mixes the two models' next-token logits, `ℓ = ℓ_base + λ·(ℓ_tuned − ℓ_base)`
with `λ = β_train / β`, which approximates the model you would get by retraining at KL strength β
(Liu et al., ICML 2024). **λ is the knob: 0 = the base model, 1 = the tuned model, above 1 = past it**; the nominal
β = β_train/λ beside it reads the other way (higher β → closer to the base model).
β is *nominal*: the shipped adapters (one DPO epoch, LoRA) did not reach the KL-regularised optimum the formula
assumes, so the λ that best matches an adapter trained at another β can differ (see the README's DeRa check)."""
ADAPTER_LABEL = "Adapter: what the tuned model was trained to prefer"
BUSY_HINT = "Still answering: press **Stop** or wait. Your text stays in the box."


def is_ready(pg) -> bool:
    return bool(getattr(pg, "ready", True))


def loading_banner(elapsed: float) -> str:
    pct = min(95, int(100 * elapsed / 30))
    return (f'<div class="loading"><b>Loading the model</b> (first start converts it, ≈ 30 s) — {elapsed:.0f} s '
            f'<progress max="100" value="{pct}"></progress><br><small>You can type and send already: the answers '
            'start as soon as it is ready.</small></div>')


def build_chat_tab(pg, service=None, shared_store=None) -> None:
    """`pg`: a Playground, or a LazyPlayground that is still loading (only `pg.adapters` is read here).
    `service`: the DuelService that stores votes (default: one on `pg`, store configured by the environment).
    `shared_store`: where share links keep their answers (default: SharedAnswers in the data directory)."""
    if service is None:
        from playground.feedback.config import duel_max_new_tokens
        from playground.feedback.duel import DuelService

        service = DuelService(pg, max_new_tokens=duel_max_new_tokens())
    names = sorted(pg.adapters)
    default_adapter = first_adapter(names)  # a helpful one: the first example shows what it does
    beta0 = pg.adapters[default_adapter].beta_train if default_adapter else 0.1
    judge0 = pg.adapters[default_adapter].judge if default_adapter else ""
    started = time.monotonic()
    conv_state = gr.State(Conversation())
    pending = gr.State(None)
    editing = gr.State(None)  # the turn whose question is being edited (Send replaces it and the turns after it)
    shared_state = gr.State(None)  # the answers a share link showed (Replay checks its tokens against them)
    view = Radio([("Three columns", "columns"), ("Blind duel", "duel")], value="columns", label="View",
                 show_label=False, elem_id="sbs-mode")
    with gr.Column(elem_id="chat-tab") as chat_view:
        with gr.Accordion("What does this mean?", open=False, elem_id="jargon"):
            gr.Markdown(JARGON + "\n\n" + EXPLAIN)
        loading = gr.HTML(loading_banner(0), visible=not is_ready(pg), elem_id="loading")
        with gr.Row(visible=False, elem_id="shared-row") as shared_row:
            shared_md = gr.Markdown()
            replay = gr.Button("▶ Replay the shared answers", variant="primary", size="sm", elem_id="replay", scale=0)
        with gr.Row(elem_id="knobs-1"):
            adapter = Dropdown(adapter_choices(pg.adapters), value=default_adapter, label=ADAPTER_LABEL,
                               elem_classes=[ADAPTER_PICKER], info=pg.adapters[default_adapter].description if default_adapter else "")
            mode = Radio([("Mix the two models' word choices (exact)", "logits"),
                          ("Scale the adapter's weights by λ (cheaper, approximate)", "weights")],
                         value="logits", label="How λ is applied")
        with gr.Row(elem_id="knobs-2"):
            with gr.Column(min_width=240):  # λ, the main knob, with the nominal KL strength β it means beside it
                lam = Slider(LIMITS.min_lambda, LIMITS.max_lambda, value=DEFAULT_LAMBDA, step=LAMBDA_STEP, elem_id="lambda",
                             label="λ: how far towards the tuned model",
                             info="0 = base model · 1 = tuned as trained · above 1 = extrapolated past it")
                lam_label = gr.Markdown(beta_label(DEFAULT_LAMBDA, beta0), elem_id="lam-label")
            temperature = Slider(0.0, LIMITS.max_temperature, value=DEFAULT_DECODE.temperature, step=0.05, label="Temperature",
                                 info="Higher = more random and diverse; 0 = greedy", elem_id="temperature")
        # The /chat API keeps the KL strength β as its knob (λ = β_train/β): a hidden input, within the validation
        # limits (the adapter's own λ range is checked with the turn).
        kl = Slider(LIMITS.min_kl_strength, LIMITS.max_kl_strength, value=default_kl_strength(beta0),
                    label="KL strength β", visible=False, elem_id="kl-strength-api")
        with gr.Accordion("More settings", open=False, elem_id="more-settings"):
            with gr.Row():
                top_p = Slider(0.05, 1.0, value=DEFAULT_DECODE.top_p, step=0.05, label="Top-p", elem_id="top-p",
                               info="Lower = only the most likely tokens; 1 = no truncation")
                max_new = Slider(1, LIMITS.max_new_tokens, value=CHAT_MAX_NEW_TOKENS, step=1, label="Max new tokens",
                                 info="Longer answers take longer; a cut answer can be continued", elem_id="max-new")
                seed = Number(DEFAULT_DECODE.seed, precision=0, label="Seed", info="Same seed + settings = same text",
                              elem_id="seed")
        transcript = gr.HTML(render(Conversation()), js_on_load=JS_ON_LOAD, elem_id="transcript")
        with gr.Row(visible=False, elem_id="edit-row", equal_height=True) as edit_row:
            edit_note = gr.Markdown(elem_id="edit-note")
            cancel_edit = gr.Button("Cancel edit", size="sm", scale=0, min_width=110, elem_id="cancel-edit")
        with gr.Row(elem_id="input-row", equal_height=True):
            prompt = gr.Textbox(placeholder="Type a message and press Enter", show_label=False, scale=5, elem_id="prompt",
                                max_lines=6)
            send = gr.Button("Send", variant="primary", scale=1, min_width=90, elem_id="send")
            stop = gr.Button("■ Stop", variant="stop", scale=1, min_width=90, visible=False, elem_id="stop")
        gr.Markdown(BUSY_HINT, elem_id="busy-hint")
        with gr.Row(elem_id="actions"):
            regen = gr.Button("Regenerate (next seed, this turn only)", size="sm", elem_id="regen")
            clear = gr.Button("Clear", size="sm", elem_id="clear")
            copy = gr.Button("Copy link", size="sm", elem_id="copy-link")
            export = gr.Button("Export (Markdown + JSON)", size="sm", elem_id="export")
            highlight = gr.Checkbox(True, label="Highlight where an answer departs from the base model", elem_id="highlight")
        share_box = gr.Textbox(label="Share link (copied): opens these settings and can replay the same answers",
                               visible=False, buttons=["copy"], elem_id="share-link")
        export_files = gr.File(label="The conversation with every setting behind each answer", file_count="multiple",
                               visible=False, interactive=False, elem_id="export-files")
        with gr.Row(elem_id="examples"):
            for ex in CHAT.examples:
                gr.Button(ex, size="sm", elem_classes=["example"]).click(None, None, prompt, js=f"() => {json.dumps(ex)}")
        info = gr.Markdown(legend(judge0), elem_id="legend")
        with gr.Accordion("Limits", open=False, elem_id="limits"):
            gr.Markdown(limits_table(LIMITS))
        api_outputs = [gr.JSON(visible=False) for _ in COLUMNS]
        api_trigger = gr.Button(visible=False)
        prefer_column, prefer_trigger, prefer_result = Radio(list(COLUMNS), value="tuned", visible=False, label="column"), \
            gr.Button(visible=False), gr.JSON(visible=False)
    with gr.Column(visible=False, elem_id="duel-panel") as duel_view:
        build_duel_panel(pg, service)
    view.change(lambda v: (gr.Column(visible=v == "columns"), gr.Column(visible=v == "duel")), view,
                [chat_view, duel_view], **QUICK)

    knob_inputs = [adapter, lam, mode, temperature, top_p, max_new, seed]  # the tab's; /chat takes β in λ's place
    api_knob_inputs = [adapter, kl, mode, temperature, top_p, max_new, seed]
    events = StreamEvents(pg, STOPS, conv_state, pending, transcript, prompt, send, stop, regen, LM_EVENT, QUICK)

    def ask(kind: str):
        """Send (an edited question replaces its turn and the ones after it) and Replay: the quick check of a new
        question. The sliders' values become one checked DecodeSettings here, at the event's entry; it rides in
        the TurnAction (pending State), then in the conversation's row and each column's engine Request."""
        def check(message, conv, upto, adapter, lam, mode, temperature, top_p, max_new, seed, request: gr.Request):
            if conv.rows and conv.rows[-1].streaming:
                raise gr.Error("still answering: press Stop or wait for the answers")
            upto = upto if isinstance(upto, int) and 0 <= upto < conv.turns else None
            action = TurnAction(kind, upto=upto)  # λ was set (kl_strength None; a share link carries λ)
            try:
                d = decode_settings(lam=lam, mode=mode, temperature=temperature, top_p=top_p, max_new_tokens=max_new,
                                    seed=seed)
                action = replace(action, turn=turn_with(pg.adapters, kept(conv, action), message, adapter, d))
            except InputError as err:
                raise gr.Error(str(err), print_exception=False) from None
            STOPS.clear(request.session_hash)
            return action
        return check

    def regenerate(conv, request: gr.Request):
        if conv.rows and conv.rows[-1].streaming:
            raise gr.Error("still answering: press Stop or wait for the answers")
        if not conv.rows:
            raise gr.Error("nothing to regenerate yet; send a message first", print_exception=False)
        STOPS.clear(request.session_hash)
        return TurnAction("regenerate")

    no_edit = (None, gr.Row(visible=False))
    asking = [prompt, conv_state, editing, *knob_inputs]
    for trigger, kind in ((send.click, "send"), (prompt.submit, "send"), (replay.click, "replay"), (regen.click, "regenerate")):
        asks = kind != "regenerate"  # a new question (its settings checked here) or the last one again
        checked = trigger(ask(kind) if asks else regenerate, asking if asks else [conv_state], pending, **QUICK)
        done = events.chain(checked, is_ready)
        if kind == "replay":  # the link showed its answers: say whether the replay decoded the same tokens
            done.then(verify_replay, [conv_state, shared_state], None, **QUICK)
        if asks:  # the edited question is sent: editing ends
            checked.success(lambda: no_edit, None, [editing, edit_row], **QUICK)

    def on_transcript_click(conv, evt: TranscriptEvent, request: gr.Request):
        action = evt.action
        if action not in ("continue", "regen") or not conv.rows or conv.rows[-1].streaming:
            raise gr.Error(f"nothing to {'regenerate' if action == 'regen' else 'continue'}", print_exception=False)
        STOPS.clear(request.session_hash)
        if action == "regen":
            column = evt.column
            if column not in COLUMNS:
                raise gr.Error(f"column: must be one of {', '.join(COLUMNS)}; got {plain(repr(column))}",
                               print_exception=False)
            return TurnAction("regenerate_column", column=column)
        return TurnAction("continue")

    def on_edit(conv, evt: TranscriptEvent):
        turn = evt.turn
        if conv.rows and conv.rows[-1].streaming:
            raise gr.Error("still answering: press Stop or wait, then edit", print_exception=False)
        if not isinstance(turn, int) or isinstance(turn, bool) or not 0 <= turn < conv.turns:
            raise gr.Error(f"turn: must be 0 … {conv.turns - 1}; got {plain(repr(turn))}", print_exception=False)
        later = conv.turns - turn - 1
        note = (f"**Editing question {turn + 1}.** Send replaces it and its answers"
                + (f", and the {later} turn{'s' if later > 1 else ''} after it." if later else "."))
        return conv.rows[turn].turn.prompt, turn, gr.Row(visible=True), note

    transcript.edit(on_edit, conv_state, [prompt, editing, edit_row, edit_note], **QUICK)
    cancel_edit.click(lambda: no_edit, None, [editing, edit_row], **QUICK)

    events.chain(transcript.click(on_transcript_click, conv_state, pending, **QUICK), is_ready)
    def on_stop(request: gr.Request):
        STOPS.request(request.session_hash)

    stop.click(on_stop, None, None, **{**QUICK, "concurrency_id": "chat-stop"})

    def clear_all(request: gr.Request):
        STOPS.request(request.session_hash)
        conv = Conversation()
        return [conv.display(c) for c in COLUMNS] + [render(conv), conv, *no_edit]

    clear.click(clear_all, None, [*api_outputs, transcript, conv_state, editing, edit_row], api_name="clear",
                show_progress="hidden")

    def export_conversation(conv):
        """/export: the conversation as Markdown and JSON files, with every setting behind each answer."""
        if not conv.rows:
            raise gr.Error("conversation: nothing to export yet; send a message first", print_exception=False)
        if conv.rows[-1].streaming:
            raise gr.Error("conversation: wait for the answers to finish, then export", print_exception=False)
        record = conversation_record(conv, pg.adapters, base_model=str(getattr(getattr(pg, "base", None), "source", "")))
        folder = Path(tempfile.mkdtemp(prefix="playground-export-"))
        (folder / "conversation.md").write_text(conversation_markdown(record), encoding="utf-8")
        (folder / "conversation.json").write_text(conversation_json(record), encoding="utf-8")
        return [str(folder / "conversation.md"), str(folder / "conversation.json")]

    (export.click(export_conversation, conv_state, export_files, api_name="export", show_progress="hidden",
                  concurrency_id="chat-export", concurrency_limit=2)
        .success(lambda: gr.File(visible=True), None, export_files, **QUICK))
    api_trigger.click(events.api_chat, [prompt, conv_state, *api_knob_inputs], [*api_outputs, conv_state], api_name="chat",
                      **LM_EVENT)
    if shared_store is None:
        shared_store = SharedAnswers.in_data_dir()
    events.wire_share(copy, share_box, shared_row, shared_md, loading, [prompt, *knob_inputs], is_ready, shared_store,
                      shared_state)
    wire_prefer(service, transcript, conv_state, prefer_column, prefer_trigger, prefer_result)
    highlight.change(None, highlight, None, js="(v) => { document.body.classList.toggle('no-hl', !v); }")

    def on_adapter(name, lam_value, temp, p, n):  # λ stays where it is: its meaning does not depend on the adapter
        if name not in pg.adapters:
            raise gr.Error(f"unknown adapter {name!r}; available: {', '.join(sorted(pg.adapters))}")
        return (Dropdown(info=pg.adapters[name].description), knob_note(name, lam_value, temp, p, n),
                legend(pg.adapters[name].judge))

    def knob_note(name, lam_value, temp, p, n):
        return lambda_note(pg.adapters[name].beta_train if name in pg.adapters else beta0, lam_value, temp, p, n)

    note_inputs = [adapter, lam, temperature, top_p, max_new]
    adapter.input(on_adapter, note_inputs, [adapter, lam_label, info], **QUICK)
    for knob in (lam, temperature, top_p, max_new):
        knob.change(knob_note, note_inputs, lam_label, **QUICK)

    if not is_ready(pg):
        timer = gr.Timer(1.0)

        def poll():
            if is_ready(pg):
                return gr.HTML(visible=False), gr.Timer(active=False)
            return gr.HTML(loading_banner(time.monotonic() - started), visible=True), gr.Timer()

        timer.tick(poll, None, [loading, timer], **QUICK)
