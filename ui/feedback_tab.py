"""The "Feedback" tab: a blind duel between two λ settings, the human's vote, and what the votes say so far.

Only components and event wiring live here; the duel logic is `playground/feedback/duel.py`, the report
`playground/feedback/analysis.py`, the downloads `playground/feedback/export.py`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from playground.feedback.vote import OUTCOMES, FeedbackError, FeedbackUnavailable
from playground.settings import CHAT, DEFAULT_DECODE, LIMITS, SERVE
from playground.validation import InputError
from ui.components import Dropdown, Radio, Slider

LM_EVENT = {"concurrency_id": "lm", "concurrency_limit": SERVE.lm_concurrency, "time_limit": LIMITS.request_timeout_s}
USER_ERRORS = (InputError, FeedbackError, FeedbackUnavailable)
BUTTONS = (("A is better", "a"), ("B is better", "b"), ("Tie", "tie"), ("Both bad", "both_bad"))
RECENT = 20
EXPLAIN = """**Which answer is better?** Both answers come from the same adapter at two different realignment
strengths λ (0 = base model, 1 = tuned as trained, 2 = extrapolated), in random order. Vote, and the settings
and the AI judges' scores are revealed. Votes store the prompt, both answers and their settings, never your IP
address; your browser session is kept only as a salted hash."""
JUDGE_COLS = ["judge", "agree / n", "share", "95% CI", "judge ties"]
BT_COLS = ["arm", "θ", "95% CI", "win rate", "n"]
LEN_COLS = ["who", "longer wins / n", "share", "95% CI", "equal length"]
RECENT_COLS = ["time (UTC)", "outcome", "A: λ, T", "B: λ, T", "tokens A/B", "adapter", "prompt"]


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def _ci(d) -> str:
    return f"[{_pct(d['low'])}, {_pct(d['high'])}]"


def _f(x) -> str:
    return "—" if x is None else f"{x:+.2f}"


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


def report_tables(rep: dict, votes: list) -> tuple:
    """The report dict (analysis.report) as a summary and four tables."""
    c = rep["counts"]
    summary = (f"**{c['votes']} votes** ({c['decisive']} decisive) from {c['sessions']} sessions — "
               + ", ".join(f"{k}: {v}" for k, v in c["outcomes"].items()))
    judges = [[j, f"{a['agree']}/{a['n']}", _pct(a["share"]), _ci(a), a["judge_ties"]]
              for j, a in rep["judge_agreement"].items()]
    bt = rep["bradley_terry"]
    arms = [] if bt is None else [[s["arm"], _f(s["theta"]), f"[{_f(s['low'])}, {_f(s['high'])}]", _pct(s["win_rate"]), s["n"]]
                                  for s in bt["arms"]]
    lengths = [[w, f"{e['longer_wins']}/{e['n']}", _pct(e["share"]), _ci(e), e["equal_length"]]
               for w, e in rep["length_effect"].items()]
    recent = [[v.created_at.strftime("%Y-%m-%d %H:%M") if v.created_at else "", v.outcome,
               f"{v.settings_a['lambda']:g}, {v.settings_a['temperature']:g}",
               f"{v.settings_b['lambda']:g}, {v.settings_b['temperature']:g}", f"{v.tokens_a}/{v.tokens_b}", v.adapter,
               v.prompt[:80]] for v in votes[::-1][:RECENT]]
    return summary, judges, arms, lengths, recent


def build_feedback_tab(pg, service=None) -> None:
    """`pg`: a Playground or a LazyPlayground still loading (only `pg.adapters` is read here).
    `service`: a DuelService (default: one on `pg` with the store configured by the environment)."""
    from playground.feedback.config import duel_max_new_tokens
    from playground.feedback.duel import DuelService

    service = service or DuelService(pg, max_new_tokens=duel_max_new_tokens())
    names = sorted(pg.adapters)
    default_adapter = "upbeat-b0.1" if "upbeat-b0.1" in names else (names[0] if names else None)
    gr.Markdown(EXPLAIN)
    duel_state = gr.State("")
    with gr.Row():
        adapter = Dropdown(names, value=default_adapter, label="Adapter (preference-tuned LoRA)")
        temperature = Slider(0.0, LIMITS.max_temperature, value=DEFAULT_DECODE.temperature, step=0.05,
                                label="Temperature", info="Both answers use it; higher = more random")
    with gr.Row():
        prompt = gr.Textbox(placeholder="Ask something", show_label=False, scale=5, elem_id="duel-prompt",
                            max_length=LIMITS.max_prompt_chars)
        go = gr.Button("Generate two answers", variant="primary", scale=1, elem_id="duel-generate")
    gr.Examples(list(CHAT.examples), inputs=prompt)
    with gr.Row(equal_height=True):
        answer_a = gr.Textbox(label="Answer A", lines=8, interactive=False, elem_id="duel-a")
        answer_b = gr.Textbox(label="Answer B", lines=8, interactive=False, elem_id="duel-b")
    with gr.Row(visible=False) as vote_row:
        buttons = [gr.Button(label, elem_id=f"vote-{outcome}") for label, outcome in BUTTONS]
    reveal = gr.Markdown()
    outcome_api = Radio(list(OUTCOMES), value="a", visible=False, label="outcome")
    vote_api = gr.Button(visible=False)

    with gr.Accordion("What the votes say", open=False):
        refresh = gr.Button("Refresh report", size="sm")
        summary = gr.Markdown()
        gr.Markdown("**AI judges vs humans**: how often each judge prefers the answer a human chose (decisive votes).")
        judges_df = gr.Dataframe(headers=JUDGE_COLS, interactive=False)
        gr.Markdown("**Bradley–Terry strength of each setting** (θ; 0 = reference; higher = preferred; "
                    "P(A beats B) = σ(θ_A − θ_B); 95% bootstrap intervals over votes).")
        with gr.Row(equal_height=True):
            bt_df = gr.Dataframe(headers=BT_COLS, interactive=False, scale=1)
            bt_plot = gr.Plot(label="θ per (λ, T) with 95% CI", scale=1, elem_id="bt-plot")
        gr.Markdown("**Length effect**: does the longer answer win?")
        len_df = gr.Dataframe(headers=LEN_COLS, interactive=False)
        gr.Markdown(f"**Recent votes** (newest {RECENT})")
        recent_df = gr.Dataframe(headers=RECENT_COLS, interactive=False)
        with gr.Row():
            csv_file = gr.File(label="All votes (CSV)")
            trl_file = gr.File(label="Preference dataset (TRL JSON Lines)")

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

    def votes_report():
        from playground.feedback.analysis import report
        from playground.feedback.export import write_csv, write_trl_jsonl
        from playground.feedback.plots import bradley_terry_figure

        try:
            votes = service.store().votes()
        except USER_ERRORS as err:
            raise gr.Error(str(err)) from None
        rep = report(votes, n_boot=200)
        folder = Path(tempfile.mkdtemp(prefix="votes-"))
        write_csv(votes, folder / "votes.csv")
        write_trl_jsonl(votes, folder / "votes_trl.jsonl")
        return (*report_tables(rep, votes), str(folder / "votes.csv"), str(folder / "votes_trl.jsonl"),
                bradley_terry_figure(rep["bradley_terry"]))

    duel_outs = [answer_a, answer_b, duel_state, vote_row, reveal]
    prompt.submit(generate, [prompt, adapter, temperature], duel_outs, api_visibility="private", **LM_EVENT)
    go.click(generate, [prompt, adapter, temperature], duel_outs, api_name="duel", **LM_EVENT)
    for button, (_label, outcome) in zip(buttons, BUTTONS, strict=True):
        button.click(_bind(cast, outcome), [duel_state], [reveal, vote_row], api_visibility="private")
    vote_api.click(cast, [outcome_api, duel_state], [reveal, vote_row], api_name="vote")
    refresh.click(votes_report, None, [summary, judges_df, bt_df, len_df, recent_df, csv_file, trl_file, bt_plot],
                  api_name="votes_report")


def _bind(cast, outcome):
    """`cast` with the outcome fixed (gr.Request is still injected by its annotation)."""
    def vote_for(duel_id, request: gr.Request):
        return cast(outcome, duel_id, request)
    return vote_for
