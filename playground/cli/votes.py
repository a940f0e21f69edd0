"""`python -m playground votes`: what the stored human votes say, and the votes out as files.

    python -m playground votes report [--json] [--source duel ...]
    python -m playground votes export --format trl|csv --out FILE [--include-simulated]

The store is the one the app writes to: PLAYGROUND_DATABASE_URL, else `votes.sqlite3` in PLAYGROUND_DATA_DIR
(see FeedbackSettings in playground/settings/). `report` prints the counts, each judge's agreement with decisive human
votes (share and Wilson 95% interval), the Bradley–Terry strengths of the (λ, T) settings and the length
effect; `--json` prints the same as JSON. `export --format trl` writes TRL's conversational preference
format (JSON Lines, decisive votes only), `--format csv` every field of every vote.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from playground.feedback.vote import SOURCES
from playground.settings.validation import InputError

FORMATS = ("trl", "csv")
SUFFIXES = {"trl": (".jsonl",), "csv": (".csv",)}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `votes` sub-command with its `report` and `export` actions."""
    p = subparsers.add_parser("votes", help="report on or export the stored human votes",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    r = sub.add_parser("report", help="judge agreement, Bradley–Terry strengths and length effect")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.add_argument("--source", action="append", default=None,
                   help=f"only votes of this source ({', '.join(SOURCES)}); repeat for several (default: all)")
    r.add_argument("--boot", default=1000, type=int, help="bootstrap resamples for the Bradley–Terry intervals")
    r.set_defaults(func=run_report)
    e = sub.add_parser("export", help="write the votes as a TRL preference dataset or a CSV")
    e.add_argument("--format", required=True, choices=FORMATS, help="trl = JSON Lines for DPO; csv = every field")
    e.add_argument("--out", required=True, help="output file (.jsonl for trl, .csv for csv)")
    e.add_argument("--include-simulated", action="store_true", help="trl: keep simulated votes too")
    e.set_defaults(func=run_export)
    return p


def open_store():
    """The vote store configured by the environment; tests replace this."""
    from playground.feedback.store import VoteStore

    return VoteStore.open()


def load_votes() -> list:
    """Every stored vote; an unavailable database becomes one `error:` line (exit 2), not a traceback."""
    from playground.feedback.vote import FeedbackUnavailable

    try:
        with open_store() as store:
            return store.votes()
    except FeedbackUnavailable as err:
        raise InputError(str(err)) from None


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def _num(x: Any) -> str:
    return "—" if x is None else f"{x:+.2f}"


def format_report(rep: dict[str, Any]) -> str:
    """The report as plain-text tables."""
    c = rep["counts"]
    lines = [f"{c['votes']} votes ({c['decisive']} decisive) from {c['sessions']} sessions; outcomes "
             + ", ".join(f"{k} {v}" for k, v in c["outcomes"].items())
             + ("; sources " + ", ".join(f"{k} {v}" for k, v in c["sources"].items()) if c["sources"] else "")]
    lines.append("\nJudge agreement with decisive human votes (share, 95% CI):")
    if not rep["judge_agreement"]:
        lines.append("  (no decisive votes yet)")
    for j, a in rep["judge_agreement"].items():
        lines.append(f"  {j:<12} {a['agree']:>4}/{a['n']:<4} {_pct(a['share']):>5}  [{_pct(a['low'])}, {_pct(a['high'])}]"
                     f"  judge ties {a['judge_ties']}")
    bt = rep["bradley_terry"]
    lines.append("\nBradley–Terry strength of each setting (θ, reference = 0; 95% bootstrap CI):")
    if bt is None:
        lines.append("  (not enough comparisons between different settings yet)")
    else:
        lines.append(f"  {'arm':<18} {'θ':>6} {'95% CI':>16} {'win rate':>9} {'n':>5}")
        for s in bt["arms"]:
            lines.append(f"  {s['arm']:<18} {_num(s['theta']):>6} {'[' + _num(s['low']) + ', ' + _num(s['high']) + ']':>16}"
                         f" {_pct(s['win_rate']):>9} {s['n']:>5}")
        lines.append(f"  reference {bt['reference']}, best {bt['best']}, {bt['n_comparisons']} comparisons")
    lines.append("\nLength effect: share of decisive votes won by the longer answer (95% CI):")
    for w, e in rep["length_effect"].items():
        lines.append(f"  {w:<12} {e['longer_wins']:>4}/{e['n']:<4} {_pct(e['share']):>5}  [{_pct(e['low'])}, {_pct(e['high'])}]"
                     f"  equal length {e['equal_length']}")
    return "\n".join(lines)


def run_report(args: argparse.Namespace) -> int:
    from playground.feedback.analysis import report

    if args.source:
        bad = [s for s in args.source if s not in SOURCES]
        if bad:
            raise InputError(f"unknown source {bad[0]!r}; available: {', '.join(SOURCES)}")
    if not 0 <= args.boot <= 100_000:
        raise InputError(f"boot must be in [0, 100000]; got {args.boot}")
    votes = load_votes()
    rep = report(votes, sources=args.source, n_boot=args.boot)
    print(json.dumps(rep, indent=1, ensure_ascii=False) if args.json else format_report(rep))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from playground.feedback.export import write_csv, write_trl_jsonl

    out = Path(args.out)
    if out.suffix.lower() not in SUFFIXES[args.format]:
        raise InputError(f"out must end in {' or '.join(SUFFIXES[args.format])} for --format {args.format}; got {args.out!r}")
    if not out.parent.is_dir():
        raise InputError(f"out: folder {str(out.parent)!r} does not exist")
    votes = load_votes()
    if args.format == "csv":
        n = write_csv(votes, out)
        print(f"wrote {n} votes to {out}")
    else:
        counts = write_trl_jsonl(votes, out, include_simulated=args.include_simulated)
        print(f"wrote {counts.get('written', 0)} preference pairs to {out} "
              f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()) if k != 'written') or 'nothing skipped'})")
    return 0
