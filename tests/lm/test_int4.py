"""The int4 weight path: Q4_1 blocks decoded as ggml does, mapped exactly onto torch's int4 kernel, rows
independent of their batch, and the decoder equal to a float32 model built from the same int4-rounded weights."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize

from playground.lm import int4
from playground.lm.fast_llama import FastLlamaDecoder
from tests.lm.test_fast_llama import PAD, PROMPTS, ROUTES, adapter_dir, tiny_llama, with_adapter  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not int4.supported(), reason="torch's CPU int4 kernel does not run on this CPU")
Q4_1 = GGMLQuantizationType.Q4_1


def llamacpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf `permute` of q/k rows (the inverse of what the reader undoes)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def q4_of(model, heads: int, kv_heads: int) -> dict[str, int4.Q4Weight]:
    """Every layer projection of `model` quantized to Q4_1 by gguf-py, stored as a GGUF would (q/k permuted),
    then read back by the playground's block reader and un-permuted."""
    out = {}
    for name, mod in model.named_modules():
        if name.startswith("model.layers.") and name.rsplit(".", 1)[-1].endswith("_proj") and hasattr(mod, "weight"):
            w = mod.weight.detach().float().numpy()
            kind = name.rsplit(".", 1)[-1]
            h = heads if kind == "q_proj" else kv_heads if kind == "k_proj" else None
            raw = quantize(llamacpp_permute(w, h) if h else w, Q4_1)
            q = int4.q4_1_from_blocks(raw, *w.shape)
            out[name] = q.rows(int4.hf_rows(w.shape[0], h)) if h else q
    return out


def test_blocks_decode_as_ggml_does_and_map_exactly_onto_the_kernel():
    """d·q + m from the reader equals gguf-py's own dequantize; with scale = d and zero = m + 8d in bf16 the
    kernel's (q − 8)·scale + zero is that weight up to the bf16 rounding of scale and zero, and the kernel's
    product equals x · dequantize()ᵀ up to its bf16 output."""
    gen = np.random.default_rng(0)
    w = gen.standard_normal((48, 96)).astype(np.float32)
    raw = quantize(w, Q4_1)
    q = int4.q4_1_from_blocks(raw, 48, 96)
    exact = (q.q.float().view(48, 3, 32) * q.d[..., None] + q.m[..., None]).view(48, 96)
    assert torch.equal(exact, torch.from_numpy(dequantize(raw, Q4_1)))
    assert (q.dequantize() - exact).abs().max() <= 2 ** -8 * (q.m.abs() + 8 * q.d.abs()).max()
    x = torch.randn(5, 96).bfloat16()
    y = q.pack()(x)
    assert y.dtype == torch.bfloat16 and y.shape == (5, 48)
    ref = x.float() @ q.dequantize().T
    assert torch.allclose(y.float(), ref, rtol=2 ** -7, atol=1e-2)


def test_row_order_undoes_llamacpp_permutation_as_transformers_does():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    w = np.arange(24 * 4, dtype=np.float32).reshape(24, 4)
    stored = llamacpp_permute(w, 3)
    undone = LlamaTensorProcessor(config={})._reverse_permute_weights(stored, 3, 3)
    assert np.array_equal(undone, w)
    assert np.array_equal(stored[int4.hf_rows(24, 3).numpy()], undone)


def test_kernel_rows_do_not_depend_on_the_batch():
    q = int4.q4_1_from_blocks(quantize(np.random.default_rng(1).standard_normal((64, 128)).astype(np.float32), Q4_1), 64, 128)
    p = q.pack()
    x = torch.randn(70, 128).bfloat16()
    full = p(x)
    for m in (1, 2, 3, 4, 5, 8, 17, 33, 70):
        assert torch.equal(p(x[:m]), full[:m]), m


@pytest.fixture(scope="module")
def int4_model(tiny_llama, adapter_dir):
    """(model with adapter 'a', its Int4Layers, a float32 copy whose layer weights are the int4-rounded ones)."""
    model, _ = with_adapter(tiny_llama, adapter_dir, torch.float32)
    cfg = model.config
    raw = q4_of(model, cfg.num_attention_heads, cfg.num_key_value_heads)
    rounded = copy.deepcopy(model)
    mods = dict(rounded.named_modules())
    with torch.no_grad():
        for name, q in raw.items():
            mods[name].weight.copy_(q.dequantize())
    return model, int4.Int4Layers.from_q4(raw, cfg.num_hidden_layers, "test"), rounded


def test_int4_decoder_matches_float32_with_the_same_rounded_weights(int4_model):
    """Base and LoRA rows, prefill and 6 steps: the int4 decoder (bf16 activations into the kernel, everything
    else float32) stays within bf16 rounding of the float32 decoder on the int4-rounded weights."""
    model, layers, rounded = int4_model
    fast, ref = FastLlamaDecoder(model, PAD, int4=layers), FastLlamaDecoder(rounded, PAD, pack=False)
    assert fast.int4
    with torch.inference_mode():
        a, b = fast.add(PROMPTS, ROUTES), ref.add(PROMPTS, ROUTES)
        for _ in range(6):
            assert (a - b).abs().max() <= 0.02 * b.abs().max()
            tokens = b.argmax(-1)
            a, b = fast.step(tokens), ref.step(tokens)


def test_int4_rows_equal_each_row_alone_bit_for_bit(int4_model):
    """A mixed batch (base, tuned, scaled rows) with a leave and a join mid-decode: every row's logits are
    bit-identical to the same row decoded alone."""
    model, layers, _ = int4_model
    together = FastLlamaDecoder(model, PAD, widths=(64, 128), int4=layers)
    prompts, routes = PROMPTS + [[9, 10, 11]], ROUTES + [("a", 2.0)]
    alone = [FastLlamaDecoder(model, PAD, widths=(64, 128), int4=layers) for _ in prompts]
    with torch.inference_mode():
        logits = together.add(prompts, routes)
        single = [d.add([p], [r]) for d, p, r in zip(alone, prompts, routes)]
        rows = list(range(len(prompts)))
        for step in range(5):
            for r, i in enumerate(rows):
                assert torch.equal(logits[r], single[i][0]), (step, i)
            if step == 2:
                order = together.remove([1])
                rows, logits = [rows[j] for j in order], logits[order]
            tokens = logits.argmax(-1)
            for r, i in enumerate(rows):
                single[i] = alone[i].step(tokens[r:r + 1])
            logits = together.step(tokens)


def test_shipped_gguf_codes_are_the_weights_the_dense_model_was_converted_from(shipped_tokenizer_dir):
    """The reader's d·q + m of every layer of the shipped GGUF equals the dequantized safetensors copy exactly
    (so the int4 path runs the file's own weights, rows in transformers' order)."""
    from safetensors.torch import load_file

    from playground.lm.loading import gguf_of

    gguf = gguf_of(shipped_tokenizer_dir)
    assert gguf is not None
    dense = load_file(shipped_tokenizer_dir / "model.safetensors")
    raw = int4.read_gguf_q4_1(str(gguf), 9, 3)
    assert len(raw) == 30 * 7
    for name in ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.29.mlp.down_proj"):
        q = raw[name]
        n, k = q.shape
        exact = (q.q.float().view(n, k // 32, 32) * q.d[..., None] + q.m[..., None]).view(n, k)
        assert torch.equal(exact, dense[name + ".weight"].float()), name


def test_int4_projection_keeps_a_tiny_lora_delta(int4_model):
    """The LoRA delta rides in float32 next to the int4 kernel's W x: the tuned row minus the base row is
    s·B(A x) to within 1%, even where the delta is far below a bf16 step of W x."""
    from playground.lm.projections import Projection

    model, layers, _ = int4_model
    o_proj = model.model.layers[0].self_attn.o_proj
    proj = Projection([o_proj], False, layers.get(("model.layers.0.self_attn.o_proj",)))
    assert proj.int4 is not None
    saved = o_proj.lora_B["a"]
    o_proj.lora_B["a"] = saved * 1e-5  # a delta well below the bf16 resolution of W x
    try:
        x32 = torch.randn(4, o_proj.in_features, generator=torch.Generator().manual_seed(0))
        x32[1] = x32[0]
        with torch.inference_mode():
            y = proj(x32.to(torch.bfloat16), x32, {"a": torch.tensor([[0.0], [1.0], [0.0], [0.0]])})
        want = (x32[:1] @ o_proj.lora_A["a"].float().T) @ o_proj.lora_B["a"].float().T
    finally:
        o_proj.lora_B["a"] = saved
    torch.testing.assert_close(y[1:2] - y[:1], want, rtol=1e-2, atol=2.0 ** -22 * float(y.abs().max()))
    assert (want.abs() < 0.5 * 2.0 ** -8 * y[:1].abs()).float().mean() > 0.5


def test_packed_weights_are_cached_and_load_back_identical(tmp_path):
    """The packed layers are written once as safetensors and loaded from the cache afterwards, bit-identical;
    a damaged cache file is rebuilt."""
    import gguf

    path = tmp_path / "tiny.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    gen = np.random.default_rng(3)
    for name in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
        shape = {"attn_k": (32, 64), "attn_v": (32, 64), "ffn_gate": (128, 64), "ffn_up": (128, 64), "ffn_down": (64, 128)}.get(name, (64, 64))
        w.add_tensor(f"blk.0.{name}.weight", quantize(gen.standard_normal(shape).astype(np.float32), Q4_1), raw_dtype=Q4_1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    cache = tmp_path / "cache"
    built = int4.Int4Layers.from_gguf(path, 1, 4, 2, cache=cache)
    files = list(cache.glob("int4-*.safetensors"))
    assert len(files) == 1 and len(built._packed) == 4
    again = int4.Int4Layers.from_gguf(path, 1, 4, 2, cache=cache)
    for names, p in built._packed.items():
        q = again.get(names)
        assert q is not None and q.out_features == p.out_features
        assert torch.equal(q.packed, p.packed) and torch.equal(q.scales_and_zeros, p.scales_and_zeros)
    files[0].write_bytes(b"not a safetensors file")
    rebuilt = int4.Int4Layers.from_gguf(path, 1, 4, 2, cache=cache)
    assert all(torch.equal(rebuilt.get(n).packed, p.packed) for n, p in built._packed.items())
