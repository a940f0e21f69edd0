"""What a sweep writes and reads: JSON/CSV rows, per-sample JSON, PNG plots, prompt files, a text table.

Shared by the CLI (`python -m playground sweep`) and the Trade-off tab, so neither imports the other.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from playground.settings.request import EVAL_PROMPTS, FALLBACK_PROMPTS, LIMITS, SWEEP
from playground.settings.validation import InputError

PLOTS = ("frontier", "diversity", "metrics", "overopt")
# (row key, readable header with unit, format): the order key columns are shown in.
COLUMNS = (("control", "control", "{}"), ("lambda", "λ", "{:.3g}"), ("n", "n", "{}"), ("gamma", "γ", "{:.3g}"),
           ("kl_strength", "β (nominal)", "{:.3g}"), ("temperature", "T", "{:.3g}"),
           ("reward_mean", "reward [95% CI] vs ref", "ci+"), ("heldout_reward_mean", "held-out [95% CI] vs ref", "ci+"),
           ("kl_seq", "KL (nats/answer) [95% CI]", "ci"), ("kl_bound", "BoN KL bound", "{:.3f}"),
           ("kl_to_base", "KL (nats/token)", "{:.4f}"), ("semantic_diversity", "meaning diversity [95% CI] vs ref", "ci"),
           ("cost_tokens", "compute (token-rows/answer)", "{:.0f}"),
           ("boilerplate", "boiler-plate", "{:.0%}"), ("pareto", "Pareto-optimal", "{}"),
           ("length_mean", "length (tokens)", "{:.1f}"),
           ("entropy", "entropy (nats)", "{:.3f}"), ("distinct_2", "distinct-2", "{:.3f}"), ("self_bleu", "self-BLEU", "{:.3f}"))
VS_BASE = {"reward_mean": "reward_vs_base", "heldout_reward_mean": "heldout_vs_base", "semantic_diversity": "diversity_vs_base"}
MARKS = {"up": "↑", "down": "↓", "within noise": "≈"}  # against the control's reference (λ = 0, smallest n, γ = 1),
# paired by prompt; ≈ = the interval covers 0
# "ci" / "ci+" (signed): the mean with its interval from the row's `<name>_lo` / `<name>_hi` (the raw keys stay in JSON and CSV)


def split_prompts(text: str) -> list[str]:
    """One prompt per line; blank lines and lines starting with # are skipped."""
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def default_prompts() -> list[str]:
    """The first prompts of models/prompts/eval.txt when it exists, else the built-in examples."""
    if EVAL_PROMPTS.is_file():
        prompts = split_prompts(EVAL_PROMPTS.read_text(encoding="utf-8"))[:SWEEP.prompt_count]
        if prompts:
            return prompts
    return list(FALLBACK_PROMPTS)


def read_prompt_file(path: str | Path, name: str = "prompts-file") -> list[str]:
    """Prompts from a UTF-8 text file (one per line), size-capped; InputError naming `name` otherwise."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > LIMITS.max_upload_bytes:
            raise InputError(f"{name}: {size} bytes; the limit is {LIMITS.max_upload_bytes}")
        prompts = split_prompts(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{name}: {path.name} is not UTF-8 text") from None
    except OSError as err:
        raise InputError(f"{name}: cannot read {path}: {err.strerror or err}") from None
    if not prompts:
        raise InputError(f"{name}: {path.name} holds no prompts (one per line)")
    return prompts


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _json_safe(value.item())
    return value


def to_json(rows: Sequence[dict]) -> str:
    """The rows as a JSON list; non-finite numbers (and λ = 0's kl_strength) become null."""
    return json.dumps([{k: _json_safe(v) for k, v in r.items()} for r in rows], indent=2, ensure_ascii=False) + "\n"


def to_csv(rows: Sequence[dict]) -> str:
    """The rows as CSV with a header; null values are empty cells."""
    from playground.tradeoff.sweep import ROW_KEYS

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else list(ROW_KEYS), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if _json_safe(v) is None else _json_safe(v) for k, v in r.items()})
    return buf.getvalue()


def readable(rows: Sequence[dict]) -> list[dict]:
    """Rows with readable headers and units, key columns first; β shown as ∞ at λ = 0; a key a row lacks shows "–"."""
    out = []
    for r in rows:
        shown = {}
        for key, title, fmt in COLUMNS:
            v = r.get(key)
            if key == "kl_strength" and v is None:
                shown[title] = "∞ (base)"
            elif v is None:
                shown[title] = "–"
            elif fmt.startswith("ci"):
                stem, sign = key.removesuffix("_mean"), "+" if fmt == "ci+" else ""
                lo, hi = r.get(f"{stem}_lo"), r.get(f"{stem}_hi")
                shown[title] = f"{v:{sign}.3f}" + (f" [{lo:{sign}.2f}, {hi:{sign}.2f}]" if lo is not None and hi is not None else "")
                if r.get(VS_BASE.get(key, "")) and (r.get("lambda") or r.get("control") in ("bon", "cfg")):
                    shown[title] += " " + MARKS.get(r[VS_BASE[key]], r[VS_BASE[key]])
            elif isinstance(v, (int, float, np.floating)) and not isinstance(v, bool):
                shown[title] = fmt.format(v)
            else:
                shown[title] = str(v)
        out.append(shown)
    return out


def table(rows: Sequence[dict], columns: int = 16) -> str:
    """A fixed-width text table of the first `columns` readable columns."""
    shown = readable(rows)
    titles = [title for _, title, _ in COLUMNS[:columns]]
    widths = [max(len(t), *(len(r[t]) for r in shown)) if shown else len(t) for t in titles]
    lines = ["  ".join(t.rjust(w) for t, w in zip(titles, widths))]
    lines += ["  ".join(r[t].rjust(w) for t, w in zip(titles, widths)) for r in shown]
    return "\n".join(lines)


def write_outputs(out: Path, result, figures: dict | None = None) -> list[Path]:
    """JSON rows, CSV rows, per-sample JSON and the PNG plots (`figures`, else built here); the paths written."""
    from playground.tradeoff.plots import all_figures

    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out, out.with_suffix(".csv"), out.with_name(f"{out.stem}_samples.json")]
    paths[0].write_text(to_json(result.rows), encoding="utf-8")
    paths[1].write_text(to_csv(result.rows), encoding="utf-8")
    meta = {"settings": result.settings, "wall_s": result.wall_s, "samples": result.samples}
    paths[2].write_text(json.dumps(meta, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    figures = figures or all_figures(result.rows, result.settings["judge"], result.settings["heldout_judge"])
    for name in PLOTS:
        paths.append(out.with_name(f"{out.stem}_{name}.png"))
        figures[name].savefig(paths[-1], dpi=110)
    return paths
