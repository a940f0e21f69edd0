"""Do the engine's numbers survive an independent float32 recomputation? Prints a table and writes JSON.

    flock /tmp/heavy.lock python benchmarks/fidelity.py [--prompts 16] [--tokens 64] --out benchmarks/fidelity.json

1. KL fidelity: the shipped model at the default dtype samples answers (T 0.7, top-p 0.95) for prompts ×
   λ {0.5, 1, 2} × adapters; plain transformers + peft in float32 then teacher-forces the same tokens and
   recomputes Σ_t KL(π_λ ‖ π_base). Reported: the ratio engine / reference per answer (median, p5, p95).
2. Greedy agreement: greedy answers (λ = 0 and λ = 1) at the default dtype vs float32 transformers/peft
   `generate`: share of identical answers and mean length of the common prefix.
3. Batch invariance: requests with mixed adapters, λ, modes, temperatures, lengths and prompts decoded in
   one batch (≥ 64 forward rows) vs each alone: share of bit-identical token sequences, at float32 and at
   the default dtype.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from playground.lm.request import Request
from playground.settings.request import DecodeSettings
from playground.service import Playground
from playground.settings.paths import REPO_ROOT

ADAPTERS = ("upbeat-b0.1", "upbeat-b0.5")
LAMBDAS = (0.5, 1.0, 2.0)


def eval_prompts(n: int) -> list[str]:
    lines = (REPO_ROOT / "models" / "prompts" / "eval.txt").read_text().splitlines()
    return [x.strip() for x in lines if x.strip()][:n]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


def reference_model(pg: Playground, int4_rounded: bool = False):
    """float32 transformers model with both adapters through peft (nothing from playground.lm's decoder).

    int4_rounded: every layer weight replaced by the weight torch's int4 kernel really multiplies by,
    (q − 8)·bf16(d) + bf16(m + 8d) from the GGUF's Q4_1 blocks (`Q4Weight.dequantize`), so the comparison
    isolates the int4 path's arithmetic from the rounding of its scale/zero pairs."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(pg.base.local_dir, dtype=torch.float32).eval()
    if int4_rounded:
        from playground.lm.int4 import read_gguf_q4_1
        from playground.lm.loading import gguf_of

        cfg, mods = base.config, dict(base.named_modules())
        with torch.no_grad():
            for name, q in read_gguf_q4_1(str(gguf_of(pg.base.local_dir)), cfg.num_attention_heads, cfg.num_key_value_heads).items():
                mods[name].weight.copy_(q.dequantize())
    model = PeftModel.from_pretrained(base, pg.adapters[ADAPTERS[0]].path, adapter_name=peft_name(ADAPTERS[0]))
    for name in ADAPTERS[1:]:
        model.load_adapter(pg.adapters[name].path, adapter_name=peft_name(name))
    return model.eval()


def peft_name(adapter: str) -> str:
    """peft module names cannot contain dots."""
    return adapter.replace(".", "_")


@torch.inference_mode()
def teacher_forced(ref, seqs: list[list[int]], adapter: str | None) -> torch.Tensor:
    """float32 logits [B, T, V] of right-padded sequences, with `adapter` (None = base model)."""
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
    if adapter is None:
        with ref.disable_adapter():
            return ref(input_ids=ids, attention_mask=mask).logits.float()
    ref.set_adapter(peft_name(adapter))
    return ref(input_ids=ids, attention_mask=mask).logits.float()


def sampled_entropy(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """H of top_p(softmax(ℓ / T)) per position [T] (written out here, not the engine's sampler)."""
    p = torch.softmax(logits / temperature, -1)
    sp, idx = p.sort(-1, descending=True)
    keep = (sp.cumsum(-1) - sp) < top_p  # mass strictly before a token < top_p: inside the nucleus
    sp = torch.where(keep, sp, torch.zeros_like(sp))
    sp = sp / sp.sum(-1, keepdim=True)
    return torch.special.entr(sp).sum(-1)


def kl_fidelity(pg: Playground, refs: dict, prompts: list[str], tokens: int) -> dict:
    """Per reference (name -> model): KL and entropy ratios engine / reference over the same sampled tokens."""
    found = {name: {"kl": [], "reported": [], "recomputed": [], "entropy": []} for name in refs}
    for adapter in ADAPTERS:
        reqs = [Request(pg.encode(p), adapter, DecodeSettings(lam=lam, temperature=0.7, top_p=0.95, max_new_tokens=tokens, seed=k))
                for k, p in enumerate(prompts) for lam in LAMBDAS]
        streams = pg.engine.generate(reqs)
        for i in range(0, len(reqs), len(LAMBDAS)):  # one prompt's λ samples per reference forward
            group = list(zip(reqs[i:i + len(LAMBDAS)], streams[i:i + len(LAMBDAS)]))
            seqs = [list(r.prompt_ids) + st.tokens[:-1] for r, st in group]
            for name, ref in refs.items():
                f = found[name]
                l_base, l_tuned = teacher_forced(ref, seqs, None), teacher_forced(ref, seqs, adapter)
                for j, (r, st) in enumerate(group):
                    start = len(r.prompt_ids) - 1
                    lb, lt = l_base[j, start:start + len(st.tokens)], l_tuned[j, start:start + len(st.tokens)]
                    l_mix = lb + r.settings.lam * (lt - lb)
                    lp_mix, lp_base = torch.log_softmax(l_mix, -1), torch.log_softmax(lb, -1)
                    kl = float((lp_mix.exp() * (lp_mix - lp_base)).sum())
                    ent = float(sampled_entropy(l_mix, r.settings.temperature, r.settings.top_p).mean())
                    if kl > 0:
                        f["kl"].append(st.kl_sum / kl)
                        f["reported"].append(st.kl_mean)
                        f["recomputed"].append(kl / len(st.tokens))
                    if ent > 0:
                        f["entropy"].append(st.entropy_mean / ent)
    out = {}
    for name, f in found.items():
        ratios, ent = f["kl"], f["entropy"]
        out[name] = {"n": len(ratios), "median": statistics.median(ratios), "p5": pct(ratios, 5), "p95": pct(ratios, 95),
                     "mean_reported_kl_per_token": statistics.fmean(f["reported"]),
                     "mean_reference_kl_per_token": statistics.fmean(f["recomputed"]),
                     "entropy_ratio": {"n": len(ent), "median": statistics.median(ent), "p5": pct(ent, 5), "p95": pct(ent, 95)}}
    return out


@torch.inference_mode()
def greedy_agreement(pg: Playground, ref, prompts: list[str], tokens: int) -> dict:
    same, prefix, n = 0, [], 0
    stop = pg.engine.stop_ids.tolist()
    for lam in (0.0, 1.0):
        reqs = [Request(pg.encode(p), ADAPTERS[0], DecodeSettings(lam=lam, temperature=0.0, top_p=1.0, max_new_tokens=tokens))
                for p in prompts]
        for r, st in zip(reqs, pg.engine.generate(reqs)):
            x = torch.tensor([list(r.prompt_ids)])
            kw = dict(attention_mask=torch.ones_like(x), max_new_tokens=tokens, do_sample=False, eos_token_id=stop, pad_token_id=stop[0])
            if lam == 0.0:
                with ref.disable_adapter():
                    want = ref.generate(input_ids=x, **kw)[0, x.shape[1]:].tolist()
            else:
                ref.set_adapter(peft_name(ADAPTERS[0]))
                want = ref.generate(input_ids=x, **kw)[0, x.shape[1]:].tolist()
            got = st.tokens
            same += got == want
            k = 0
            while k < min(len(got), len(want)) and got[k] == want[k]:
                k += 1
            prefix.append(k)
            n += 1
    return {"n": n, "identical_share": same / n, "mean_common_prefix_tokens": statistics.fmean(prefix)}


def mixed_requests(pg: Playground, prompts: list[str], count: int, tokens: int) -> list[Request]:
    """Different adapters, λ, modes, temperatures, top-p, lengths and prompts; most take two forward rows."""
    ids = [pg.encode(p) for p in prompts]
    adapters = [*ADAPTERS, "concise-b0.1", None]
    out = []
    for i in range(count):
        adapter = adapters[i % len(adapters)] if adapters[i % len(adapters)] in pg.adapters else None
        out.append(Request(ids[i % len(ids)], adapter, DecodeSettings(
            lam=(0.5, 1.0, 2.0, 4.0)[i % 4], mode="weights" if i % 7 == 3 else "logits",
            temperature=(0.0, 0.7, 1.0, 1.3)[(i // 2) % 4], top_p=(1.0, 0.95, 0.9)[i % 3],
            max_new_tokens=tokens - (i % 5) * 4, seed=i)))
    return out


def batch_invariance(pg: Playground, prompts: list[str], count: int, alone: int, tokens: int) -> dict:
    reqs = mixed_requests(pg, prompts, count, tokens)
    rows = sum(1 + (r.adapter is not None) for r in reqs)
    together = pg.engine.generate(reqs)
    chosen = list(range(0, count, max(1, count // alone)))[:alone]
    same = sum(pg.engine.generate([reqs[i]])[0].tokens == together[i].tokens for i in chosen)
    return {"batch_requests": count, "batch_rows": rows, "alone_checked": len(chosen), "identical_share": same / len(chosen)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--greedy-prompts", type=int, default=8)
    parser.add_argument("--batch", type=int, default=40, help="requests in the mixed batch (most take 2 rows)")
    parser.add_argument("--alone", type=int, default=12, help="of which this many are also decoded alone")
    parser.add_argument("--skip", default="", help="comma-separated: kl,greedy,invariance,fp32")
    parser.add_argument("--out", default="benchmarks/fidelity.json")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(2)
    prompts = eval_prompts(args.prompts)
    t0 = time.perf_counter()
    pg = Playground.from_registry()
    r: dict = {"date": time.strftime("%Y-%m-%d"), "weights": pg.engine.weights, "dtype": str(pg.base.model.dtype),
               "tokens": args.tokens, "prompts": len(prompts)}
    refs = {}  # the dense float32 model (the dequantized GGUF), and on the int4 path also its int4-rounded twin
    if not {"kl", "greedy"} <= skip:
        refs["fp32"] = reference_model(pg)
        if pg.engine.weights == "int4":
            refs["fp32_int4_rounded"] = reference_model(pg, int4_rounded=True)
    if "kl" not in skip:
        found = kl_fidelity(pg, refs, prompts, args.tokens)
        r["kl_ratio"] = found["fp32"]
        if "fp32_int4_rounded" in found:
            r["kl_ratio_int4_rounded"] = found["fp32_int4_rounded"]
    if "greedy" not in skip:
        r["greedy_vs_fp32"] = greedy_agreement(pg, refs["fp32"], prompts[: args.greedy_prompts], args.tokens)
        if "fp32_int4_rounded" in refs:
            r["greedy_vs_fp32_int4_rounded"] = greedy_agreement(pg, refs["fp32_int4_rounded"], prompts[: args.greedy_prompts], args.tokens)
    del refs
    if "invariance" not in skip:
        r["invariance_default"] = batch_invariance(pg, prompts, args.batch, args.alone, args.tokens)
        if "fp32" not in skip:
            del pg
            pf = Playground.from_registry(dtype="float32")
            r["invariance_fp32"] = batch_invariance(pf, prompts, args.batch, args.alone, args.tokens)
    r["seconds"] = time.perf_counter() - t0
    Path(args.out).write_text(json.dumps(r, indent=2))
    print(f"weights {r['weights']} (dense copy {r['dtype']}), {r['prompts']} prompts, {args.tokens} tokens, {r['seconds']:.0f} s")
    for key, label in (("kl_ratio", "fp32 peft"), ("kl_ratio_int4_rounded", "fp32 peft, int4-rounded W")):
        if key in r:
            k, e = r[key], r[key]["entropy_ratio"]
            print(f"KL ratio engine/{label:26} median {k['median']:.4f}  p5 {k['p5']:.4f}  p95 {k['p95']:.4f}  (n = {k['n']})"
                  f"  mean KL/token {k['mean_reported_kl_per_token']:.4f} vs {k['mean_reference_kl_per_token']:.4f}")
            print(f"entropy ratio engine/{label:21} median {e['median']:.4f}  p5 {e['p5']:.4f}  p95 {e['p95']:.4f}  (n = {e['n']})")
    for key, label in (("greedy_vs_fp32", "fp32 peft"), ("greedy_vs_fp32_int4_rounded", "fp32 int4-rounded")):
        if key in r:
            g = r[key]
            print(f"greedy vs {label:18} identical {g['identical_share']:.0%}  common prefix {g['mean_common_prefix_tokens']:.1f} tokens (n = {g['n']})")
    for key in ("invariance_fp32", "invariance_default"):
        if key in r:
            v = r[key]
            print(f"{key:27} identical {v['identical_share']:.0%} of {v['alone_checked']} (batch of {v['batch_requests']} "
                  f"requests, {v['batch_rows']} rows)")


if __name__ == "__main__":
    main()
