"""The blind duel: two answers at two different λ shown as A and B, the human's vote, then what was behind them.

Built once, as the "Blind duel" mode of the Side-by-side tab (ui/chat_tab.py). Only components and event
wiring live here; the duel logic is `playground/feedback/duel.py`.
"""
from __future__ import annotations

import gradio as gr

from playground.chat import conversation
from playground.chat.conversation import STOPPED, TIME_LIMIT, StopFlags
from playground.feedback.duel import DuelStopped
from playground.feedback.vote import OUTCOMES, FeedbackError, FeedbackUnavailable
from playground.settings.request import CHAT, DEFAULT_DECODE, LIMITS
from playground.settings.validation import InputError, check_choice, check_prompt
from ui import pools
from ui.components import ADAPTER_PICKER, Dropdown, Radio, Slider, plain
from ui.first_screen import adapter_choices
from ui.first_screen import default_adapter as first_adapter

LM_EVENT, QUICK = pools.LM, pools.quick("duel-ui")
STOPS = StopFlags()  # the duel's Stop, per browser session (the three columns have their own)
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


def progress_markdown(step) -> str:
    """Under the answers while they stream: how far each has come."""
    return f"Answering … A: {step.tokens_a} tokens · B: {step.tokens_b} tokens. **■ Stop** ends both."


def stopped_markdown(why: str, step) -> str:
    counts = f"A {step.tokens_a} tokens, B {step.tokens_b}" if step is not None else "before the first token"
    return (f"**{why.capitalize()}** ({counts}): unfinished answers are not voted on. "
            "Generate two answers again to vote.")


def stream_duel(service, message, name, temp, session: str, should_stop):
    """The duel's outputs (answer A, answer B, duel id, vote row, note) after every decoding step, then with the
    vote buttons; Stop or the time limit ends both answers with a note saying which (nothing to vote on)."""
    deadline = conversation.clock() + LIMITS.request_timeout_s  # frees the model even if nobody stops it
    ended: dict[str, str] = {}

    def stop() -> bool:
        if "why" not in ended:
            if should_stop():
                ended["why"] = STOPPED
            elif conversation.clock() > deadline:
                ended["why"] = TIME_LIMIT
        return "why" in ended

    step = None
    try:
        for step in service.stream(message, name, temp, session, should_stop=stop):
            if step.duel is None:
                yield step.answer_a, step.answer_b, "", gr.Row(visible=False), progress_markdown(step)
    except DuelStopped:
        a, b = (step.answer_a, step.answer_b) if step is not None else ("", "")
        yield a, b, "", gr.Row(visible=False), stopped_markdown(ended.get("why", STOPPED), step)
        return
    yield step.answer_a, step.answer_b, step.duel.duel_id, gr.Row(visible=True), ""


def build_duel_panel(pg, service) -> None:
    """`pg`: a Playground or a LazyPlayground still loading (only `pg.adapters` is read here); `service`: a DuelService."""
    default_adapter = first_adapter(pg.adapters)  # a helpful one, as in the three columns
    gr.Markdown(EXPLAIN, elem_id="duel-explain")
    duel_state = gr.State("")
    with gr.Row():
        adapter = Dropdown(adapter_choices(pg.adapters), value=default_adapter, label="Adapter: what the tuned model was trained to prefer",
                           elem_classes=[ADAPTER_PICKER], min_width=300)  # min_width: stacked on a phone
        temperature = Slider(0.0, LIMITS.max_temperature, value=DEFAULT_DECODE.temperature, step=0.05,
                             label="Temperature", info="Both answers use it; higher = more random", min_width=300)
    with gr.Row(elem_id="duel-input"):
        prompt = gr.Textbox(placeholder="Ask something", show_label=False, scale=5, elem_id="duel-prompt",
                            max_length=LIMITS.max_prompt_chars)
        go = gr.Button("Generate two answers", variant="primary", scale=1, min_width=120, elem_id="duel-generate")
        stop = gr.Button("■ Stop", variant="stop", scale=1, min_width=120, visible=False, elem_id="duel-stop")
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

    def check(message, name, request: gr.Request):
        """Quick, before anything is shown: a bad prompt or adapter is a toast and the answers stay as they were."""
        try:
            check_prompt(message)
            check_choice("adapter", name, sorted(pg.adapters))
        except USER_ERRORS as err:
            raise gr.Error(str(err), print_exception=False) from None
        STOPS.clear(request.session_hash)
        return ""

    def show():
        return "", "", "", gr.Row(visible=False), "Answering …", gr.Button(visible=False), gr.Button(visible=True)

    def generate(message, name, temp, request: gr.Request):
        """The stream without the vote row: the buttons come in `finish`, after this event has completed. Gradio's
        completion message re-sends a generator's last outputs, and it can arrive after a quick vote's reveal (a
        loaded server ends the generator late): shown here, the vote row and an empty note would come back over it."""
        try:
            for a, b, duel_id, _vote_row, note in stream_duel(service, message, name, temp, request.session_hash,
                                                               STOPS.checker(request.session_hash)):
                yield a, b, duel_id, note
        except USER_ERRORS as err:  # what needs the model (the prompt's tokens): a toast
            gr.Warning(plain(err))
            yield "", "", "", ""

    def finish(duel_id):
        """After the stream has completed: Generate back in place of Stop, the vote buttons if a duel was kept."""
        return gr.Button(visible=True), gr.Button(visible=False), gr.Row(visible=bool(duel_id))

    def generate_api(message, name, temp, request: gr.Request):
        """/duel for gradio_client: the same stream, errors as AppError; /duel_stop from the same client stops it."""
        STOPS.clear(request.session_hash)
        try:
            yield from stream_duel(service, message, name, temp, request.session_hash, STOPS.checker(request.session_hash))
        except USER_ERRORS as err:
            raise gr.Error(str(err), print_exception=False) from None

    def on_stop(request: gr.Request):
        STOPS.request(request.session_hash)

    def cast(outcome, duel_id, request: gr.Request):
        try:
            _vote_id, shown = service.vote(duel_id, outcome, request.session_hash)
        except USER_ERRORS as err:
            raise gr.Error(str(err)) from None
        return reveal_markdown(shown), gr.Row(visible=False)

    duel_outs = [answer_a, answer_b, duel_state, vote_row, reveal]
    buttons_out = [go, stop]
    for trigger in (prompt.submit, go.click):
        (trigger(check, [prompt, adapter], duel_state, **QUICK)
            .success(show, None, [*duel_outs, *buttons_out], **QUICK)
            .success(generate, [prompt, adapter, temperature], [answer_a, answer_b, duel_state, reveal],
                     api_visibility="private", show_progress="hidden", **LM_EVENT)
            .then(finish, duel_state, [*buttons_out, vote_row], **QUICK))
    duel_api = gr.Button(visible=False)
    duel_api.click(generate_api, [prompt, adapter, temperature], duel_outs, api_name="duel", **LM_EVENT)
    stop.click(on_stop, None, None, api_name="duel_stop", show_progress="hidden", concurrency_id="duel-stop",
               concurrency_limit=None)
    for button, (_label, outcome) in zip(buttons, BUTTONS, strict=True):
        button.click(_bind(cast, outcome), [duel_state], [reveal, vote_row], api_visibility="private")
    vote_api.click(cast, [outcome_api, duel_state], [reveal, vote_row], api_name="vote")


def _bind(cast, outcome):
    """`cast` with the outcome fixed (gr.Request is still injected by its annotation)."""
    def vote_for(duel_id, request: gr.Request):
        return cast(outcome, duel_id, request)
    return vote_for
