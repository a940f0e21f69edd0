"""`python -m playground sweep`: the trade-off explorer from the command line.

Sweeps λ (or the KL strength β) × temperature on one adapter, and writes the per-setting rows as JSON
(`--out`, a list of rows), CSV (same stem), the per-sample texts (`<stem>_samples.json`) and four PNG
plots (`<stem>_frontier.png`, `_diversity.png`, `_metrics.png`, `_overopt.png`). A progress bar goes to
stderr and a table to stdout. Bad input: one `error: ...` line on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from playground.lm.loading import ModelLoadError
from playground.settings import REPO_ROOT
from playground.tradeoff.sweep import (DEFAULT_LAMBDAS, DEFAULT_PROMPTS, DEFAULT_TEMPERATURES, SweepResult,
                              SweepSettings, parse_floats, precheck, run_sweep, to_csv, to_json)
from playground.validation import InputError

EVAL_PROMPTS = REPO_ROOT / "models" / "prompts" / "eval.txt"
DEFAULT_PROMPT_COUNT = 8
PLOTS = ("frontier", "diversity", "metrics", "overopt")
TABLE = (("lambda", "λ", "{:.3g}"), ("kl_strength", "β", "{:.3g}"), ("temperature", "T", "{:.3g}"),
         ("reward_mean", "reward", "{:+.3f}"), ("reward_ci95", "±", "{:.3f}"), ("heldout_reward_mean", "held-out", "{:+.3f}"),
         ("kl_to_base", "KL/tok", "{:.4f}"), ("kl_seq", "KL/seq", "{:.2f}"), ("entropy", "entropy", "{:.3f}"),
         ("length_mean", "len", "{:.1f}"), ("distinct_2", "dist-2", "{:.3f}"), ("ead", "EAD", "{:.3f}"),
         ("self_bleu", "selfBLEU", "{:.3f}"), ("semantic_diversity", "sem-div", "{:.3f}"), ("pareto", "pareto", "{}"))
USER_ERRORS = (InputError, ModelLoadError, KeyError, OSError, UnicodeDecodeError)  # KeyError: unknown adapter or judge


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `sweep` sub-command."""
    p = subparsers.add_parser("sweep", help="sweep λ (or β) × temperature: reward, KL and diversity per setting",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adapter", default=None, help="registry adapter (default: the registry default, else the first installed)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompts-file", default=None, help="text file, one prompt per line (blank lines and # comments skipped)")
    src.add_argument("--prompt", action="append", default=None, help="a prompt; repeat for several")
    knob = p.add_mutually_exclusive_group()
    knob.add_argument("--lambdas", default=None,
                      help=f"comma-separated λ (default {','.join(map(str, DEFAULT_LAMBDAS))}); 0 = base, 1 = tuned")
    knob.add_argument("--kl-strengths", default=None,
                      help="comma-separated KL strengths β instead (higher = closer to base; inf = base)")
    p.add_argument("--temperatures", default=",".join(map(str, DEFAULT_TEMPERATURES)),
                   help="comma-separated; higher = more diverse, 0 = greedy")
    p.add_argument("--samples", type=float, default=4, help="samples per prompt per setting (more = steadier estimates)")
    p.add_argument("--max-new-tokens", type=float, default=64, help="answer length cap in tokens")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling; 1 = none")
    p.add_argument("--seed", type=float, default=0, help="sample k uses seed + k")
    p.add_argument("--judge", default=None, help="training (proxy) judge (default: the adapter's own)")
    p.add_argument("--heldout-judge", default=None, help="held-out judge (default: the other built-in judge)")
    p.add_argument("--out", required=True, help="JSON output (.json); CSV, samples and PNGs are written beside it")
    p.set_defaults(func=run)
    return p


def split_prompts(text: str) -> list[str]:
    """One prompt per line; blank lines and lines starting with # are skipped."""
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def default_prompts() -> list[str]:
    """The first 8 prompts of models/prompts/eval.txt when it exists, else the built-in examples."""
    if EVAL_PROMPTS.is_file():
        prompts = split_prompts(EVAL_PROMPTS.read_text(encoding="utf-8"))[:DEFAULT_PROMPT_COUNT]
        if prompts:
            return prompts
    return list(DEFAULT_PROMPTS)


def read_prompts(args: argparse.Namespace) -> list[str]:
    """--prompt values, else the lines of --prompts-file, else `default_prompts()`."""
    if args.prompt:
        return list(args.prompt)
    if not args.prompts_file:
        return default_prompts()
    try:
        prompts = split_prompts(Path(args.prompts_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"prompts-file: cannot read {args.prompts_file}: {getattr(err, 'strerror', None) or err}") from None
    if not prompts:
        raise InputError(f"prompts-file: {args.prompts_file} holds no prompts (one per line)")
    return prompts


def settings_from_args(args: argparse.Namespace, adapter: str) -> SweepSettings:
    """Parse the comma lists; range checks happen in `playground.tradeoff.sweep.resolve`."""
    lams = parse_floats("lambdas", args.lambdas) if args.lambdas is not None else None
    betas = parse_floats("kl_strengths", args.kl_strengths) if args.kl_strengths is not None else None
    return SweepSettings(adapter=adapter, prompts=read_prompts(args), lambdas=lams, kl_strengths=betas,
                         temperatures=parse_floats("temperatures", args.temperatures), samples=args.samples,
                         max_new_tokens=args.max_new_tokens, top_p=args.top_p, seed=args.seed,
                         judge=args.judge, heldout_judge=args.heldout_judge)


def load_playground(adapter: str | None):
    """(Playground with just that adapter, adapter name); tests replace this."""
    from playground import registry
    from playground.service import Playground

    installed = [a.name for a in registry.installed_adapters(registry.DEFAULT_BASE)]
    if adapter is None:
        if not installed:
            raise InputError(f"no adapter is installed in {registry.ADAPTER_DIR}; see `python -m playground adapters`")
        adapter = registry.DEFAULT_ADAPTER if registry.DEFAULT_ADAPTER in installed else installed[0]
    registry.get_adapter(adapter)
    if adapter not in installed:
        raise InputError(f"adapter {adapter!r} is not installed; installed: {', '.join(installed) or '(none)'}")
    return Playground.from_registry(adapters=[adapter]), adapter


def progress_bar(fraction: float, message: str, width: int = 30) -> None:
    filled = int(round(width * max(0.0, min(1.0, fraction))))
    end = "\n" if fraction >= 1.0 else ""
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%} {message:<48}", end=end, file=sys.stderr, flush=True)


def table(rows: list[dict]) -> str:
    def cell(fmt: str, v) -> str:
        return "-" if v is None else fmt.format(v)

    lines = ["  ".join(f"{title:>8}" for _, title, _ in TABLE)]
    lines += ["  ".join(f"{cell(fmt, r.get(key)):>8}" for key, _, fmt in TABLE) for r in rows]
    return "\n".join(lines)


def write_outputs(out: Path, result: SweepResult, figures: dict | None = None) -> list[Path]:
    """JSON rows, CSV rows, per-sample JSON and the four PNG plots (`figures`, else built here); the paths written."""
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


def run(args: argparse.Namespace) -> int:
    """Run the sweep described by `args`; 0 on success, 2 on bad input, 130 when interrupted."""
    from playground.tradeoff.plots import overoptimisation_warning

    try:
        out = Path(args.out)
        if out.suffix.lower() != ".json":
            raise InputError(f"out must end in .json; got {args.out!r}")
        precheck(settings_from_args(args, args.adapter or ""))  # bad input fails before the model loads
        pg, adapter = load_playground(args.adapter)
        result = run_sweep(pg, settings_from_args(args, adapter), progress=progress_bar)
        paths = write_outputs(out, result)
    except KeyboardInterrupt:
        print("\nerror: interrupted; nothing written", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {message}", file=sys.stderr)
        return 2
    s = result.settings
    print(f"adapter {adapter} (β_train {s['beta_train']:g}), judge {s['judge']}, held-out {s['heldout_judge']}, "
          f"{len(s['prompts'])} prompts × {s['samples']} samples × {s['max_new_tokens']} tokens, seed {s['seed']}, "
          f"{result.wall_s:.1f} s")
    print(table(result.rows))
    warning = overoptimisation_warning(result.rows, s["judge"], s["heldout_judge"])
    if warning:
        print(warning)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
