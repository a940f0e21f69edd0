"""Held-out report of every installed adapter, with uncertainty: does it beat the base model, and on which judges?

For each adapter: the held-out prompts (models/prompts/eval.txt) answered at λ = 0 (base) and λ = 1 (tuned), the
same seeds for both, decoded in one batch by the playground's engine; every answer scored by every built-in judge
(upbeat = positive tone, concise = short and on-topic, on_topic = prompt–answer similarity); plus boilerplate share,
length and meaning diversity. Each change tuned − base is a paired difference per prompt with a 95% interval from a
bootstrap over prompts ("within noise" when it covers zero). Writes docs/adapter_report.json and a "held_out" entry in
each adapter's card.json.

    python models/report_adapters.py [--samples 2] [--max-new-tokens 64] [--limit N] [--ray ADDRESS|auto|local]

`--ray` decodes on a Ray cluster (prompts sharded over actors that each load the base and every adapter once):
the same answers and report as without it (docs/distributed.md).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np

from playground import registry
from playground.judges.judges import available_judges
from playground.settings.paths import REPO_ROOT
from playground.settings.request import EVAL_PROMPTS, LIMITS
from playground.intervals import grouped_difference, noise_label
from playground.tradeoff.metrics import is_boilerplate, semantic_diversity
from playground.tradeoff.outputs import split_prompts
from playground.tradeoff.sweep import decode_samples, grid
from playground.settings.validation import sweep_settings

OUT = REPO_ROOT / "docs" / "adapter_report.json"


def report(pg, name: str, prompts: list[str], samples: int, max_new_tokens: int, decode=None) -> dict:
    """`decode` replaces the sweep's `decode_samples` (same arguments): the Ray runner's decodes on a cluster."""
    judges = available_judges()
    s = sweep_settings(pg.adapters, judges, adapter=name, prompts=prompts, lambdas=[0.0, 1.0], temperatures=[0.7],
                       samples=samples, max_new_tokens=max_new_tokens, top_p=0.95,
                       limits=replace(LIMITS, max_sweep_prompts=max(len(prompts), 1), max_job_seconds=3600.0))  # offline
    keys = grid(s)
    answers = (decode or decode_samples)(pg, s, keys, lambda f, m: None, lambda: False)
    rows = [{"prompt": x["prompt_index"], "lam": x["lambda"], "text": x["text"], "tokens": len(x["token_ids"]),
             "kl": x["kl_mean"]} for x in answers]
    for j in judges:
        scores = pg.judge(j).score([prompts[r["prompt"]] for r in rows], [r["text"] for r in rows])
        for r, v in zip(rows, scores):
            r[j] = float(v)
    for r in rows:
        r["boilerplate"] = float(is_boilerplate(r["text"]))
    out = {"adapter": name, "judge": pg.adapters[name].judge, "prompts": len(prompts), "samples": samples,
           "max_new_tokens": max_new_tokens, "temperature": 0.7, "metrics": {}}
    per_prompt_div = {lam: {i: semantic_diversity([r["text"] for r in rows if r["prompt"] == i and r["lam"] == lam])
                            for i in range(len(prompts))} for lam in (0.0, 1.0)}
    metrics = [*judges, "boilerplate", "tokens", "kl"]
    for m in metrics:
        base = [(r["prompt"], r[m]) for r in rows if r["lam"] == 0.0]
        tuned = [(r["prompt"], r[m]) for r in rows if r["lam"] == 1.0]
        diff = grouped_difference(base, tuned)
        out["metrics"][m] = {"base": float(np.mean([v for _, v in base])), "tuned": float(np.mean([v for _, v in tuned])),
                             "change": diff.estimate, "low": diff.low, "high": diff.high, "verdict": noise_label(diff)}
    diff = grouped_difference(list(per_prompt_div[0.0].items()), list(per_prompt_div[1.0].items()))
    out["metrics"]["meaning_diversity"] = {"base": float(np.mean(list(per_prompt_div[0.0].values()))),
                                           "tuned": float(np.mean(list(per_prompt_div[1.0].values()))),
                                           "change": diff.estimate, "low": diff.low, "high": diff.high,
                                           "verdict": noise_label(diff)}
    return out


def main(argv: list[str] | None = None) -> int:
    from contextlib import nullcontext

    from playground.distributed.options import add_ray_arguments, ray_options
    from playground.settings.validation import InputError

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=2, help="answers per prompt per model (≥ 2 for diversity)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--limit", type=int, default=None, help="first N held-out prompts")
    p.add_argument("--adapters", default=None, help="comma-separated (default: every installed adapter)")
    add_ray_arguments(p)  # --ray ADDRESS|auto|local: decode on a Ray cluster (playground/distributed)
    args = p.parse_args(argv)
    try:
        ray = ray_options(args)
    except InputError as err:
        p.error(str(err))
    prompts = split_prompts(EVAL_PROMPTS.read_text(encoding="utf-8"))[: args.limit]
    names = args.adapters.split(",") if args.adapters else [a.name for a in registry.installed_adapters(registry.DEFAULT_BASE)]
    if ray is not None:  # the driver judges and measures; the actors hold the model and every adapter, once each
        from playground.distributed.jobs import JudgeHost, RayDecoder
        from playground.distributed.specs import registry_spec

        pg, decoder = JudgeHost({n: registry.get_adapter(n) for n in names}), RayDecoder(registry_spec(*names), ray)
    else:
        from playground.service import Playground

        pg, decoder = Playground.from_registry(adapters=names), None
    with decoder or nullcontext():
        return _report_all(pg, names, prompts, args, decoder)


def _report_all(pg, names: list[str], prompts: list[str], args: argparse.Namespace, decoder) -> int:
    results = []
    for name in names:
        start = time.perf_counter()
        r = report(pg, name, prompts, args.samples, args.max_new_tokens, decode=decoder)
        r["wall_s"] = round(time.perf_counter() - start, 1)
        results.append(r)
        card_file = registry.get_adapter(name).path / "card.json"
        card = json.loads(card_file.read_text(encoding="utf-8"))
        card["held_out"] = r | {"command": "python models/report_adapters.py", "intervals": "95% bootstrap over prompts"}
        card_file.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{name} ({r['wall_s']} s):")
        for m, v in r["metrics"].items():
            print(f"  {m:18} base {v['base']:+.3f} → tuned {v['tuned']:+.3f}  change {v['change']:+.3f} "
                  f"[{v['low']:+.3f}, {v['high']:+.3f}]  {v['verdict']}")
    earlier = json.loads(OUT.read_text(encoding="utf-8")) if OUT.is_file() else []
    done = {r["adapter"] for r in results}
    merged = [r for r in earlier if r.get("adapter") not in done] + results  # other adapters' reports are kept
    OUT.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
