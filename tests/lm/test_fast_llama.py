"""FastLlamaDecoder reproduces HFDecoder: prefill + steps, left padding, LoRA routing, bf16, cache growth."""
from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from playground.lm.decoder import HFDecoder
from playground.lm.fast_llama import FastLlamaDecoder, can_pack, supports
from playground.lm.lora import AdapterSet

PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [3, 4], [100, 200, 300, 400], [42]]  # different lengths: left padding
ROUTES = [(None, 0.0), ("a", 1.0), ("a", 0.5), ("a", -1.0)]  # base row, tuned row, ExPO-style scales
PAD = 0


def tiny_config(**overrides) -> LlamaConfig:
    kw = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              vocab_size=1000, max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=PAD,
              rope_parameters={"rope_type": "default", "rope_theta": 100000.0})
    kw.update(overrides)
    return LlamaConfig(**kw)


@pytest.fixture(scope="module")
def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_config()).eval()


def make_adapter(model: LlamaForCausalLM, out: Path, rank: int, targets: list[str], seed: int) -> Path:
    """A peft LoRA on `targets`, with random non-zero A and B, saved to `out`."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    peft_model.save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="module")
def adapter_dir(tiny_llama, tmp_path_factory) -> Path:
    """Rank 4 on every projection."""
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return make_adapter(tiny_llama, tmp_path_factory.mktemp("fast_llama_lora"), 4, targets, seed=1)


def with_adapter(model: LlamaForCausalLM, adapter: Path, dtype: torch.dtype) -> tuple[LlamaForCausalLM, AdapterSet]:
    model = copy.deepcopy(model).to(dtype)
    adapters = AdapterSet(model)
    adapters.add("a", adapter)
    return model, adapters


def decode(decoders: list, steps: int, adapters: AdapterSet | None = None) -> list[list[torch.Tensor]]:
    """Logits of `start` then `steps` steps for each decoder, all fed the first decoder's greedy tokens."""
    routing = (lambda: adapters.routing(ROUTES)) if adapters else contextlib.nullcontext
    outs: list[list[torch.Tensor]] = [[] for _ in decoders]
    with torch.inference_mode():
        for out, d in zip(outs, decoders):
            with routing():
                out.append(d.start(PROMPTS))
        for _ in range(steps):
            tokens = outs[0][-1].argmax(-1)
            for out, d in zip(outs, decoders):
                with routing():
                    out.append(d.step(tokens))
    return outs


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def test_supports(tiny_llama):
    assert supports(tiny_llama)
    assert not supports(GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=100)))
    scaled = tiny_config(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})
    assert not supports(LlamaForCausalLM(scaled))
    assert not supports(LlamaForCausalLM(tiny_config(attention_bias=True)))


def test_fp32_matches_hf(tiny_llama):
    hf, fast = decode([HFDecoder(tiny_llama, PAD), FastLlamaDecoder(tiny_llama, PAD)], steps=10)
    assert hf[0].dtype == fast[0].dtype == torch.float32 and fast[0].shape == (len(PROMPTS), 1000)
    assert max_diff(hf, fast) < 1e-4


def test_cache_grows_past_capacity(tiny_llama):
    """Rows that outgrow their pool's width (here 64 columns) make it grow: doubled, contents kept."""
    fast = FastLlamaDecoder(tiny_llama, PAD, widths=(64,))
    hf, got = decode([HFDecoder(tiny_llama, PAD), fast], steps=60)
    assert [p for p, _ in fast.kv.where] == [0, 0, 0, 0] and fast.kv.lengths.tolist() == [67, 62, 64, 61]
    assert fast.kv.pools[0].capacity[1] == 128
    assert max_diff(hf, got) < 1e-4


def test_lora_routing_fp32(tiny_llama, adapter_dir):
    model, adapters = with_adapter(tiny_llama, adapter_dir, torch.float32)
    hf, fast = decode([HFDecoder(model, PAD), FastLlamaDecoder(model, PAD)], steps=10, adapters=adapters)
    assert max_diff(hf, fast) < 1e-4
    assert (hf[0][1] - hf[0][0]).abs().max() > 1e-2  # the adapter really changes the tuned rows


def test_bf16_matches_hf(tiny_llama, adapter_dir):
    """bf16: |Δlogit| ≤ 0.05 vs HF bf16 (logits here are O(1); RMSNorm rounds once instead of twice)."""
    model, adapters = with_adapter(tiny_llama, adapter_dir, torch.bfloat16)
    hf, fast = decode([HFDecoder(model, PAD), FastLlamaDecoder(model, PAD)], steps=10, adapters=adapters)
    assert fast[0].dtype == torch.float32
    assert max_diff(hf, fast) < 0.05


@pytest.mark.skipif(not can_pack(torch.bfloat16), reason="no oneDNN bf16 on this CPU")
def test_bf16_packed_matches_unpacked(tiny_llama, adapter_dir):
    """oneDNN prepacked + fused q/k/v, gate/up, LoRA A packed under W (its product rounded once to bf16) vs plain
    F.linear per module with float32 LoRA deltas."""
    model, adapters = with_adapter(tiny_llama, adapter_dir, torch.bfloat16)
    packed, plain = FastLlamaDecoder(model, PAD, pack=True), FastLlamaDecoder(model, PAD, pack=False)
    assert packed.layers[0].fused and not plain.layers[0].fused
    a, b = decode([packed, plain], steps=10, adapters=adapters)
    assert max_diff(a, b) < 0.05  # logits are O(1); the two differ by the bf16 rounding of A x (~1% of the delta)



@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_two_adapters_different_ranks_and_targets(tiny_llama, adapter_dir, tmp_path, dtype):
    """Stacked deltas: adapter b (rank 2, only q/v/down) beside a (rank 4, all): each row gets its own adapter."""
    b_dir = make_adapter(tiny_llama, tmp_path / "b", 2, ["q_proj", "v_proj", "down_proj"], seed=2)
    model, adapters = with_adapter(tiny_llama, adapter_dir, dtype)
    adapters.add("b", b_dir)
    routes = [(None, 0.0), ("b", 1.0), ("a", 1.0), ("b", -0.5)]
    outs: list[list[torch.Tensor]] = [[], []]
    decoders = [HFDecoder(model, PAD), FastLlamaDecoder(model, PAD)]
    with torch.inference_mode():
        for out, d in zip(outs, decoders):
            with adapters.routing(routes):
                out.append(d.start(PROMPTS))
        for _ in range(6):
            tokens = outs[0][-1].argmax(-1)
            for out, d in zip(outs, decoders):
                with adapters.routing(routes):
                    out.append(d.step(tokens))
    assert max_diff(*outs) < (1e-4 if dtype == torch.float32 else 0.1)  # bf16: rounding order of the deltas differs
    assert (outs[0][0][1] - outs[0][0][0]).abs().max() > 1e-2  # b really changes its row


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_one_prefill_for_prompts_of_different_lengths_equals_each_alone(tiny_llama, adapter_dir, dtype):
    """Requests joining at one step boundary (several submissions) are prefilled in one forward whatever their
    lengths; each row's logits, cache and next steps are bit-identical to the row prefilled on its own."""
    model, _ = with_adapter(tiny_llama, adapter_dir, dtype)
    prompts = PROMPTS + [[7, 8], [9, 10, 11, 12]]  # lengths 7, 2, 4, 1, 2, 4: groups of equal length share attention
    routes = ROUTES + [("a", 1.0), (None, 0.0)]
    together = FastLlamaDecoder(model, PAD)
    with torch.inference_mode():
        got = [together.add(prompts, routes)]
        for _ in range(5):
            got.append(together.step(got[-1].argmax(-1)))
        for i, (p, r) in enumerate(zip(prompts, routes)):
            alone = FastLlamaDecoder(model, PAD)
            want = alone.add([p], [r])[0]
            assert torch.equal(got[0][i], want), i
            for before, after in zip(got, got[1:]):
                want = alone.step(before[i:i + 1].argmax(-1))[0]  # the token the row was fed together
                assert torch.equal(after[i], want), i


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rows_in_kv_pools_of_different_widths_equal_each_row_alone(tiny_llama, adapter_dir, dtype):
    """Rows go to the KV pool of the columns they can reach (here 64, 128 and wider); rows join and leave across
    pools mid-decode (slots move, rows keep their order), and every row's logits stay bit-identical to the row
    decoded on its own."""
    model, _ = with_adapter(tiny_llama, adapter_dir, dtype)
    prompts = PROMPTS + [[7, 8], [9, 10, 11, 12, 13, 14, 15, 16, 17, 18]]
    routes = ROUTES + [("a", 1.0), (None, 0.0)]
    reach = [64, 300, 100, 30, 128, 129]  # pools: 64-wide, wider, 128-wide, 64-wide, 128-wide, wider
    late = ([[21, 22, 23]], [("a", 0.5)], [20])  # joins after the first leave, into the 64-wide pool
    together = FastLlamaDecoder(model, PAD, widths=(64, 128))
    alone = {}
    with torch.inference_mode():
        logits = together.add(prompts, routes, reach)
        assert [p for p, _ in together.kv.where] == [0, 2, 1, 0, 1, 2]
        rows = list(range(len(prompts)))  # request index of each live row
        for step in range(6):
            for r, i in enumerate(rows):
                if i not in alone:
                    single = FastLlamaDecoder(model, PAD, widths=(64, 128))
                    p, ro, re = (late[0][0], late[1][0], late[2][0]) if i == len(prompts) else (prompts[i], routes[i], reach[i])
                    alone[i] = (single, single.add([p], [ro], [re]))
                    assert torch.equal(logits[r], alone[i][1][0]), (step, i)
                else:
                    assert torch.equal(logits[r], alone[i][1][0]), (step, i)
            if step == 2:  # rows of the 64-wide and the wider pool leave; one joins
                order = together.remove([0, 1, 3])
                rows, logits = [rows[j] for j in order], logits[order]
                logits = torch.cat([logits, together.add(*late)])
                rows.append(len(prompts))
                continue
            tokens = logits.argmax(-1)
            for r, i in enumerate(rows):
                single, _ = alone[i]
                alone[i] = (single, single.step(tokens[r:r + 1]))
            logits = together.step(tokens)
