"""Batch invariance at float32: a request's tokens (and readouts) are bit-identical alone and inside any batch."""
from __future__ import annotations

import pytest
import torch

from playground.lm.request import Request
from tests.lm.requests import request


@pytest.fixture(scope="module")
def mixed(tiny_playground) -> list[Request]:
    """Different adapters, λ, modes, temperatures, top-p, lengths, seeds and prompts of different lengths."""
    prompts = [tiny_playground.encode(p) for p in
               ("Hi.", "Tell me something about cats.", "A much longer prompt about gardening in the rain, please, with details.")]
    adapters = ["a", "b", None]
    return [request(prompts[i % 3], adapter=adapters[(i // 3) % 3], lam=(0.0, 0.5, 1.0, 2.0, 4.0)[i % 5],
                    mode="weights" if i % 7 == 2 else "logits", temperature=(0.0, 0.7, 1.3)[(i // 2) % 3],
                    top_p=(1.0, 0.9)[i % 2], max_new_tokens=4 + i % 9, seed=i) for i in range(28)]


@pytest.mark.parametrize("path", ["continuous", "batch"], ids=["scheduler", "direct"])
def test_each_row_of_a_mixed_batch_equals_the_request_alone(tiny_playground, mixed, path):
    engine = tiny_playground.engine.with_path(path)
    together = engine.generate(mixed)
    assert sum(1 + (r.adapter is not None and (r.settings.lam != 0 or r.settings.mode == "weights")) for r in mixed) >= 40  # rows
    for req, got in zip(mixed, together):
        alone = engine.generate([req])[0]
        assert got.tokens == alone.tokens
        assert got.kl == alone.kl and got.entropy == alone.entropy  # the readouts too, bit for bit
    assert len({len(s.tokens) for s in together}) > 3  # rows finished at different steps


def test_same_request_in_different_company(tiny_playground, mixed):
    """One request inside batches of other sizes and members gives the same tokens every time."""
    engine, probe = tiny_playground.engine, mixed[7]
    runs = [engine.generate([probe] + mixed[:k])[0].tokens for k in (0, 1, 3, 6, 11, 17)]
    runs.append(engine.generate(mixed[:5] + [probe])[-1].tokens)
    assert all(r == runs[0] for r in runs)


def test_lora_delta_keeps_its_precision_at_bfloat16(tiny_model_dir, tiny_adapters):
    """bf16 weights: the tuned row differs from the base row by the delta s·B(A x) to within 1% — even where
    that delta is far below half a bfloat16 step of W x (adding it onto bf16 activations would drop it)."""
    from transformers import AutoModelForCausalLM

    from playground.lm.lora import AdapterSet
    from playground.lm.projections import Projection

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    adapters = AdapterSet(model)
    adapters.add("a", tiny_adapters["a"])
    q = model.model.layers[0].self_attn.q_proj
    q.lora_B["a"] = q.lora_B["a"] * 1e-5  # a delta well below the bf16 resolution of W x
    x32 = torch.randn(4, q.in_features, generator=torch.Generator().manual_seed(0))
    x32[1] = x32[0]
    scales = {"a": torch.tensor([[0.0], [1.0], [0.0], [0.0]])}
    from playground.lm.projections import can_pack

    for pack in (False, True) if can_pack(torch.bfloat16) else (False,):  # oneDNN's bf16 packing needs AVX-512/AMX
        with torch.inference_mode():
            y = Projection([q], pack=pack)(x32.to(torch.bfloat16), x32, scales)
        assert y.dtype == torch.float32
        x_in = x32[:1].to(torch.bfloat16).float() if pack else x32[:1]  # the packed path reads the bf16 input
        want = (x_in @ q.lora_A["a"].float().T) @ q.lora_B["a"].float().T
        torch.testing.assert_close(y[1:2] - y[:1], want, rtol=1e-2, atol=2.0 ** -22 * float(y.abs().max()))
        assert (want.abs() < 0.5 * 2.0 ** -8 * y[:1].abs()).float().mean() > 0.5  # mostly below half a bf16 step


def test_kv_cache_growth_stays_within_its_budget_where_the_need_fits():
    """Doubling 64 → 128 rows would pass the budget; the need (rows to a multiple of 8) fits, so the cache grows
    to as many rows as the budget holds (once, not at every join), and a chat turn can still join a sweep that
    nearly fills the KV budget."""
    from playground.lm.kv_cache import SlotCache

    cache = SlotCache(layers=2, kv_heads=2, head_dim=16, dtype=torch.float32)
    per_cell = 2 * 2 * 2 * 16 * 4  # K and V, layers, heads, head_dim, bytes
    cache.reserve(64, 512)
    assert cache.bytes_for(69, 512) == 72 * 512 * per_cell  # the need, rounded to 8 rows
    cache.reserve(69, 512)
    assert cache.capacity == (128, 512)  # no budget: doubling
    cache = SlotCache(layers=2, kv_heads=2, head_dim=16, dtype=torch.float32)
    cache.reserve(64, 512)
    cache.max_bytes = 84 * 512 * per_cell
    cache.reserve(69, 512)
    assert cache.capacity == (80, 512)  # all the budget holds, in whole tiles of 8 rows
    cache.reserve(77, 512)
    assert cache.capacity == (80, 512)  # the next joins need no copy
    assert cache.bytes_for(100, 512) == 104 * 512 * per_cell > cache.max_bytes  # over budget: the caller waits


@pytest.mark.parametrize("width", [8, 16, 20, 32, 48])
def test_narrow_lora_products_are_batch_invariant(width):
    """x A (A: in × width) for a rank-16 LoRA on one projection (width 16) went through an MKL kernel whose rows
    depend on M; the factors are padded to a safe width, so every row equals the row alone (M = 1…64)."""
    from playground.lm.projections import fp32_matmul, invariant_width

    gen = torch.Generator().manual_seed(width)
    a = torch.randn(64, width, generator=gen)
    a = torch.cat([a, a.new_zeros(64, invariant_width(width) - width)], 1)
    x = torch.randn(64, 64, generator=gen)
    for m in (1, 5, 13, 17, 29, 41, 64):
        y = fp32_matmul(x[:m], a)
        assert all(torch.equal(y[j], fp32_matmul(x[j:j + 1], a)[0]) for j in range(m)), (width, m)
