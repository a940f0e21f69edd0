"""FastLlamaDecoder: an explicit Llama forward for the engine's decode loop, written out like nanoGPT.

`HFDecoder` pays for transformers' generality every step (mask builders, DynamicCache bookkeeping,
kwargs plumbing through 30 layers). For a plain Llama (default RoPE, no biases, SiLU MLP, full
attention) this decoder does the same math with a handful of tensor ops per layer:

    x_0 = E[token]                                       embedding
    h   = x + Attn(RMSNorm(x))                           per layer, with RoPE on q, k and a KV cache
    x'  = h + W_down (SiLU(W_gate RMSNorm(h)) ⊙ W_up RMSNorm(h))
    ℓ   = W_lm RMSNorm(x_L)[last position]               logits, float32

Rows are left-padded (as in `HFDecoder`): row r's real tokens start at column `pad[r]`, its position
ids are `column - pad[r]` (0 on padding), and a boolean key mask hides the padding columns. The KV cache
is one preallocated tensor per layer, [rows, kv_heads, capacity, head_dim], doubled when full.

The projections (q/k/v/o/gate/up/down, lm_head) are called as modules, so `RoutedLoRALinear` wrappers
from `playground.lora` keep adding their per-row deltas under `AdapterSet.routing`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from playground.decoder import left_pad


def supports(model: nn.Module) -> bool:
    """True for a transformers Llama this decoder reproduces exactly (default RoPE, no bias, SiLU, full attention)."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "llama":
        return False
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    rotary = getattr(getattr(model, "model", None), "rotary_emb", None)
    return (
        rope.get("rope_type", rope.get("type", "default")) == "default"
        and getattr(rotary, "attention_scaling", None) == 1.0
        and not getattr(cfg, "attention_bias", False)
        and not getattr(cfg, "mlp_bias", False)
        and getattr(cfg, "hidden_act", None) == "silu"
        and getattr(cfg, "sliding_window", None) is None
        and hasattr(model, "lm_head")
    )


class _Layer:
    """One decoder layer's modules and constants, unpacked once so the step loop reads plain attributes."""

    def __init__(self, layer: nn.Module) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        self.q, self.k, self.v, self.o = attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj
        self.gate, self.up, self.down = mlp.gate_proj, mlp.up_proj, mlp.down_proj
        self.norm1, self.eps1 = layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon
        self.norm2, self.eps2 = layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon


class FastLlamaDecoder:
    """Decoder protocol (`start`, `step`) for a transformers LlamaForCausalLM, with a static KV cache."""

    def __init__(self, model: nn.Module, pad_id: int, capacity: int = 256) -> None:
        cfg, inner = model.config, model.model
        self.model, self.pad_id, self.capacity = model, pad_id, capacity
        self.layers = [_Layer(layer) for layer in inner.layers[: cfg.num_hidden_layers]]
        self.embed, self.lm_head = inner.embed_tokens, model.lm_head
        self.norm, self.eps = inner.norm.weight, inner.norm.variance_epsilon
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.hidden = cfg.hidden_size
        self.dtype = inner.embed_tokens.weight.dtype
        self.inv_freq = inner.rotary_emb.inv_freq.float()  # θ_j = base^(-2j/d), exactly as HF holds it
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    # --- cache and tables -------------------------------------------------------------------------

    def _rope_table(self, capacity: int) -> None:
        """cos/sin of p·θ for p < capacity; sin carries rotate_half's sign so rot(x)·sin = roll(x)·sin±."""
        freqs = torch.arange(capacity, dtype=torch.float32)[:, None] * self.inv_freq  # [P, d/2], float32 like HF
        half = freqs.shape[-1]
        self.cos = torch.cat((freqs, freqs), -1).cos().to(self.dtype)  # [P, d]
        sin = freqs.sin()
        self.sin = torch.cat((-sin, sin), -1).to(self.dtype)  # rotate_half(x)·sin = roll(x, d/2)·[-sin, sin]
        self.half = half

    def _allocate(self, rows: int, capacity: int) -> None:
        """(Re)allocate the KV cache and key mask at `capacity` columns, keeping the first `self.length`."""
        shape = (rows, self.kv_heads, capacity, self.head_dim)
        keys = [torch.zeros(shape, dtype=self.dtype) for _ in self.layers]
        values = [torch.zeros(shape, dtype=self.dtype) for _ in self.layers]
        valid = torch.zeros(rows, 1, 1, capacity, dtype=torch.bool)
        n = self.length
        for new, old in zip(keys + values, self.keys + self.values):
            new[:, :, :n] = old[:, :, :n]
        if n:
            valid[..., :n] = self.valid[..., :n]
        self.keys, self.values, self.valid, self.capacity = keys, values, valid, capacity
        self._rope_table(capacity)

    # --- the forward ------------------------------------------------------------------------------

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """RoPE: x·cos + rotate_half(x)·sin, with rotate_half(x)·sin = roll(x, d/2)·[-sin, sin]."""
        return torch.addcmul(x * cos, x.roll(self.half, -1), sin)

    def _forward(self, ids: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run `ids` [B, T] (cache columns length-T .. length-1) through every layer; return last-position logits."""
        b, t = ids.shape
        start, end = self.length - t, self.length
        x = self.embed(ids)  # [B, T, D]
        for i, L in enumerate(self.layers):
            # h = x + W_o · Attn(RoPE(W_q n), RoPE(W_k n), W_v n),  n = RMSNorm(x)
            n = F.rms_norm(x, (self.hidden,), L.norm1, L.eps1)
            q = self._rope(L.q(n).view(b, t, self.heads, self.head_dim).transpose(1, 2), cos, sin)
            k = self._rope(L.k(n).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2), cos, sin)
            v = L.v(n).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            self.keys[i][:, :, start:end] = k
            self.values[i][:, :, start:end] = v
            a = self._attend(q, self.keys[i][:, :, :end], self.values[i][:, :, :end], mask)
            x = x + L.o(a.transpose(1, 2).reshape(b, t, -1))
            # x' = h + W_down (SiLU(W_gate n) ⊙ W_up n),  n = RMSNorm(h)
            n = F.rms_norm(x, (self.hidden,), L.norm2, L.eps2)
            x = x + L.down(F.silu(L.gate(n)) * L.up(n))
        # ℓ = W_lm RMSNorm(x)[:, -1]  (only the last position)
        x = F.rms_norm(x[:, -1:], (self.hidden,), self.norm, self.eps)
        return self.lm_head(x)[:, -1].float()

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """softmax(q kᵀ/√d + mask) v with kv_heads < heads (GQA: query head h reads kv head h // group)."""
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.heads != self.kv_heads)

    # --- the Decoder protocol ---------------------------------------------------------------------

    @torch.inference_mode()
    def start(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        ids, pad_mask = left_pad(prompts, self.pad_id)
        rows, width = ids.shape
        self.keys, self.values, self.length = [], [], 0
        capacity = self.capacity
        while capacity < width + 1:
            capacity *= 2
        self._allocate(rows, capacity)
        self.length = width
        real = pad_mask.bool()
        self.valid[:, 0, 0, :width] = real
        self.pos = (pad_mask.cumsum(-1) - 1).clamp(min=0)  # [B, T] position ids, 0 on padding (as HF)
        cos, sin = self.cos[self.pos][:, None], self.sin[self.pos][:, None]  # [B, 1, T, d]
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        # Query i sees key j ≤ i unless j is padding; a padding query also sees itself (no all-masked row → no NaN).
        mask = (causal & real[:, None, None, :]) | torch.eye(width, dtype=torch.bool)
        self.pos = self.pos[:, -1]
        return self._forward(ids, cos, sin, mask)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.length == self.capacity:
            self._allocate(len(tokens), self.capacity * 2)
        self.valid[..., self.length] = True
        self.length += 1
        self.pos = self.pos + 1
        cos, sin = self.cos[self.pos][:, None, None], self.sin[self.pos][:, None, None]  # [B, 1, 1, d]
        return self._forward(tokens[:, None], cos, sin, self.valid[..., : self.length])
