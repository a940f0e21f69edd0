"""`python -m playground generate` (one prompt, three columns) and `python -m playground adapters`."""
from __future__ import annotations

import argparse
import json
import sys

from playground import registry
from playground.settings.request import COLUMNS, DEFAULT_DECODE, MODES
from playground.settings.validation import InputError, cfg_guidance, check_prompt, decode_settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="answer one prompt with the base, realigned and tuned models")
    p.add_argument("--prompt", required=True, help="the user message (plain text; special tokens stay text)")
    p.add_argument("--adapter", default=None, help="registry adapter name (default: the registry's default)")
    p.add_argument("--base", default=None, help="registry base model name")
    knob = p.add_mutually_exclusive_group()
    knob.add_argument("--kl-strength", default=None, help="β; higher = closer to the base model")
    knob.add_argument("--lambda", dest="lam", default=None, help="λ = β_train/β; 0 = base, 1 = tuned (default 1)")
    p.add_argument("--mode", default="logits", choices=MODES, help="logits = DeRa mix; weights = LoRA × λ")
    p.add_argument("--temperature", default=DEFAULT_DECODE.temperature, help="higher = more diverse; 0 = greedy")
    p.add_argument("--top-p", default=DEFAULT_DECODE.top_p, help="lower = safer; 1 = no truncation")
    p.add_argument("--max-new-tokens", default=DEFAULT_DECODE.max_new_tokens, help="answer length cap")
    p.add_argument("--seed", default=DEFAULT_DECODE.seed, help="same seed + settings = same text")
    p.add_argument("--cfg-scale", default=1.0, help="prompt guidance γ of the realigned column: ℓ_uncond + γ(ℓ_cond − ℓ_uncond); "
                   "1 = off, higher = follows the prompt more, 0 = ignores it")
    p.add_argument("--negative-prompt", default="", help="what the unconditional branch reads instead of the prompt (default: an empty user turn)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_generate)
    a = sub.add_parser("adapters", help="list the registry's adapters with β_train and judge")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_adapters)


def _text_arg(name: str, value: str) -> str:
    """Command-line text that arrived as undecodable bytes (surrogateescape) is refused, not crashed on."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{name} is not valid UTF-8 text") from None
    return value


def cmd_generate(args: argparse.Namespace) -> int:
    from playground.service import Playground

    base = args.base or registry.DEFAULT_BASE
    registry.get_base(base)
    adapter = registry.get_adapter(args.adapter or registry.DEFAULT_ADAPTER)
    prompt = check_prompt(_text_arg("prompt", args.prompt))
    lam = 1.0 if args.kl_strength is None and args.lam is None else args.lam  # default: the tuned model as trained
    # Checked once, before any model loads; the card's β_train turns β into λ.
    d = decode_settings(lam=lam, kl_strength=args.kl_strength, beta_train=adapter.beta_train, mode=args.mode,
                        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed)
    gamma, negative = cfg_guidance(args.cfg_scale, _text_arg("negative-prompt", args.negative_prompt))
    pg = Playground.from_registry(base, adapters=[adapter.name])
    turn = pg.turn(prompt, adapter.name, lam=d.lam, mode=d.mode, temperature=d.temperature, top_p=d.top_p,
                   max_new_tokens=d.max_new_tokens, seed=d.seed, cfg_scale=gamma, negative_prompt=negative)
    answers = pg.side_by_side(turn)
    if args.json:
        out = {c: answers[c].to_dict() for c in COLUMNS}
        out["settings"] = {"adapter": adapter.name, "base": base, "lambda": d.lam, "kl_strength": turn.kl_strength,
                           "beta_train": turn.beta_train, "mode": d.mode, "temperature": d.temperature, "top_p": d.top_p,
                           "max_new_tokens": d.max_new_tokens, "seed": d.seed, "prompt": prompt,
                           "cfg_scale": gamma, "negative_prompt": negative}
        print(json.dumps(out, indent=2, ensure_ascii=False, default=str))
        return 0
    for c in COLUMNS:
        a = answers[c]
        cut = " · cut at the token limit" if a.truncated else ""
        print(f"== {c} (λ={a.settings['lambda']:.3g}) · {a.tokens} tokens · KL {a.kl_to_base:.3f} · reward {a.reward:.3f}{cut}")
        print(a.text, end="\n\n")
    return 0


def cmd_adapters(args: argparse.Namespace) -> int:
    rows = []
    for a in registry.ADAPTERS.values():
        row = {"name": a.name, "base": a.base, "description": a.description, "installed": a.installed, "path": str(a.path)}
        if a.installed:
            row |= {"beta_train": a.beta_train, "judge": a.judge}
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:16} β_train={r.get('beta_train', '-')!s:6} judge={r.get('judge', '-'):8} {r['description']}",
                  file=sys.stdout)
    return 0
