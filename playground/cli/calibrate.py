"""`python -m playground calibrate`: which λ of adapter A reproduces adapter B (the DeRa check).

Samples answers from adapter B (λ = 1, temperature 1), teacher-forces them under the λ-mix of adapter A on a
λ grid, and finds the λ minimising the mean per-token KL(π_B ‖ π_λ), with a 95% interval from a bootstrap
over prompts. Prints the nominal λ = β_A/β_B beside the measured one; writes the JSON (`--out`) and the
figure (same stem, .png). `--record` also stores the result in adapter A's card.json under "calibration".
Prompts: the first `--prompts` held-out prompts of models/prompts/eval.txt (or `--prompts-file`).
Bad input: one `error: ...` line on stderr, exit status 2, before any model loads.
`--ray ADDRESS|auto|local` samples and teacher-forces on a Ray cluster (prompts sharded over actors, answer k of
a prompt at seed + k): the same result as without it (docs/distributed.md).
"""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from playground import registry
from playground.settings.request import EVAL_PROMPTS, LIMITS
from playground.tradeoff.calibrate import CALIBRATION, calibration_figure, calibration_settings, run_calibration, verdict
from playground.tradeoff.outputs import read_prompt_file
from playground.cli.out import add_out_arguments, check_out
from playground.distributed.options import add_ray_arguments, ray_options
from playground.settings.validation import InputError, check_int


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `calibrate` sub-command."""
    p = subparsers.add_parser("calibrate", help="measure the λ of adapter A that best reproduces adapter B (DeRa check)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adapter", required=True, help="A: the adapter whose λ-mix is fitted (e.g. upbeat-b0.1)")
    p.add_argument("--against", required=True, help="B: an adapter trained on the same pairs at another β (e.g. upbeat-b0.5)")
    p.add_argument("--prompts", default=CALIBRATION.prompts,
                   help=f"how many held-out prompts (first N of eval.txt; more = tighter interval, slower; ≤ {LIMITS.max_sweep_prompts})")
    p.add_argument("--prompts-file", default=None, help="text file, one prompt per line, instead of eval.txt")
    p.add_argument("--samples", default=CALIBRATION.samples, help="answers sampled from B per prompt (more = steadier, slower)")
    p.add_argument("--max-new-tokens", default=CALIBRATION.max_new_tokens, help="answer length cap in tokens")
    p.add_argument("--seed", default=0, help="sample k uses seed + k; also seeds the bootstrap")
    p.add_argument("--lambda-max", default=None, help="end of the λ grid (default max(2, 2 × nominal λ))")
    p.add_argument("--lambda-points", default=None, help=f"λ grid points (default {CALIBRATION.points})")
    p.add_argument("--record", action="store_true", help="store the result in adapter A's card.json under \"calibration\"")
    add_out_arguments(p, "JSON output (.json); the figure is written beside it (.png)", required=True)
    add_ray_arguments(p)  # --ray ADDRESS|auto|local: decode on a Ray cluster (playground/distributed)
    p.set_defaults(func=run)
    return p


def check_installed(name: str, what: str) -> str:
    registry.get_adapter(name)  # KeyError naming the known adapters
    installed = [a.name for a in registry.installed_adapters()]
    if name not in installed:
        raise InputError(f"{what}: adapter {name!r} is not installed; installed: {', '.join(installed) or '(none)'}")
    return name


def load_playground(adapters: list[str]):
    """The Playground with just these adapters; tests replace this."""
    from playground.service import Playground

    return Playground.from_registry(adapters=adapters)


def _prompts(args: argparse.Namespace) -> list[str]:
    n = check_int("prompts", args.prompts, 2, LIMITS.max_sweep_prompts)
    source = args.prompts_file or EVAL_PROMPTS
    prompts = read_prompt_file(source, "prompts-file" if args.prompts_file else "eval prompts")
    if len(prompts) < n:
        raise InputError(f"prompts: {n} asked for; {Path(source).name} holds {len(prompts)}")
    return prompts[:n]


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run (recorded in the card)."""
    parts = ["python", "-m", "playground", "calibrate", "--adapter", args.adapter, "--against", args.against,
             "--prompts", str(args.prompts), "--samples", str(args.samples), "--max-new-tokens", str(args.max_new_tokens),
             "--seed", str(args.seed)]
    if args.prompts_file:
        parts += ["--prompts-file", args.prompts_file]
    if args.lambda_max is not None:
        parts += ["--lambda-max", str(args.lambda_max)]
    if args.lambda_points is not None:
        parts += ["--lambda-points", str(args.lambda_points)]
    return shlex.join([*parts, "--record", "--out", args.out] if args.record else [*parts, "--out", args.out])


def record_in_card(card_file: Path, result, command: str) -> None:
    """card["calibration"][B] = best λ with its interval, nominal λ, the run's size and the command."""
    card = json.loads(card_file.read_text(encoding="utf-8"))
    card.setdefault("calibration", {})[result.against] = {
        "against": result.against, "beta_against": result.beta_b, "nominal_lambda": round(result.nominal_lambda, 6),
        "best_lambda": result.best_lambda, "best_lambda_ci95": [result.best_lambda_lo, result.best_lambda_hi],
        "reached_optimum": result.reached, "kl_at_best": result.kl_at["best"], "kl_at_nominal": result.kl_at["nominal"],
        "kl_at_base": result.kl_at["base"], "explained": result.explained, "prompts": result.n_prompts,
        "samples": result.samples, "tokens": result.tokens, "prompt_source": "models/prompts/eval.txt (held out)",
        "command": command,
    }
    tmp = card_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(card_file)


def run(args: argparse.Namespace) -> int:
    """Check everything once, then load the model, calibrate and write; 0 on success (errors: see cli.errors)."""
    from playground.cli.sweep import progress_bar

    out = check_out(args.out, args.mkdir)  # before anything loads or decodes
    ray = ray_options(args)
    a = check_installed(args.adapter, "adapter")
    b = check_installed(args.against, "against")
    s = calibration_settings({n: registry.get_adapter(n) for n in {a, b}}, adapter=a, against=b, prompts=_prompts(args),
                             samples=args.samples, max_new_tokens=args.max_new_tokens, seed=args.seed,
                             lambda_max=args.lambda_max, lambda_points=args.lambda_points)
    judges = {registry.get_adapter(n).judge for n in (a, b)}
    if len(judges) > 1:
        print(f"note: {a} and {b} learned different judges ({', '.join(sorted(judges))}); "
              f"λ = β_A/β_B assumes the same pairs")
    if ray is not None:  # the same result, sampled and teacher-forced by engines on a Ray cluster
        from playground.distributed import jobs, specs

        result = jobs.ray_calibration(specs.registry_spec(a, b), s, ray, progress=progress_bar)
    else:
        result = run_calibration(load_playground([a, b]), s, progress=progress_bar)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    png = out.with_suffix(".png")
    calibration_figure(result).savefig(png)
    print(f"{a} (β {s.beta_a:g}) vs {b} (β {s.beta_b:g}): {result.n_prompts} prompts × {s.samples} answers, "
          f"{result.tokens} tokens, {result.wall_s:.1f} s")
    print(f"nominal λ = {result.nominal_lambda:.3g}   best λ = {result.best_lambda:.3g} "
          f"[{result.best_lambda_lo:.3g}, {result.best_lambda_hi:.3g}] (95%, bootstrap over prompts)")
    k = result.kl_at
    print(f"KL(π_B ‖ π_λ) nats/token: λ=0 {k['base'][0]:.4f}, nominal {k['nominal'][0]:.4f}, λ=1 {k['tuned'][0]:.4f}, "
          f"best {k['best'][0]:.4f} (the mix reproduces {result.explained:.0%} of B's KL to the base)")
    print(verdict(result))
    written = [out, png]
    if args.record:
        card = registry.get_adapter(a).path / "card.json"
        record_in_card(card, result, command_line(args))
        written.append(card)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
