"""FastLlamaDecoder: an explicit Llama forward over slot KV caches (kv_pools.py), written out like nanoGPT.

For a plain Llama (default RoPE, no biases, SiLU MLP, full attention) each layer is

    h  = x + W_o Attn(RoPE(W_q n), RoPE(W_k n), W_v n),      n = RMSNorm(x), keys/values cached
    x' = h + W_down (SiLU(W_gate n) ⊙ W_up n),               n = RMSNorm(h)
    ℓ  = W_lm RMSNorm(x_L)[last position]                    logits, float32

with every projection W + the routed LoRA deltas (`projections.Projection`). Rows join (`add`: prefill
their prompts) and leave (`remove`) between steps; `step` appends one token to every live row. Each row
sits in its own cache slot from column 0, in the KV pool of its width class, so its positions, keys and
masks do not depend on its batch; rows joining together are prefilled in one forward.

Precision at bfloat16 weights: the matmuls read bf16 weights, but the residual stream x, the norms,
RoPE, the LoRA deltas, the attention and the logits are float32: keys and values are cached in float32
(`cache_dtype`) and the LM head reads a float32 copy of its weight (one per model, oneDNN-packed). On
the shipped model this keeps the reported KL(π_λ ‖ π_base) within 0.1% (median) of a float32
transformers + peft recomputation; rounding onto bf16 activations, a bf16 KV cache or bf16 logits each
shrank it (0.87 before this change, 0.98 with only the cache in bf16). Padding rows: `step` pads the
batch to a multiple of ROW_TILE (spare cache slots), so every float32 matmul sees whole row tiles. See
projections.py and kv_cache.py for why a row's bits do not depend on its batch.
"""
from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from playground.lm.int4 import LAYER_GROUPS, Int4Layers
from playground.lm.kv_pools import KVPools
from playground.lm.lora import RoutedLoRALinear
from playground.lm.projections import ROW_TILE, Projection, base_linear, can_pack, tile_rows
from playground.settings.server import SCHEDULER

__all__ = ["FastLlamaDecoder", "supports", "can_pack"]
Route = tuple[str | None, float]  # (adapter or None, LoRA scale) of one forward row
_HEAD32: weakref.WeakKeyDictionary[nn.Module, tuple[torch.Tensor, bool]] = weakref.WeakKeyDictionary()


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


def _head_weight(model: nn.Module) -> tuple[torch.Tensor, bool]:
    """W_lm in float32, one copy per model: (oneDNN-packed weight, True) where oneDNN is available (3.5x faster
    than MKL's sgemm for this 49k x 576 matrix here, and row-invariant), else (the [V, D] weight, False)."""
    if model not in _HEAD32:
        w = model.lm_head.weight.detach().float()
        if torch.backends.mkldnn.is_available():
            _HEAD32[model] = (torch.ops.mkldnn._reorder_linear_weight(w, 64), True)
        else:
            _HEAD32[model] = (w, False)
    return _HEAD32[model]


class _Layer:
    """One decoder layer's projections and float32 norm weights. With packed bf16 weights q/k/v and gate/up
    run as one matmul each; otherwise one projection per module (no concatenated copies of the weights)."""

    def __init__(self, layer: nn.Module, pack: bool, int4: Int4Layers | None = None, index: int = 0) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        qkv, gate_up = [attn.q_proj, attn.k_proj, attn.v_proj], [mlp.gate_proj, mlp.up_proj]
        q4 = [int4.get(tuple(f"model.layers.{index}.{g}" for g in group)) if int4 else None for group in LAYER_GROUPS]
        plain = all(base_linear(m) is not None for m in qkv + gate_up)
        fused = plain and (pack or q4[0] is not None and q4[2] is not None)
        if fused:  # [q; k; v] and [gate; up] as one packed (or int4) matmul each
            self.proj = [Projection(qkv, pack, q4[0]), Projection(gate_up, pack, q4[2])]
        else:
            self.proj = [Projection([m], pack) for m in qkv + gate_up]
        self.fused = fused
        self.q_size, self.k_size, self.mlp_size = attn.q_proj.out_features, attn.k_proj.out_features, mlp.up_proj.out_features
        self.o, self.down = Projection([attn.o_proj], pack, q4[1]), Projection([mlp.down_proj], pack, q4[3])
        self.norm1, self.eps1 = layer.input_layernorm.weight.detach().float(), layer.input_layernorm.variance_epsilon
        self.norm2, self.eps2 = layer.post_attention_layernorm.weight.detach().float(), layer.post_attention_layernorm.variance_epsilon

    def qkv(self, nw: torch.Tensor, n: torch.Tensor, s: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """([W_q n; W_k n], W_v n) + LoRA deltas, float32 [M, q+k], [M, v]; nw: n in the weights' dtype."""
        if self.fused:
            y = self.proj[0](nw, n, s)
            return y[:, : self.q_size + self.k_size], y[:, self.q_size + self.k_size:]
        return torch.cat([self.proj[0](nw, n, s), self.proj[1](nw, n, s)], -1), self.proj[2](nw, n, s)

    def gate_up(self, nw: torch.Tensor, n: torch.Tensor, s: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fused:
            return self.proj[1](nw, n, s).split([self.mlp_size, self.mlp_size], -1)
        return self.proj[3](nw, n, s), self.proj[4](nw, n, s)


class FastLlamaDecoder:
    """Rows that `add` (prefill), `step` (one token each) and `remove`, over KV pools; logits float32."""

    def __init__(self, model: nn.Module, pad_id: int = 0, widths: Sequence[int] = SCHEDULER.kv_widths,
                 pack: bool | None = None, cache_dtype: torch.dtype = torch.float32, int4: Int4Layers | None = None) -> None:
        cfg, inner = model.config, model.model
        self.dtype = torch.bfloat16 if int4 is not None else inner.embed_tokens.weight.dtype  # the matmuls' input dtype
        pack = can_pack(self.dtype) and int4 is None if pack is None else pack
        self.pad_id = pad_id
        self.loras = [m for m in model.modules() if isinstance(m, RoutedLoRALinear)]
        self.layers = [_Layer(layer, pack, int4, i) for i, layer in enumerate(inner.layers[: cfg.num_hidden_layers])]
        self.int4 = int4 is not None
        if self.int4 and not all(p.int4 is not None for L in self.layers for p in [*L.proj, L.o, L.down]):
            raise ValueError(f"int4 weights from {int4.source} do not cover every projection of this model")
        self.embed = inner.embed_tokens
        self.head = _head_weight(model)
        self.norm, self.eps = inner.norm.weight.detach().float(), inner.norm.variance_epsilon
        self.heads, self.kv_heads, self.hidden = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.inv_freq = inner.rotary_emb.inv_freq.float()  # θ_j = base^(-2j/d), exactly the buffer HF uses
        self.cos = self.sin = torch.zeros(0, self.head_dim)
        self.kv = KVPools(len(self.layers), self.kv_heads, self.head_dim, cache_dtype, widths)  # slots by row width
        self.routes: list[Route] = []
        self._scales: dict | None = None  # S_a per routed adapter for the live rows, rebuilt when rows change

    @property
    def rows(self) -> int:
        return self.kv.rows

    # --- rows joining and leaving ------------------------------------------------------------------
    @torch.inference_mode()
    def add(self, prompts: Sequence[Sequence[int]], routes: Sequence[Route], reach: Sequence[int] | None = None) -> torch.Tensor:
        """Prefill new rows (after the live ones, in order); return their next-token logits [k, V] float32.

        reach[i]: the columns row i can reach (prompt + new tokens; default prompt + 1), which picks its KV
        pool. Identical (prompt, route) rows are computed once and copied; the others are prefilled together
        in one forward (see `_prefill`), each row from column 0 of its own slot."""
        routes = [(r[0], float(r[1])) if r[0] is not None and r[1] != 0.0 else (None, 0.0) for r in routes]
        lengths = [len(p) for p in prompts]
        start = self.rows
        slots = self.kv.add_rows(lengths, reach if reach is not None else [n + 1 for n in lengths])
        self.routes.extend(routes)
        self._scales = None
        unique: dict[tuple, int] = {}  # (prompt, route) -> first new row with it
        first = [unique.setdefault((tuple(p), r), i) for i, (p, r) in enumerate(zip(prompts, routes))]
        idx = sorted(unique.values(), key=lambda i: (slots[i][0], lengths[i]))  # by pool, equal lengths side by side
        try:
            out = self._prefill([prompts[i] for i in idx], [slots[i] for i in idx], [routes[i] for i in idx])
        except BaseException:
            self.remove(list(range(start, self.rows)))  # leave the live rows as they were
            raise
        logits = dict(zip(idx, out))
        for i, f in enumerate(first):
            if f != i:
                self.kv.copy_row(start + f, start + i)
        return torch.stack([logits[f] for f in first])

    @torch.inference_mode()
    def remove(self, rows: Sequence[int]) -> list[int]:
        """Drop rows; returns the old index of each remaining row (see KVPools.remove)."""
        order = self.kv.remove(rows)
        self.routes = [self.routes[i] for i in order]
        self._scales = None
        return order

    # --- the protocol HFDecoder shares (tests, teacher forcing) ---------------------------------------
    def start(self, prompts: Sequence[Sequence[int]], routes: Sequence[Route] | None = None) -> torch.Tensor:
        """Drop all rows, then `add` the prompts; routes default to those `AdapterSet.routing` set on the modules."""
        self.remove(range(self.rows))
        return self.add(prompts, routes if routes is not None else self.module_routes(len(prompts)))

    def module_routes(self, rows: int) -> list[Route]:
        """Per-row (adapter, scale) from the routing `AdapterSet.routing` placed on the LoRA modules."""
        routes: list[Route] = [(None, 0.0)] * rows
        for m in self.loras:
            for name, scale in m.route.items():
                for i, s in enumerate(scale.flatten().tolist()):
                    if s != 0.0:
                        routes[i] = (name, s)
        return routes

    # --- forward -------------------------------------------------------------------------------------
    def _route_scales(self, routes: Sequence[Route], repeat: int | Sequence[int] = 1) -> dict[str, torch.Tensor]:
        """S_a [Σ repeats, 1] float32 per routed adapter, row i's scale repeated `repeat` (or repeat[i]) times."""
        names = sorted({n for n, s in routes if n is not None})
        reps = repeat if isinstance(repeat, int) else torch.tensor(list(repeat))
        return {n: torch.tensor([s if r == n else 0.0 for r, s in routes]).repeat_interleave(reps)[:, None] for n in names}

    def _rope_tables(self, positions: int) -> None:
        """cos/sin tables for positions < `positions` (float32, as HF): rotate_half(x)·sin = roll(x, d/2)·[-sin, sin]."""
        if positions <= len(self.cos):
            return
        size = max(positions, 2 * len(self.cos), 256)
        freqs = torch.arange(size, dtype=torch.float32)[:, None] * self.inv_freq  # [P, d/2]
        self.cos = torch.cat((freqs, freqs), -1).cos()
        self.sin = torch.cat((-freqs.sin(), freqs.sin()), -1)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """RoPE(x) = x·cos + rotate_half(x)·sin on [M, heads, d] float32."""
        return torch.addcmul(x * cos, x.roll(self.head_dim // 2, -1), sin)

    def _layers(self, ids: torch.Tensor, pos: torch.Tensor, scales: dict, attend) -> torch.Tensor:
        """x_L for ids [M] at positions pos [M]; `attend(layer, q, k, v)` -> [M, H·d] writes the cache and attends."""
        m, d = len(ids), self.head_dim
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]  # [M, 1, d]
        x = self.embed(ids).float()  # x_0 = E[ids], residual stream in float32  [M, D]
        for i, L in enumerate(self.layers):
            # h = x + W_o Attn(q, k, v): n = RMSNorm(x); q = RoPE(W_q n), k = RoPE(W_k n), v = W_v n
            n = F.rms_norm(x, (self.hidden,), L.norm1, L.eps1)
            nw = n.to(self.dtype)
            qk, v = L.qkv(nw, n, scales)
            qk = self._rope(qk.view(m, self.heads + self.kv_heads, d), cos, sin)  # q and k rotated together
            a = attend(i, qk[:, : self.heads], qk[:, self.heads:], v.view(m, self.kv_heads, d))  # [M, H·d] float32
            x += L.o(a.to(self.dtype), a, scales)
            # x' = h + W_down (SiLU(W_gate n) ⊙ W_up n), n = RMSNorm(h)
            n = F.rms_norm(x, (self.hidden,), L.norm2, L.eps2)
            nw = n.to(self.dtype)
            gate, up = L.gate_up(nw, n, scales)
            h = F.silu(gate) * up
            x += L.down(h.to(self.dtype), h, scales)
        return x

    def _logits(self, x_last: torch.Tensor) -> torch.Tensor:
        """ℓ = W_lm RMSNorm(x_L) in float32 [rows, V]."""
        n = tile_rows(F.rms_norm(x_last, (self.hidden,), self.norm, self.eps))
        w, packed = self.head
        y = torch.ops.mkldnn._linear_pointwise(n, w, None, "none", [], "") if packed else F.linear(n, w)
        return y[: len(x_last)]

    def _prefill(self, prompts: Sequence[Sequence[int]], slots: Sequence[tuple[int, int]], routes: Sequence[Route]) -> torch.Tensor:
        """Prompts (by pool, equal lengths side by side) into their (pool, slot), columns 0..t_i-1; logits of their
        last positions [k, V].

        One forward for all of them (a join of several submissions costs one pass over the weights): the
        projections take every prompt's tokens as rows of one matmul (row-invariant, see projections.py), and
        attention runs per run of equal length t in one pool, on [k_t, heads, t, d], causal within each prompt."""
        hk, d = self.kv_heads, self.head_dim
        lengths = [len(p) for p in prompts]
        ids = torch.tensor([tok for p in prompts for tok in p], dtype=torch.long)  # [Σ t_i]
        self._rope_tables(max(lengths))
        pos = torch.cat([torch.arange(t) for t in lengths])
        groups, start = [], 0  # [token offset, rows, length t, pool, its slots] per run of equal (pool, length)
        for (pool, slot), t in zip(slots, lengths):
            if groups and groups[-1][2] == t and groups[-1][3] == pool:
                groups[-1][1] += 1
                groups[-1][4].append(slot)
            else:
                groups.append([start, 1, t, pool, [slot]])
            start += t
        cdtype = self.kv.dtype

        def attend(i: int, q, k, v):
            out = []
            for off, rows, t, pool, group_slots in groups:
                span, cache = slice(off, off + rows * t), self.kv.pools[pool]
                keys = k[span].view(rows, t, hk, d).transpose(1, 2).to(cdtype)  # [rows, kv_heads, t, d]
                values = v[span].view(rows, t, hk, d).transpose(1, 2).to(cdtype)
                slot_idx = torch.tensor(group_slots)
                cache.keys[i][slot_idx, :, :t] = keys
                cache.values[i][slot_idx, :, :t] = values
                qh = q[span].view(rows, t, self.heads, d).transpose(1, 2).to(cdtype)
                a = F.scaled_dot_product_attention(qh, keys, values, is_causal=True, enable_gqa=self.heads != hk)
                out.append(a.transpose(1, 2).reshape(rows * t, -1))
            return (out[0] if len(out) == 1 else torch.cat(out)).float()

        x = self._layers(ids, pos, self._route_scales(routes, lengths), attend)
        last = torch.tensor(lengths).cumsum(0) - 1  # each prompt's last position among the packed tokens
        return self._logits(x[last])

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token per live row [rows]; return next-token logits [rows, V] float32.

        The projections run on all rows, padded to a multiple of ROW_TILE (the padding rows get no attention);
        attention runs pool by pool, each row over its own pool's span with columns past its position masked."""
        n, hk, d = self.rows, self.kv_heads, self.head_dim
        m = n + (-n % ROW_TILE)
        lengths = self.kv.lengths  # the new token goes to column lengths[r] = its position
        self._rope_tables(int(lengths.max()) + 1)
        pos = torch.cat([lengths, lengths.new_zeros(m - n)])  # padding rows: position 0
        ids = torch.cat([tokens.long(), tokens.new_full((m - n,), self.pad_id, dtype=torch.long)])
        cdtype = self.kv.dtype
        plan = []  # per pool: (cache, its rows, all rows in order?, span, lengths, one column or None, mask)
        for p, rows in self.kv.groups():
            cache = self.kv.pools[p]
            at = cache.lengths
            self.kv.reserve(p, cache.rows, int(at.max()) + 1)
            span = min(cache.span(extra=1), cache.capacity[1])
            column = int(at[0]) if bool((at == at[0]).all()) else None  # all rows write one column: a slice
            mask = torch.zeros(len(at), 1, 1, span, dtype=cdtype).masked_fill_(
                torch.arange(span) > at[:, None, None, None], float("-inf"))  # row r sees columns 0..pos_r
            whole = len(rows) == n and bool((rows == torch.arange(n)).all())
            plan.append((cache, rows, whole, span, at, column, mask))
        if self._scales is None:
            self._scales = self._route_scales(self.routes + [(None, 0.0)] * (m - n))

        def attend(i: int, q, k, v):
            out = q.new_zeros(m, self.heads * d, dtype=cdtype)
            for cache, rows, whole, span, at, column, mask in plan:
                kc, vc, r = cache.keys[i], cache.values[i], len(at)
                kr, vr, qr = (k[:n], v[:n], q[:n]) if whole else (k[rows], v[rows], q[rows])
                if column is not None:
                    kc[:r, :, column] = kr
                    vc[:r, :, column] = vr
                else:
                    kc[torch.arange(r), :, at] = kr.to(cdtype)
                    vc[torch.arange(r), :, at] = vr.to(cdtype)
                # decode: a kv group's query heads act as the group's query positions (no GQA expand)
                qh = qr.to(cdtype).view(r, hk, -1, d)
                a = F.scaled_dot_product_attention(qh, kc[:r, :, :span], vc[:r, :, :span], attn_mask=mask).reshape(r, -1)
                if whole:
                    out[:n] = a
                else:
                    out[rows] = a
            return out.float()

        x = self._layers(ids, pos, self._scales, attend)
        self.kv.advanced()
        return self._logits(x)[:n]
