"""FastLlamaDecoder: an explicit Llama forward for the engine's decode loop, written out like nanoGPT.

`HFDecoder` pays for transformers' generality every step (mask builders, DynamicCache bookkeeping,
kwargs plumbing through 30 layers). For a plain Llama (default RoPE, no biases, SiLU MLP, full
attention) this decoder does the same math with a handful of tensor ops per layer:

    x_0 = E[token]                                            embedding
    h   = x + W_o Attn(RoPE(W_q n), RoPE(W_k n), W_v n),      n = RMSNorm(x), keys/values cached
    x'  = h + W_down (SiLU(W_gate n) ⊙ W_up n),               n = RMSNorm(h)
    ℓ   = W_lm RMSNorm(x_L)[last position]                    logits, float32

Rows are left-padded (as in `HFDecoder`): row r's position ids are `column - pad_r` (0 on padding) and
an additive key mask (-inf on padding columns) hides the padding. The KV cache is preallocated per layer,
[rows, kv_heads, capacity, head_dim], and doubled when a step runs past it.

Projections run as `F.linear` on the modules' own weights plus the routed adapters' per-row deltas in two
stacked matmuls (`lora.stack_lora`; the routing is read once per forward). In bfloat16 the base weights
are instead prepacked once per model for oneDNN (`mkldnn._linear_pointwise`; same results as `F.linear`
here, ~1.4x faster matmuls at small batch), with q/k/v and gate/up concatenated into one matmul each;
the packed copy costs one extra set of weights in memory (~270 MB for SmolLM2-135M).
"""
from __future__ import annotations

import weakref
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from playground.lm.decoder import left_pad
from playground.lm.lora import RoutedLoRALinear, lora_scales, stack_lora

_FP32_LORA_ROWS = 16  # up to this many rows, LoRA deltas run in float32 (faster than small bf16 matmuls)
_PACK_HINT = 64  # batch-size hint for oneDNN's weight layout (timings barely depend on it)
_PackKey = tuple[tuple[int, int], ...]  # (data_ptr, version) of each packed weight
_PACKED: weakref.WeakKeyDictionary[nn.Linear, tuple[_PackKey, torch.Tensor]] = weakref.WeakKeyDictionary()
_STACKED: weakref.WeakKeyDictionary[nn.Module, dict[tuple, tuple[torch.Tensor, torch.Tensor]]] = weakref.WeakKeyDictionary()


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


def can_pack(dtype: torch.dtype) -> bool:
    """oneDNN prepacked linear: used for bfloat16 on CPUs with native bf16 support."""
    return (dtype == torch.bfloat16 and torch.backends.mkldnn.is_available()
            and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _base(module: nn.Module) -> nn.Linear | None:
    """The bias-free nn.Linear behind a projection (itself or a RoutedLoRALinear's base), else None."""
    base = module.base if isinstance(module, RoutedLoRALinear) else module
    return base if type(base) is nn.Linear and base.bias is None else None


def _packed_weight(linears: Sequence[nn.Linear]) -> torch.Tensor:
    """[W_1; …; W_m] in oneDNN's blocked layout, cached per model; repacked if a weight tensor changed."""
    try:
        key = tuple((lin.weight.data_ptr(), lin.weight._version) for lin in linears)
    except RuntimeError:  # inference tensors have no version counter
        key = tuple((lin.weight.data_ptr(), -1) for lin in linears)
    hit = _PACKED.get(linears[0])
    if hit is None or hit[0] != key:
        with torch.no_grad():
            w = torch.cat([lin.weight.detach() for lin in linears]) if len(linears) > 1 else linears[0].weight.detach()
            hit = (key, torch.ops.mkldnn._reorder_linear_weight(w, _PACK_HINT))
        _PACKED[linears[0]] = hit
    return hit[1]


class _Proj:
    """y = [W_1; …; W_m] x + the routed adapters' deltas on their slices, as `lora.stack_lora` lays them out.

    W x runs as `F.linear` (one module) or oneDNN on the prepacked, possibly concatenated W. The deltas of
    the adapters routed in this forward take two more matmuls, ((x A_allᵀ) ⊙ S_m) B_allᵀ (in float32 for
    a few rows, see `_Routing`), with the per-row scales S_m built once per forward by the decoder; stacks
    are built per set of routed adapters (so unrouted adapters cost nothing). A projection whose base is not a bias-free nn.Linear is
    simply called as a module (RoutedLoRALinear then reads its routing itself).
    """

    __slots__ = ("module", "weight", "packed", "members", "loras", "stacks")

    def __init__(self, modules: Sequence[nn.Module], pack: bool) -> None:
        bases = [_base(m) for m in modules]
        plain = all(b is not None for b in bases)
        self.module = None if plain else modules[0]
        self.weight = bases[0].weight if plain and len(modules) == 1 else None
        self.packed = _packed_weight(bases) if plain and pack else None
        self.members = len(modules)
        routed = plain and any(isinstance(m, RoutedLoRALinear) for m in modules)
        self.loras = list(modules) if routed else None
        self.stacks: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # routed (name, rank)s -> stacks

    def __call__(self, x: torch.Tensor, lora: "_Routing | None") -> torch.Tensor:
        if self.module is not None:
            return self.module(x)
        if self.packed is not None:
            y = torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")
        else:
            y = F.linear(x, self.weight)
        if self.loras is not None and lora is not None:
            key = (lora.ranks, lora.dtype)
            stack = self.stacks.get(key)
            if stack is None:
                stack = self.stacks[key] = _stacked(self.loras, lora.ranks, lora.dtype)
            a_t, b_t = stack  # A_allᵀ [in, Σ], B_allᵀ [Σ, out]
            # Σ_a scale_a[row] · s_a B_a A_a x
            delta = (x.to(lora.dtype) @ a_t).mul_(lora.scales[self.members]) @ b_t
            y += delta.to(y.dtype)  # (a same-dtype add is much faster than a mixed one at large batch)
        return y


class _Routing(NamedTuple):
    """One forward's adapter routing: the routed adapters' (name, rank)s, S_m per group size m, and the
    dtype of the delta matmuls (float32 for a few rows, where CPU bf16 matmuls of this size are slow)."""

    ranks: tuple[tuple[str, int], ...]
    scales: dict[int, torch.Tensor]
    dtype: torch.dtype


def _stacked(modules: Sequence[nn.Module], ranks: tuple[tuple[str, int], ...],
             dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(A_allᵀ, B_allᵀ) from `stack_lora` in `dtype`, cached per module group, adapter set and dtype."""
    key = (ranks, dtype, tuple((m.lora_A[n].data_ptr(), m.lora_B[n].data_ptr()) for m in modules
                        if isinstance(m, RoutedLoRALinear) for n, _ in ranks if n in m.lora_A))
    cache = _STACKED.setdefault(modules[0], {})
    if key not in cache:
        if len(cache) >= 8:  # a few adapter combinations at most; drop stale ones
            cache.clear()
        a, b = stack_lora(modules, dict(ranks))
        cache[key] = (a.T.to(dtype).contiguous(), b.T.to(dtype).contiguous())
    return cache[key]


class _Layer:
    """One decoder layer's projections and norm constants, unpacked once so the loop reads plain attributes.

    When packing, q/k/v and gate/up run as one matmul each on concatenated weights (fewer oneDNN calls).
    """

    def __init__(self, layer: nn.Module, pack: bool) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        qkv, gate_up = [attn.q_proj, attn.k_proj, attn.v_proj], [mlp.gate_proj, mlp.up_proj]
        self.fused = pack and all(_base(m) is not None for m in qkv + gate_up)
        self.qkv_sizes = [m.out_features for m in qkv]
        self.mlp_sizes = [m.out_features for m in gate_up]
        groups = [qkv, gate_up] if self.fused else [[m] for m in qkv + gate_up]
        self.projs = [_Proj(g, pack) for g in groups]
        self.o, self.down = _Proj([attn.o_proj], pack), _Proj([mlp.down_proj], pack)
        self.norm1, self.eps1 = layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon
        self.norm2, self.eps2 = layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon

    def qkv(self, n: torch.Tensor, s: _Routing | None) -> Sequence[torch.Tensor]:
        """(W_q n, W_k n, W_v n); `s` = the forward's LoRA row scales (None: no adapter routed)."""
        if self.fused:
            return self.projs[0](n, s).split(self.qkv_sizes, -1)
        return self.projs[0](n, s), self.projs[1](n, s), self.projs[2](n, s)

    def mlp(self, n: torch.Tensor, s: _Routing | None) -> torch.Tensor:
        """W_down (SiLU(W_gate n) ⊙ W_up n)."""
        if self.fused:
            gate, up = self.projs[1](n, s).split(self.mlp_sizes, -1)
        else:
            gate, up = self.projs[3](n, s), self.projs[4](n, s)
        return self.down(F.silu(gate) * up, s)


class FastLlamaDecoder:
    """Decoder protocol (`start`, `step`) for a transformers LlamaForCausalLM, with a static KV cache."""

    def __init__(self, model: nn.Module, pad_id: int, capacity: int = 256, pack: bool | None = None) -> None:
        cfg, inner = model.config, model.model
        self.dtype = inner.embed_tokens.weight.dtype
        pack = can_pack(self.dtype) if pack is None else pack
        self.pad_id, self.capacity = pad_id, capacity
        # Adapters loaded on the model (RoutedLoRALinear): name -> rank.
        self.loras = [m for m in model.modules() if isinstance(m, RoutedLoRALinear)]
        self.ranks = {n: a.shape[0] for m in self.loras for n, a in m.lora_A.items()}
        self.layers = [_Layer(layer, pack) for layer in inner.layers[: cfg.num_hidden_layers]]
        self.embed, self.lm_head = inner.embed_tokens, _Proj([model.lm_head], pack)
        self.norm, self.eps = inner.norm.weight, inner.norm.variance_epsilon
        self.heads, self.kv_heads, self.hidden = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.gqa = self.heads != self.kv_heads
        self.inv_freq = inner.rotary_emb.inv_freq.float()  # θ_j = base^(-2j/d), exactly the buffer HF uses
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.length = 0

    def _allocate(self, rows: int, capacity: int) -> None:
        """(Re)allocate KV cache, key mask and RoPE table at `capacity` columns, keeping the first `length`."""
        shape, n = (rows, self.kv_heads, capacity, self.head_dim), self.length
        # Uninitialised: only columns < length are ever read, and each is written before (untouched pages cost nothing).
        keys = [torch.empty(shape, dtype=self.dtype) for _ in self.layers]
        values = [torch.empty(shape, dtype=self.dtype) for _ in self.layers]
        bias = torch.zeros(rows, 1, 1, capacity, dtype=self.dtype)  # additive key mask: 0 or -inf (padding)
        for new, old in zip(keys + values, self.keys + self.values):
            new[:, :, :n] = old[:, :, :n]
        if n:
            bias[..., :n] = self.bias[..., :n]
        self.keys, self.values, self.bias, self.capacity = keys, values, bias, capacity
        # RoPE table for positions p < capacity (a row's position never exceeds its column), float32 like HF:
        # rotate_half(x) · sin = roll(x, d/2) · [-sin, sin], so the sign lives in the table.
        freqs = torch.arange(capacity, dtype=torch.float32)[:, None] * self.inv_freq  # [P, d/2]
        self.cos = torch.cat((freqs, freqs), -1).cos().to(self.dtype)  # [P, d]
        self.sin = torch.cat((-freqs.sin(), freqs.sin()), -1).to(self.dtype)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """RoPE(x) = x·cos + rotate_half(x)·sin, rotate_half(x)·sin = roll(x, d/2)·[-sin, sin]."""
        return torch.addcmul(x * cos, x.roll(self.head_dim // 2, -1), sin)

    def _heads(self, y: torch.Tensor, b: int, t: int, n: int) -> torch.Tensor:
        """[B, T, n·d] -> [B, n, T, d] (a free view when T = 1)."""
        return y.view(b, n, 1, self.head_dim) if t == 1 else y.view(b, t, n, self.head_dim).transpose(1, 2)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """softmax(q kᵀ/√d + mask) v, query head h reading kv head h // group; returns [B, T, H·d]."""
        b, _, t, d = q.shape
        if t == 1:  # decode: a kv group's query heads act as the group's query positions (no GQA expand)
            a = F.scaled_dot_product_attention(q.view(b, self.kv_heads, -1, d), k, v, attn_mask=mask)
            return a.view(b, 1, -1)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.gqa)
        return a.transpose(1, 2).reshape(b, t, -1)

    def _forward(self, ids: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run `ids` [B, T] (cache columns length-T .. length-1) through all layers; return last-position logits."""
        b, t = ids.shape
        start, end = self.length - t, self.length
        s = self._scales(b)  # LoRA row scales S_m for this forward (None: base only)
        x = self.embed(ids)  # x_0 = E[ids]: [B, T, D]
        for L, k_cache, v_cache in zip(self.layers, self.keys, self.values):
            # h = x + W_o Attn(q, k, v): n = RMSNorm(x); q = RoPE(W_q n), k = RoPE(W_k n), v = W_v n
            n = F.rms_norm(x, (self.hidden,), L.norm1, L.eps1)
            q, k, v = L.qkv(n, s)
            q = self._rope(self._heads(q, b, t, self.heads), cos, sin)
            k_cache[:, :, start:end] = self._rope(self._heads(k, b, t, self.kv_heads), cos, sin)
            v_cache[:, :, start:end] = self._heads(v, b, t, self.kv_heads)
            x = x + L.o(self._attend(q, k_cache[:, :, :end], v_cache[:, :, :end], mask), s)
            # x' = h + W_down (SiLU(W_gate n) ⊙ W_up n), n = RMSNorm(h)
            n = F.rms_norm(x, (self.hidden,), L.norm2, L.eps2)
            x = x + L.mlp(n, s)
        # ℓ = W_lm RMSNorm(x_L) at the last position only
        x = F.rms_norm(x[:, -1:], (self.hidden,), self.norm, self.eps)
        return self.lm_head(x, s)[:, -1].float()

    def _scales(self, rows: int) -> _Routing | None:
        """The routing AdapterSet set for this forward, as routed adapters (sorted) and S_m per group size."""
        route: dict[str, torch.Tensor] = {}
        for m in self.loras:
            route.update(m.route)
        if not route:
            return None
        ranks = tuple((n, self.ranks[n]) for n in sorted(route))
        dtype = torch.float32 if rows <= _FP32_LORA_ROWS else self.dtype
        return _Routing(ranks, {m: lora_scales(route, dict(ranks), m, rows, dtype) for m in (1, 2, 3)}, dtype)

    @torch.inference_mode()
    def start(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Prefill the left-padded prompts; return next-token logits [rows, V] float32."""
        ids, pad_mask = left_pad(prompts, self.pad_id)
        rows, width = ids.shape
        self.keys, self.values, self.length = [], [], 0
        capacity = self.capacity
        while capacity <= width:
            capacity *= 2
        self._allocate(rows, capacity)
        self.length = width
        real = pad_mask.bool()
        self.bias[:, 0, 0, :width].masked_fill_(~real, float("-inf"))
        pos = (pad_mask.cumsum(-1) - 1).clamp(min=0)  # [B, T] position ids, 0 on padding (as HFDecoder)
        self.pos = pos[:, -1]
        # Query i sees keys j ≤ i that are not padding; a padding query also sees itself (no all -inf row, no NaN).
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        allowed = (causal & real[:, None, None, :]) | torch.eye(width, dtype=torch.bool)
        mask = torch.zeros(allowed.shape, dtype=self.dtype).masked_fill_(~allowed, float("-inf"))  # [B, 1, T, T]
        return self._forward(ids, self.cos[pos][:, None], self.sin[pos][:, None], mask)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token per row [rows]; return next-token logits [rows, V] float32."""
        if self.length == self.capacity:
            self._allocate(len(tokens), self.capacity * 2)
        self.length += 1
        self.pos = self.pos + 1
        cos, sin = self.cos[self.pos][:, None, None], self.sin[self.pos][:, None, None]  # [B, 1, 1, d]
        return self._forward(tokens[:, None], cos, sin, self.bias[..., : self.length])
