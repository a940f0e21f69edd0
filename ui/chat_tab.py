"""The "Side by side" tab: one prompt, base / realigned / tuned answers streaming together, one row per turn,
with "Prefer this one" under the latest turn's answers; its second mode is the blind duel (ui/duel_panel.py).

Only components and event wiring live here; every decision is made in `playground/`. A send is three events:
a quick check whose only output is a State (a bad input gives a toast, never an overlay on the conversation),
a quick step that shows the question and turns Send into Stop, then the streaming step in the "lm" pool.
"""
from __future__ import annotations

import json
import time

import gradio as gr

from playground.conversation import CHAT_MAX_NEW_TOKENS, Conversation, StopFlags, check_turn
from playground.readouts import beta_label, settings_warning
from playground.settings import CHAT, COLUMNS, DEFAULT_DECODE, LIMITS, SERVE
from playground.validation import InputError
from ui.chat_events import StreamEvents, ui_knobs, wire_prefer
from ui.components import ADAPTER_PICKER, Dropdown, Number, Radio, Slider
from ui.duel_panel import build_duel_panel
from ui.transcript import JS_ON_LOAD, legend, render

DEFAULT_BETA_FACTOR = CHAT.beta_factor
DEFAULT_LAMBDA = 1 / CHAT.beta_factor  # halfway between the base and the tuned model
LAMBDA_STEP = 0.01
LM_EVENT = {"concurrency_id": "lm", "concurrency_limit": SERVE.lm_concurrency, "time_limit": LIMITS.request_timeout_s}
QUICK = {"concurrency_id": "chat-ui", "concurrency_limit": None, "show_progress": "hidden", "api_visibility": "private"}
STOPS = StopFlags()
EXPLAIN = """**Base vs preference-tuned, one knob apart.** The tuned model is a LoRA adapter trained with DPO at KL strength
β_train. Decoding-time realignment mixes the two models' next-token logits, `ℓ = ℓ_base + λ·(ℓ_tuned − ℓ_base)`
with `λ = β_train / β`, which approximates the model you would get by retraining at KL strength β
(Liu et al., ICML 2024). **λ is the knob: 0 = the base model, 1 = the tuned model, above 1 = past it**; the nominal
β = β_train/λ beside it reads the other way (higher β → closer to the base model).
β is *nominal*: the shipped adapters (one DPO epoch, LoRA) did not reach the KL-regularised optimum the formula
assumes, so the λ that best matches an adapter trained at another β can differ (see the README's DeRa check)."""
BUSY_HINT = "Still answering: press **Stop** or wait. Your text stays in the box."


def is_ready(pg) -> bool:
    return bool(getattr(pg, "ready", True))


def loading_banner(elapsed: float) -> str:
    pct = min(95, int(100 * elapsed / 30))
    return (f'<div class="loading"><b>Loading the model</b> (first start converts it, ≈ 30 s) — {elapsed:.0f} s '
            f'<progress max="100" value="{pct}"></progress><br><small>You can type and send already: the answers '
            'start as soon as it is ready.</small></div>')


def build_chat_tab(pg, service=None) -> None:
    """`pg`: a Playground, or a LazyPlayground that is still loading (only `pg.adapters` is read here).
    `service`: the DuelService that stores votes (default: one on `pg`, store configured by the environment)."""
    if service is None:
        from playground.feedback.config import duel_max_new_tokens
        from playground.feedback.duel import DuelService

        service = DuelService(pg, max_new_tokens=duel_max_new_tokens())
    names = sorted(pg.adapters)
    default_adapter = "upbeat-b0.1" if "upbeat-b0.1" in names else (names[0] if names else None)
    beta0 = pg.adapters[default_adapter].beta_train if default_adapter else 0.1
    judge0 = pg.adapters[default_adapter].judge if default_adapter else ""
    started = time.monotonic()
    conv_state = gr.State(Conversation())
    pending = gr.State(None)
    view = Radio([("Three columns", "columns"), ("Blind duel", "duel")], value="columns", label="View",
                 show_label=False, elem_id="sbs-mode")
    with gr.Column(elem_id="chat-tab") as chat_view:
        loading = gr.HTML(loading_banner(0), visible=not is_ready(pg), elem_id="loading")
        with gr.Row(visible=False, elem_id="shared-row") as shared_row:
            shared_md = gr.Markdown()
            replay = gr.Button("▶ Replay the shared answers", variant="primary", size="sm", elem_id="replay", scale=0)
        with gr.Row(elem_id="knobs-1"):
            adapter = Dropdown(names, value=default_adapter, label="Adapter (preference-tuned LoRA)",
                               elem_classes=[ADAPTER_PICKER], info=pg.adapters[default_adapter].description if default_adapter else "")
            mode = Radio([("Decoding-time realignment (exact KL trade-off)", "logits"),
                          ("Weight scaling: LoRA × λ (cheaper approximation)", "weights")],
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
        kl = Slider(LIMITS.min_kl_strength, LIMITS.max_kl_strength, value=DEFAULT_BETA_FACTOR * beta0,
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
            highlight = gr.Checkbox(True, label="Highlight where an answer departs from the base model", elem_id="highlight")
        share_box = gr.Textbox(label="Share link (copied): opens these settings and can replay the same answers",
                               visible=False, buttons=["copy"], elem_id="share-link")
        with gr.Row(elem_id="examples"):
            for ex in CHAT.examples:
                gr.Button(ex, size="sm", elem_classes=["example"]).click(None, None, prompt, js=f"() => {json.dumps(ex)}")
        info = gr.Markdown(legend(judge0), elem_id="legend")
        with gr.Accordion("What is this?", open=False):
            gr.Markdown(EXPLAIN)
        with gr.Accordion("Limits", open=False):
            gr.Markdown(f"```json\n{json.dumps(LIMITS.__dict__, indent=1)}\n```")
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

    def begin(kind: str):
        def check(message, conv, adapter, lam, mode, temperature, top_p, max_new, seed, request: gr.Request):
            knob_values = (adapter, lam, mode, temperature, top_p, max_new, seed)
            if conv.rows and conv.rows[-1].streaming:
                raise gr.Error("still answering: press Stop or wait for the answers")
            base = Conversation() if kind == "replay" else conv
            try:
                if kind in ("send", "replay"):
                    turn = check_turn(pg.adapters, base, message, ui_knobs(*knob_values))
                elif not conv.rows:
                    raise InputError(f"nothing to {kind} yet; send a message first")
                else:
                    turn = None
            except InputError as err:
                raise gr.Error(str(err), print_exception=False) from None
            STOPS.clear(request.session_hash)
            return {"kind": kind, "turn": turn, "kl": None}  # λ was set (a share link carries λ)
        return check

    for trigger, kind in ((send.click, "send"), (prompt.submit, "send"), (replay.click, "replay"), (regen.click, "regenerate")):
        events.chain(trigger(begin(kind), [prompt, conv_state, *knob_inputs], pending, **QUICK), is_ready)

    def on_transcript_click(conv, evt: gr.EventData, request: gr.Request):
        if (evt._data or {}).get("action") != "continue" or not conv.rows or conv.rows[-1].streaming:
            raise gr.Error("nothing to continue", print_exception=False)
        STOPS.clear(request.session_hash)
        return {"kind": "continue", "turn": None, "kl": None}

    events.chain(transcript.click(on_transcript_click, conv_state, pending, **QUICK), is_ready)
    def on_stop(request: gr.Request):
        STOPS.request(request.session_hash)

    stop.click(on_stop, None, None, **{**QUICK, "concurrency_id": "chat-stop"})

    def clear_all(request: gr.Request):
        STOPS.request(request.session_hash)
        conv = Conversation()
        return [conv.display(c) for c in COLUMNS] + [render(conv), conv]

    clear.click(clear_all, None, [*api_outputs, transcript, conv_state], api_name="clear", show_progress="hidden")
    api_trigger.click(events.api_chat, [prompt, conv_state, *api_knob_inputs], [*api_outputs, conv_state], api_name="chat",
                      **LM_EVENT)
    events.wire_share(copy, share_box, shared_row, shared_md, loading, [prompt, *knob_inputs], is_ready)
    wire_prefer(service, transcript, conv_state, prefer_column, prefer_trigger, prefer_result)
    highlight.change(None, highlight, None, js="(v) => { document.body.classList.toggle('no-hl', !v); }")

    def on_adapter(name, lam_value, temp, p, n):  # λ stays where it is: its meaning does not depend on the adapter
        if name not in pg.adapters:
            raise gr.Error(f"unknown adapter {name!r}; available: {', '.join(sorted(pg.adapters))}")
        return (Dropdown(info=pg.adapters[name].description), knob_note(name, lam_value, temp, p, n),
                legend(pg.adapters[name].judge))

    def knob_note(name, lam_value, temp, p, n):
        b = pg.adapters[name].beta_train if name in pg.adapters else beta0
        try:
            lam_value = float(lam_value)
            warn = settings_warning(lam_value, float(temp), float(p), int(n))
        except (TypeError, ValueError):
            return ""
        return beta_label(lam_value, b) + (f"  \n{warn}" if warn else "")

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
