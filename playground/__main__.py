"""Command line: `python -m playground {generate,adapters,sweep,guidance} ...`.

Bad input prints one line `error: ...` on stderr and exits with code 2; nothing else raises past here.
"""
from __future__ import annotations

import argparse
import json
import sys

from playground.lm.loading import ModelLoadError
from playground.settings import DEFAULT_DECODE
from playground.validation import InputError, check_decode, check_prompt, lambda_from

USER_ERRORS = (InputError, ModelLoadError, KeyError, FileNotFoundError)


def _generate_parser(sub) -> None:
    p = sub.add_parser("generate", help="answer one prompt with the base, realigned and tuned models")
    p.add_argument("--prompt", required=True)
    p.add_argument("--adapter", default=None, help="registry adapter name (default: the registry's default)")
    p.add_argument("--base", default=None, help="registry base model name")
    knob = p.add_mutually_exclusive_group()
    knob.add_argument("--kl-strength", type=float, default=None, help="β; higher = closer to the base model")
    knob.add_argument("--lambda", dest="lam", type=float, default=None, help="λ = β_train/β; 0 = base, 1 = tuned")
    p.add_argument("--mode", default="logits", choices=["logits", "weights"])
    p.add_argument("--temperature", type=float, default=DEFAULT_DECODE.temperature, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=DEFAULT_DECODE.top_p)
    p.add_argument("--max-new-tokens", type=int, default=DEFAULT_DECODE.max_new_tokens)
    p.add_argument("--seed", type=int, default=DEFAULT_DECODE.seed)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_generate(args) -> int:
    from playground import registry
    from playground.service import COLUMNS, Playground

    base = args.base or registry.DEFAULT_BASE
    registry.get_base(base)
    adapter = args.adapter or registry.DEFAULT_ADAPTER
    kl, lam = args.kl_strength, args.lam
    if kl is None and lam is None:
        lam = 1.0  # the tuned model as trained (β = β_train)
    # Cheap checks first, so bad input is answered before any model loads.
    check_prompt(args.prompt)
    check_decode(args.temperature, args.top_p, args.max_new_tokens, args.seed)
    entry = registry.get_adapter(adapter)
    lambda_from(kl, lam, 1.0 if lam is not None else entry.beta_train)  # λ's range needs no card
    pg = Playground.from_registry(base, adapters=[adapter])
    s = pg.settings(args.prompt, adapter, kl_strength=kl, lam=lam, mode=args.mode, temperature=args.temperature,
                    top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed)
    answers = pg.side_by_side(s)
    if args.json:
        out = {c: answers[c].to_dict() for c in COLUMNS}
        out["settings"] = {"adapter": adapter, "base": base, "lambda": s.lam, "kl_strength": s.kl_strength,
                           "beta_train": pg.adapters[adapter].beta_train, "mode": s.mode, "temperature": s.temperature,
                           "top_p": s.top_p, "max_new_tokens": s.max_new_tokens, "seed": s.seed, "prompt": s.prompt}
        print(json.dumps(out, indent=2, ensure_ascii=False, default=str))
    else:
        for c in COLUMNS:
            a = answers[c]
            print(f"== {c} (λ={a.settings['lambda']:.3g}) · {a.tokens} tokens · KL {a.kl_to_base:.3f} · reward {a.reward:.3f}")
            print(a.text, end="\n\n")
    return 0


def cmd_adapters(args) -> int:
    from playground import registry

    rows = []
    for a in registry.ADAPTERS.values():
        installed = (a.path / "card.json").is_file()
        row = {"name": a.name, "base": a.base, "description": a.description, "installed": installed, "path": str(a.path)}
        if installed:
            row |= {"beta_train": a.beta_train, "judge": a.judge}
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:16} β_train={r.get('beta_train', '-')!s:6} judge={r.get('judge', '-'):8} {r['description']}")
    return 0


EXTRA_COMMANDS = {"sweep": "playground.cli.sweep", "guidance": "playground.cli.guidance"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """All sub-commands; the heavier ones (diffusers, plotting) are imported only when asked for."""
    parser = argparse.ArgumentParser(prog="python -m playground", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _generate_parser(sub)
    p = sub.add_parser("adapters", help="list the registry's adapters with β_train and judge")
    p.add_argument("--json", action="store_true")
    commands = {"generate": cmd_generate, "adapters": cmd_adapters}
    for name, module_name in EXTRA_COMMANDS.items():
        if command in commands:
            sub.add_parser(name, help=f"see `python -m playground {name} --help`")
            continue
        module = __import__(module_name, fromlist=["add_parser", "run"])
        module.add_parser(sub)
        commands[name] = module.run
    parser.set_defaults(_commands=commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    try:
        return int(args._commands[args.command](args) or 0)
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
