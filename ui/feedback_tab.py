"""The "Feedback" tab: what the human votes say so far, and the votes as files (CSV, TRL preference dataset).

Votes are cast in the Side-by-side tab (the "Blind duel" mode, ui/duel_panel.py, and "Prefer this one" under
the three columns). Only components and event wiring live here; the report is `playground/feedback/analysis.py`,
the downloads `playground/feedback/export.py`, the training panel `ui/train_panel.py`.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from playground.feedback.vote import FeedbackError, FeedbackUnavailable
from playground.runtime.job_folders import job_folder
from ui.train_panel import build_train_panel

USER_ERRORS = (FeedbackError, FeedbackUnavailable)
RECENT = 20
EXPLAIN = """**What the votes say.** Vote in the **Side by side** tab: its *Blind duel* mode (two answers at two λ,
settings revealed after the vote) or **Prefer this one** under an answer of the three columns (the preferred column
beats each other one). Votes store the prompt, the answers and the settings that regenerate them, never your IP
address; your browser session is kept only as a salted hash. Press **Refresh report** for the numbers and the files."""
JUDGE_COLS = ["judge", "agree / n", "share", "95% CI", "judge ties"]
BT_COLS = ["arm", "θ", "95% CI", "win rate", "n"]
LEN_COLS = ["who", "longer wins / n", "share", "95% CI", "equal length"]
RECENT_COLS = ["time (UTC)", "source", "outcome", "A: λ, T", "B: λ, T", "tokens A/B", "adapter", "prompt"]


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def _ci(d) -> str:
    return f"[{_pct(d['low'])}, {_pct(d['high'])}]"


def _f(x) -> str:
    return "—" if x is None else f"{x:+.2f}"


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
    recent = [[v.created_at.strftime("%Y-%m-%d %H:%M") if v.created_at else "", v.source, v.outcome,
               f"{v.settings_a['lambda']:g}, {v.settings_a['temperature']:g}",
               f"{v.settings_b['lambda']:g}, {v.settings_b['temperature']:g}", f"{v.tokens_a}/{v.tokens_b}", v.adapter,
               v.prompt[:80]] for v in votes[::-1][:RECENT]]
    return summary, judges, arms, lengths, recent


def build_feedback_tab(pg, service):
    """`pg`: a Playground or a LazyPlayground still loading; `service`: the DuelService whose store holds the votes.
    Returns the "Train an adapter from these votes" panel (ui/train_panel.py), for wire_adapter_pickers."""
    gr.Markdown(EXPLAIN)
    with gr.Column(elem_id="votes-report"):
        with gr.Row():
            refresh = gr.Button("Refresh report", variant="primary", scale=0, min_width=180, elem_id="votes-refresh")
            summary = gr.Markdown(elem_id="votes-summary")
        with gr.Row():
            csv_file = gr.File(label="All votes (CSV)", elem_id="votes-csv", height=90)
            trl_file = gr.File(label="Preference dataset (TRL JSON Lines): decisive votes, for DPO", elem_id="votes-trl",
                               height=90)
        gr.Markdown("**AI judges vs humans**: how often each judge prefers the answer a human chose (decisive votes).")
        judges_df = gr.Dataframe(headers=JUDGE_COLS, interactive=False)
        gr.Markdown("**Bradley–Terry strength of each setting** (θ; 0 = reference; higher = preferred; "
                    "P(A beats B) = σ(θ_A − θ_B); 95% bootstrap intervals over votes).")
        with gr.Row(equal_height=True):
            bt_df = gr.Dataframe(headers=BT_COLS, interactive=False, scale=1)
            bt_plot = gr.Plot(label="θ per (λ, T) with 95% CI", show_label=False, scale=1, elem_id="bt-plot")
        gr.Markdown("**Length effect**: does the longer answer win?")
        len_df = gr.Dataframe(headers=LEN_COLS, interactive=False)
        gr.Markdown(f"**Recent votes** (newest {RECENT})")
        recent_df = gr.Dataframe(headers=RECENT_COLS, interactive=False)

    def votes_report():
        from playground.feedback.analysis import report
        from playground.feedback.export import write_csv, write_trl_jsonl
        from playground.feedback.plots import bradley_terry_figure

        try:
            votes = service.store().votes()
        except USER_ERRORS as err:
            raise gr.Error(str(err)) from None
        rep = report(votes, n_boot=200)
        folder = Path(job_folder("votes"))
        write_csv(votes, folder / "votes.csv")
        write_trl_jsonl(votes, folder / "votes_trl.jsonl")
        return (*report_tables(rep, votes), str(folder / "votes.csv"), str(folder / "votes_trl.jsonl"),
                bradley_terry_figure(rep["bradley_terry"]))

    refresh.click(votes_report, None, [summary, judges_df, bt_df, len_df, recent_df, csv_file, trl_file, bt_plot],
                  api_name="votes_report")
    return build_train_panel(pg, service)

