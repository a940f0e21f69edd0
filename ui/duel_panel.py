"""The blind duel: two answers at two different λ shown as A and B, the human's vote, then what was behind them.

Built once, as the "Blind duel" mode of the Side-by-side tab (ui/chat_tab.py). Only components and event
wiring live here; the duel logic is `playground/feedback/duel.py`.
"""
from __future__ import annotations

import gradio as gr

from playground.feedback.vote import OUTCOMES, FeedbackError, FeedbackUnavailable
from playground.settings import CHAT, DEFAULT_DECODE, LIMITS, SERVE
from playground.validation import InputError
from ui.components import ADAPTER_PICKER, Dropdown, Radio, Slider

LM_EVENT = {"concurrency_id": "lm", "concurrency_limit": SERVE.lm_concurrency, "time_limit": LIMITS.request_timeout_s}
USER_ERRORS = (InputError, FeedbackError, FeedbackUnavailable)
BUTTONS = (("A is better", "a"), ("B is better", "b"), ("Tie", "tie"), ("Both bad", "both_bad"))
EXPLAIN = """**Which answer is better?** Both answers come from the same adapter at two different realignment
strengths λ (0 = base model, 1 = tuned as trained, 2 = extrapolated), in random order. Vote, and the settings
and the AI judges' scores are revealed. Votes store the prompt, both answers and their settings, never your IP
address; your browser session is kept only as a salted hash."""


def reveal_markdown(reveal: dict) -> str:
    """What was behind A and B, and how the judges scored them."""
    rows = ["| | λ | T | seed | tokens |", "|---|---|---|---|---|"]
    for side in ("a", "b"):
        s = reveal[side]
        rows.append(f"| **{side.upper()}** | {s['lambda']:g} | {s['temperature']:g} | {s['seed']} | {s['tokens']} |")
    judges = ["", "| judge | A | B |", "|---|---|---|"]
    judges += [f"| {j} | {a:.3f} | {b:.3f} |" for j, (a, b) in reveal["judge_scores"].items()]
    return (f"**Thanks — vote #{reveal['vote_id']} ({reveal['outcome']}) saved.** The settings behind the answers:\n\n"
            + "\n".join(rows + judges))


def build_duel_panel(pg, service) -> None:
    """`pg`: a Playground or a LazyPlayground still loading (only `pg.adapters` is read here); `service`: a DuelService."""
    names = sorted(pg.adapters)
    default_adapter = "upbeat-b0.1" if "upbeat-b0.1" in names else (names[0] if names else None)
    gr.Markdown(EXPLAIN, elem_id="duel-explain")
    duel_state = gr.State("")
    with gr.Row():
        adapter = Dropdown(names, value=default_adapter, label="Adapter (preference-tuned LoRA)", elem_classes=[ADAPTER_PICKER])
        temperature = Slider(0.0, LIMITS.max_temperature, value=DEFAULT_DECODE.temperature, step=0.05,
                             label="Temperature", info="Both answers use it; higher = more random")
    with gr.Row(elem_id="duel-input"):
        prompt = gr.Textbox(placeholder="Ask something", show_label=False, scale=5, elem_id="duel-prompt",
                            max_length=LIMITS.max_prompt_chars)
        go = gr.Button("Generate two answers", variant="primary", scale=1, min_width=120, elem_id="duel-generate")
    gr.Examples(list(CHAT.examples), inputs=prompt)
    with gr.Row(equal_height=True, elem_id="duel-answers"):
        # min_width: side by side on a wide screen, one above the other on a phone
        answer_a = gr.Textbox(label="Answer A", lines=8, interactive=False, elem_id="duel-a", min_width=300)
        answer_b = gr.Textbox(label="Answer B", lines=8, interactive=False, elem_id="duel-b", min_width=300)
    with gr.Row(visible=False, elem_id="duel-votes") as vote_row:
        buttons = [gr.Button(label, elem_id=f"vote-{outcome}", min_width=80) for label, outcome in BUTTONS]
    reveal = gr.Markdown(elem_id="duel-reveal")
    outcome_api = Radio(list(OUTCOMES), value="a", visible=False, label="outcome")
    vote_api = gr.Button(visible=False)

    def generate(message, name, temp, request: gr.Request):
        try:
            duel = service.start(message, name, temp, request.session_hash)
        except USER_ERRORS as err:
            raise gr.Error(str(err)) from None
        return duel.answer_a, duel.answer_b, duel.duel_id, gr.Row(visible=True), ""

    def cast(outcome, duel_id, request: gr.Request):
        try:
            _vote_id, shown = service.vote(duel_id, outcome, request.session_hash)
        except USER_ERRORS as err:
            raise gr.Error(str(err)) from None
        return reveal_markdown(shown), gr.Row(visible=False)

    duel_outs = [answer_a, answer_b, duel_state, vote_row, reveal]
    prompt.submit(generate, [prompt, adapter, temperature], duel_outs, api_visibility="private", **LM_EVENT)
    go.click(generate, [prompt, adapter, temperature], duel_outs, api_name="duel", **LM_EVENT)
    for button, (_label, outcome) in zip(buttons, BUTTONS, strict=True):
        button.click(_bind(cast, outcome), [duel_state], [reveal, vote_row], api_visibility="private")
    vote_api.click(cast, [outcome_api, duel_state], [reveal, vote_row], api_name="vote")


def _bind(cast, outcome):
    """`cast` with the outcome fixed (gr.Request is still injected by its annotation)."""
    def vote_for(duel_id, request: gr.Request):
        return cast(outcome, duel_id, request)
    return vote_for
