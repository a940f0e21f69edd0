"""`python -m playground probe`: the known limits of preference tuning, measured against λ (KL strength).

    python -m playground probe --list
    python -m playground probe answers_question --adapter upbeat-b0.1 --lambdas 0,0.5,1,2,4 --samples 2 \\
        --temperature 0.7 --max-new-tokens 64 --seed 0 --out runs/answers_question.json

Decodes every (prompt, λ, sample) row of the probe in one batch, measures, prints the table (estimates with
95% intervals bootstrapped over prompts, and the change vs the reference λ) and the findings, and writes the
JSON (`--out`), a CSV and a PNG plot of the metrics vs λ beside it. A progress bar goes to stderr. Bad input:
one `error: ...` line on stderr, exit status 2, before any model loads. `--limit N` keeps the first N prompts
of each prompt set (a quick run). `judge_bias` decodes nothing and loads no language model.
`--ray ADDRESS|auto|local` decodes the rows on a Ray cluster (prompts sharded over actors, each row at its own
seed): the same answers and table as without it (docs/distributed.md).
"""
from __future__ import annotations

import argparse
import textwrap
import time

from playground import registry
from playground.cli.out import add_out_arguments, check_out
from playground.cli.sweep import pick_adapter, progress_bar
from playground.distributed.options import add_ray_arguments, ray_options
from playground.probes.generation import DEFAULT_LAMBDAS, estimate, probe_settings, run_on_playground, stages
from playground.probes.registry import PROBES, get_probe
from playground.settings.request import DEFAULT_DECODE
from playground.settings.validation import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `probe` sub-command."""
    p = subparsers.add_parser("probe", help="behaviour probes vs λ: on-topic answers, judge bias, made-up answers, "
                              "sycophancy, language, refusals", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", default=None, help=f"the probe: {', '.join(PROBES)}")
    p.add_argument("--list", action="store_true", help="list the probes, what each measures and which way is worse")
    p.add_argument("--adapter", default=None, help="registry adapter (default: the registry default, else the first installed)")
    p.add_argument("--lambdas", default=",".join(f"{v:g}" for v in DEFAULT_LAMBDAS),
                   help="comma-separated λ; 0 = base (the reference), 1 = tuned, > 1 = weaker KL")
    p.add_argument("--samples", default=2, help="samples per prompt per λ (more = steadier estimates, slower)")
    p.add_argument("--temperature", default=DEFAULT_DECODE.temperature, help="sampling temperature; 0 = greedy")
    p.add_argument("--max-new-tokens", default=64, help="answer length cap in tokens")
    p.add_argument("--seed", default=0, help="sample k uses seed + k, at every λ")
    p.add_argument("--limit", default=None, help="keep the first N prompts of each prompt set (a quick run)")
    add_out_arguments(p, "JSON output (.json); the CSV and PNG are written beside it")
    add_ray_arguments(p)  # --ray ADDRESS|auto|local: decode on a Ray cluster (playground/distributed)
    p.set_defaults(func=run)
    return p


def load_playground(adapter: str):
    """The Playground with just that adapter; tests replace this."""
    from playground.service import Playground

    return Playground.from_registry(adapters=[adapter])


def listing() -> str:
    lines = []
    for name, probe in PROBES.items():
        lines.append(f"{name:<18}{probe.title}")
        lines += textwrap.wrap(probe.description, 100, initial_indent=" " * 18, subsequent_indent=" " * 18)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Check everything once, then load the model, probe and write; 0 on success (errors: see cli.errors)."""
    if args.list:
        print(listing())
        return 0
    if args.name is None:
        raise InputError(f"probe: name a probe ({', '.join(PROBES)}) or use --list")
    if args.name not in PROBES:  # before --out and the adapter: the probe is the first thing named
        raise InputError(f"unknown probe {args.name!r}; available: {', '.join(PROBES)}")
    out = check_out(args.out, args.mkdir)  # before anything loads or decodes
    ray = ray_options(args)
    adapter = pick_adapter(args.adapter)
    name, s = probe_settings({adapter: registry.get_adapter(adapter)}, probe=args.name, adapter=adapter,
                             lambdas=args.lambdas, samples=args.samples, temperature=args.temperature,
                             max_new_tokens=args.max_new_tokens, seed=args.seed, limit=args.limit)
    probe = get_probe(name)
    print(estimate(name, s).replace("**", ""))
    from playground.probes.base import ProbeContext, run_probe
    from playground.probes.outputs import figure, text_table, write_outputs

    if probe.rows(s) and ray is not None:  # the same answers, decoded by engines on a Ray cluster
        from playground.distributed import jobs, specs

        done = jobs.ray_probe(specs.registry_spec(adapter), name, s, ray, progress=progress_bar,
                                    ctx=ProbeContext(adapter_judge=registry.get_adapter(adapter).judge))
        result, answers, wall = done.result, done.answers, done.wall_s
    elif probe.rows(s):
        done = run_on_playground(load_playground(adapter), name, s, progress=progress_bar)
        result, answers, wall = done.result, done.answers, done.wall_s
    else:  # nothing to decode (judge bias): the judges alone, no language model
        start = time.perf_counter()
        result = run_probe(probe, s, lambda rows: [], ProbeContext(adapter_judge=registry.get_adapter(adapter).judge))
        answers, wall = 0, time.perf_counter() - start
        progress_bar(1.0, "done")
    beta = registry.get_adapter(adapter).beta_train
    paths = write_outputs(out, result, figure(result), {"adapter": adapter, "beta_train": beta, "answers": answers,
                                                        "wall_s": wall, "stages": stages(probe)})
    if answers:
        print(f"{probe.title} — adapter {adapter} (β_train {beta:g}), λ {', '.join(f'{v:g}' for v in s.lambdas)}, "
              f"{s.samples} samples, T {s.temperature:g}, ≤ {s.max_new_tokens} tokens, seed {s.seed}"
              f"{f', first {s.limit} prompts per set' if s.limit else ''}: {answers} answers in {wall:.1f} s")
    else:
        print(f"{probe.title} — judges {', '.join(sorted({r.group for r in result.rows}))}"
              f"{f', first {s.limit} pairs per set' if s.limit else ''}: {wall:.1f} s")
    print(text_table(result))
    for line in result.findings:
        print("- " + line)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
