"""`python -m playground sweep`: the trade-off explorer from the command line.

Sweeps λ (or the KL strength β) × temperature on one adapter, and writes the per-setting rows as JSON
(`--out`, a list of rows), CSV (same stem), the per-sample texts (`<stem>_samples.json`) and four PNG
plots (`<stem>_frontier.png`, `_diversity.png`, `_metrics.png`, `_overopt.png`). A progress bar goes to
stderr and a table to stdout. Bad input: one `error: ...` line on stderr, exit status 2, before any
model loads (the settings are checked once, against the registry's adapter cards).

`--control` puts the other controls on the same rows: `--control bon --n 1,4` (best-of-n of the policy at
one `--lambdas` value, default 0 = base; rows carry `kl_bound` = log n − (n−1)/n and the compute per answer),
`--control cfg --gammas 1,2` (prompt guidance), `--control weights` (= `--mode weights`).
"""
from __future__ import annotations

import argparse
import sys

from playground import registry
from playground.cli.out import add_out_arguments, check_out
from playground.distributed.options import add_ray_arguments, ray_options
from playground.settings.request import CONTROLS, MODES, SWEEP
from playground.tradeoff.outputs import default_prompts, read_prompt_file, table, write_outputs
from playground.settings.validation import InputError, sweep_settings


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
                      help=f"comma-separated λ (default {','.join(map(str, SWEEP.lambdas))}); 0 = base, 1 = tuned")
    knob.add_argument("--kl-strengths", default=None,
                      help="comma-separated KL strengths β instead (higher = closer to base; inf = base)")
    p.add_argument("--temperatures", default=",".join(map(str, SWEEP.temperatures)),
                   help="comma-separated; higher = more diverse, 0 = greedy")
    p.add_argument("--samples", default=SWEEP.samples, help="samples per prompt per setting (more = steadier estimates)")
    p.add_argument("--max-new-tokens", default=SWEEP.max_new_tokens, help="answer length cap in tokens")
    p.add_argument("--top-p", default=SWEEP.top_p, help="nucleus sampling; 1 = none")
    p.add_argument("--seed", default=0, help="sample k uses seed + k")
    p.add_argument("--mode", default="logits", choices=MODES, help="logits = DeRa mix (default); weights = LoRA delta × λ")
    p.add_argument("--control", default=None, choices=CONTROLS,
                   help="which control varies: dera (λ mix, default), weights (LoRA × λ), bon (best-of-n: --n), "
                        "cfg (prompt guidance: --gammas); bon and cfg wrap the policy at one --lambdas value (default 0, base)")
    p.add_argument("--n", dest="ns", default=None, help="bon: comma-separated n (candidates per kept answer), e.g. 1,2,4,8")
    p.add_argument("--gammas", default=None, help="cfg: comma-separated guidance scales γ; 1 = plain model, 0 = ignores the prompt")
    p.add_argument("--negative-prompt", default="", help="cfg: what the unconditional branch reads (default: an empty user turn)")
    p.add_argument("--judge", default=None, help="training (proxy) judge (default: the adapter's own)")
    p.add_argument("--heldout-judge", default=None, help="held-out judge (default: on_topic, 'does it answer?')")
    add_out_arguments(p, "JSON output (.json); CSV, samples and PNGs are written beside it", required=True)
    add_ray_arguments(p)  # --ray ADDRESS|auto|local: decode on a Ray cluster (playground/distributed)
    p.set_defaults(func=run)
    return p


def pick_adapter(name: str | None) -> str:
    """The named adapter if installed, else the registry default, else the first installed one."""
    installed = [a.name for a in registry.installed_adapters(registry.DEFAULT_BASE)]
    if name is None:
        if not installed:
            raise InputError(f"no adapter is installed in {registry.ADAPTER_DIR}; see `python -m playground adapters`")
        return registry.default_adapter(installed)
    registry.get_adapter(name)
    if name not in installed:
        raise InputError(f"adapter {name!r} is not installed; installed: {', '.join(installed) or '(none)'}")
    return name


def load_playground(adapter: str):
    """The Playground with just that adapter; tests replace this."""
    from playground.service import Playground

    return Playground.from_registry(adapters=[adapter])


def progress_bar(fraction: float, message: str, width: int = 30) -> None:
    filled = int(round(width * max(0.0, min(1.0, fraction))))
    end = "\n" if fraction >= 1.0 else ""
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%} {message:<48}", end=end, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Check everything once, then load the model, sweep and write; 0 on success (errors: see cli.errors)."""
    from playground.judges.judges import available_judges
    from playground.tradeoff.plots import overoptimisation_warning
    from playground.tradeoff.sweep import run_sweep

    out = check_out(args.out, args.mkdir)  # before anything loads or decodes
    ray = ray_options(args)
    prompts = list(args.prompt) if args.prompt else read_prompt_file(args.prompts_file) if args.prompts_file else default_prompts()
    name = pick_adapter(args.adapter)
    s = sweep_settings({name: registry.get_adapter(name)}, available_judges(), adapter=name, prompts=prompts,
                       lambdas=args.lambdas, kl_strengths=args.kl_strengths, temperatures=args.temperatures,
                       samples=args.samples, max_new_tokens=args.max_new_tokens, top_p=args.top_p, seed=args.seed,
                       mode=args.mode, judge=args.judge, heldout_judge=args.heldout_judge, control=args.control,
                       ns=args.ns, gammas=args.gammas, negative_prompt=args.negative_prompt)
    if ray is not None:  # the same rows, decoded by engines on a Ray cluster
        from playground.distributed import jobs, specs

        result = jobs.ray_sweep(specs.registry_spec(name), s, ray, progress=progress_bar)
    else:
        result = run_sweep(load_playground(name), s, progress=progress_bar)
    paths = write_outputs(out, result)
    print(f"control {s.control}, adapter {name} (β_train {s.beta_train:g}), judge {s.judge}, held-out {s.heldout_judge}, "
          f"{len(s.prompts)} prompts × {s.samples} samples × {s.decode.max_new_tokens} tokens, seed {s.decode.seed}, "
          f"{result.wall_s:.1f} s")
    print(table(result.rows))
    warning = overoptimisation_warning(result.rows, s.judge, s.heldout_judge)
    print(warning or "No reward hacking detected: no setting raises the proxy while the held-out judge falls beyond noise.")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
