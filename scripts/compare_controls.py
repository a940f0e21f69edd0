"""A small measured comparison of every control on a shipped adapter: λ mixing, weight scaling, best-of-n and prompt
guidance on the same held-out prompts, samples and seeds; writes the rows (JSON/CSV), the every-control figures and a
Markdown table of the key points with 95% intervals clustered by prompt.

    nice -n 10 .venv/bin/python scripts/compare_controls.py --prompts 6 --out docs/controls/run.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playground.judges.judges import available_judges  # noqa: E402
from playground.service import Playground  # noqa: E402
from playground.tradeoff.outputs import default_prompts, split_prompts, write_outputs  # noqa: E402
from playground.settings.request import EVAL_PROMPTS  # noqa: E402
from playground.tradeoff.plots import cross_pareto, knob_label  # noqa: E402
from playground.tradeoff.sweep import run_controls  # noqa: E402
from playground.settings.validation import sweep_settings  # noqa: E402


def markdown(rows: list[dict]) -> str:
    front = set(cross_pareto(rows, "kl"))
    lines = ["| control | setting | reward [95% CI] | vs reference | held-out [95% CI] | vs reference | KL nats/answer [95% CI] "
             "| BoN bound | meaning diversity [95% CI] | vs reference | compute (token-rows) | Pareto (reward–KL) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows):
        bound = f"{r['kl_bound']:.2f}" if r.get("kl_bound") is not None else "–"
        lines.append(f"| {r['control']} | {knob_label(r)} | {r['reward_mean']:+.3f} [{r['reward_lo']:+.3f}, {r['reward_hi']:+.3f}] "
                     f"| {r['reward_vs_base']} | {r['heldout_reward_mean']:.3f} [{r['heldout_reward_lo']:.3f}, "
                     f"{r['heldout_reward_hi']:.3f}] | {r['heldout_vs_base']} | {r['kl_seq']:.2f} [{r['kl_seq_lo']:.2f}, "
                     f"{r['kl_seq_hi']:.2f}] | {bound} | {r['semantic_diversity']:.3f} [{r['semantic_diversity_lo']:.3f}, "
                     f"{r['semantic_diversity_hi']:.3f}] | {r['diversity_vs_base']} | {r['cost_tokens']:.0f} | "
                     f"{'yes' if i in front else ''} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adapter", default="upbeat-b0.1")
    p.add_argument("--prompts", type=int, default=6, help="first N held-out prompts (models/prompts/eval.txt)")
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", default="1")
    p.add_argument("--lambdas", default="0,1,2")
    p.add_argument("--n", dest="ns", default="1,2,4")
    p.add_argument("--gammas", default="1,2,3")
    p.add_argument("--controls", default="dera,weights,bon,cfg", help="comma-separated, in order")
    p.add_argument("--out", default="docs/controls/run.json")
    a = p.parse_args()
    prompts = (split_prompts(EVAL_PROMPTS.read_text(encoding="utf-8")) if EVAL_PROMPTS.is_file() else default_prompts())[:a.prompts]
    pg = Playground.from_registry(adapters=[a.adapter])
    common = dict(adapter=a.adapter, prompts=prompts, temperatures=a.temperature, samples=a.samples,
                  max_new_tokens=a.max_new_tokens, seed=0)
    judges = available_judges()
    knobs = {"dera": {"lambdas": a.lambdas}, "weights": {"lambdas": a.lambdas}, "bon": {"ns": a.ns}, "cfg": {"gammas": a.gammas}}
    chosen = [sweep_settings(pg.adapters, judges, control=c, **knobs[c], **common) for c in a.controls.split(",")]
    result = run_controls(pg, chosen, progress=lambda f, m: print(f"\r{f:4.0%} {m:<60}", end="", file=sys.stderr, flush=True))
    out = Path(a.out)
    paths = write_outputs(out, result)
    table = markdown(result.rows)
    out.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
    print(f"\n{len(prompts)} prompts × {a.samples} samples × {a.max_new_tokens} tokens, T = {a.temperature}, adapter {a.adapter}, "
          f"judge {chosen[0].judge}, held-out {chosen[0].heldout_judge}, weights {pg.engine.weights}, {result.wall_s:.0f} s")
    print(table)
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
