"""Projections y = W x + the routed LoRA deltas, computed so a row's result never depends on its batch.

Two properties matter here, both measured on this CPU (torch 2.13, MKL 2024.2, oneDNN 3.12):

- **Batch invariance.** A bfloat16 matmul through oneDNN gives a row the same bits for every batch size.
  A float32 `F.linear` (MKL sgemm) does not: MKL picks kernels by the row count M and treats rows in a
  trailing block differently; padding M to a multiple of `ROW_TILE` = 4 made every row of M = 1…300
  bit-identical to the row alone. Float32 matmuls here therefore always run on a multiple of 4 rows.
- **The adapter's effect keeps its precision.** With bfloat16 weights the base product W x comes out
  rounded to bfloat16; adding a small LoRA delta onto that and rounding again drops every part of the
  delta below half a bfloat16 step, so the adapter's effect (and the KL it causes) shrinks. Here the
  delta is added to a float32 copy of W x and the sum stays float32 (the decoder keeps its residual
  stream, attention and KV cache in float32). With packed bf16 weights the A factors ride along in the
  base matmul (A x accumulated in float32, rounded once to bf16: a relative error of at most 2⁻⁹ of the
  delta, unbiased, and one matmul fewer per projection); (A x ⊙ S)(s B)ᵀ and the sum are float32.

Deltas are added adapter by adapter in a fixed (sorted) order, each with a per-row scale S (0 for rows
not routed to the adapter): Δ_a = ((x A_aᵀ) ⊙ S_a) (s B_a)ᵀ. A row routed to adapter a gets y + Δ_a + 0 + …
= y + Δ_a bit for bit, whichever other adapters share the batch (adapters no row uses are skipped).
"""
from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from playground.lm.int4 import PackedInt4
from playground.lm.lora import RoutedLoRALinear

ROW_TILE = 4  # float32 matmuls run on a multiple of this many rows (see module docstring)
_PACK_HINT = 64  # batch-size hint for oneDNN's weight layout (timings barely depend on it)
_PACKED: weakref.WeakKeyDictionary[nn.Linear, tuple[tuple, torch.Tensor]] = weakref.WeakKeyDictionary()


def can_pack(dtype: torch.dtype) -> bool:
    """oneDNN prepacked linear: used for bfloat16 on CPUs with native bf16 support."""
    return (dtype == torch.bfloat16 and torch.backends.mkldnn.is_available()
            and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def tile_rows(x: torch.Tensor, tile: int = ROW_TILE) -> torch.Tensor:
    """x [M, K] padded with zero rows to a multiple of `tile` rows (x itself when it already is)."""
    extra = -x.shape[0] % tile
    return x if extra == 0 else torch.cat([x, x.new_zeros(extra, x.shape[1])])


def fp32_matmul(x: torch.Tensor, w_t: torch.Tensor) -> torch.Tensor:
    """x [M, K] @ w_t [K, N] in float32 on a multiple of ROW_TILE rows: row i's result is independent of M."""
    m = x.shape[0]
    return (tile_rows(x) @ w_t)[:m]


def base_linear(module: nn.Module) -> nn.Linear | None:
    """The bias-free nn.Linear behind a projection (itself or a RoutedLoRALinear's base), else None."""
    base = module.base if isinstance(module, RoutedLoRALinear) else module
    return base if type(base) is nn.Linear and base.bias is None else None


def _packed_weight(linears: Sequence[nn.Linear], extra: Sequence[torch.Tensor] = (), extra_key: tuple = ()) -> torch.Tensor:
    """[W_1; …; W_m; extra rows] in oneDNN's blocked layout, cached per model (first module); repacked when a
    weight tensor or `extra_key` (what the extra rows were made from) changes."""
    try:
        key = tuple((lin.weight.data_ptr(), lin.weight._version) for lin in linears)
    except RuntimeError:  # inference tensors have no version counter
        key = tuple((lin.weight.data_ptr(), -1) for lin in linears)
    key = (key, extra_key)
    hit = _PACKED.get(linears[0])
    if hit is None or hit[0] != key:
        with torch.no_grad():
            w = torch.cat([lin.weight.detach() for lin in linears] + list(extra))
            hit = (key, torch.ops.mkldnn._reorder_linear_weight(w, _PACK_HINT))
        _PACKED[linears[0]] = hit
    return hit[1]


class LoraFactors:
    """One adapter's factors for a group of m projections sharing their input: A_aᵀ [in, m·r], (s·B_a)ᵀ [m·r, Σ out],
    block (j) placed on output slice j (zeros where the adapter does not target member j); float32."""

    __slots__ = ("a_t", "b_t")

    def __init__(self, modules: Sequence[nn.Module], name: str, rank: int) -> None:
        outs = [m.out_features for m in modules]
        a_blocks, b = [], torch.zeros(sum(outs), rank * len(modules))
        for j, m in enumerate(modules):
            if isinstance(m, RoutedLoRALinear) and name in m.lora_A:
                a_blocks.append(m.lora_A[name].float())
                b[sum(outs[:j]): sum(outs[: j + 1]), j * rank:(j + 1) * rank] = m.lora_B[name].float()
            else:
                a_blocks.append(torch.zeros(rank, modules[0].in_features))
        a_t, b_t = torch.cat(a_blocks).T, b.T
        pad = invariant_width(a_t.shape[1]) - a_t.shape[1]  # zero columns of A and rows of B: Δ unchanged
        if pad:
            a_t = torch.cat([a_t, a_t.new_zeros(a_t.shape[0], pad)], 1)
            b_t = torch.cat([b_t, b_t.new_zeros(pad, b_t.shape[1])], 0)
        self.a_t, self.b_t = a_t.contiguous(), b_t.contiguous()


# MKL's float32 GEMM is not batch-invariant for outputs 12…23 columns wide (measured on this CPU, torch 2.13:
# with x [M, K] @ A [K, N] on ROW_TILE-padded rows, row j differs from the row alone for M ≥ 13 at N = 12…23,
# for any K; N < 12 and N ≥ 24 are exact for M = 1…200). A rank-16 LoRA on a single projection (o_proj,
# down_proj) has N = 16, so its factors are padded with zeros to the next safe width.
NARROW_UNSAFE = range(12, 24)


def invariant_width(n: int) -> int:
    """The width to compute an [M, n] float32 product at so that each row is independent of M."""
    return NARROW_UNSAFE.stop if n in NARROW_UNSAFE else n


class Projection:
    """y = [W_1; …; W_m] x (+ routed LoRA deltas) for projections sharing an input, returned in float32.

    Packed (bfloat16 on oneDNN): the LoRA A factors of every adapter loaded on these modules are packed
    under W, so one matmul gives [W x; A_all x] with float32 accumulation; A_all x is rounded once to
    bfloat16 (relative error 2⁻⁹ of the delta, unbiased: nothing is lost), scaled per row, and
    Δ = (A_all x ⊙ S) (s B_all)ᵀ is computed and added in float32. Unpacked (float32 weights): W x by
    `F.linear`, then per routed adapter ((x A_aᵀ) ⊙ S_a)(s B_a)ᵀ, all float32 on ROW_TILE-padded rows.
    Int4 (`int4` given: the GGUF's Q4_1 codes, see int4.py): W x by torch's int4 kernel on bf16 x, then the
    LoRA deltas exactly as on the unpacked path (float32 factors on float32 activations).
    A projection whose base is not a bias-free nn.Linear is called as a module (RoutedLoRALinear then
    applies its own routing; no batch-invariance promise).
    """

    __slots__ = ("module", "weight", "packed", "int4", "loras", "factors", "out_features", "blocks", "b_all")

    def __init__(self, modules: Sequence[nn.Module], pack: bool, int4: PackedInt4 | None = None) -> None:
        bases = [base_linear(m) for m in modules]
        plain = all(b is not None for b in bases)
        self.int4 = int4 if plain else None  # W as 4-bit codes (int4.py): W x by the int4 kernel, LoRA as unpacked
        self.module = None if plain else modules[0]
        self.out_features = sum(m.out_features for m in modules)
        routed = plain and any(isinstance(m, RoutedLoRALinear) for m in modules)
        self.loras = list(modules) if routed else None
        self.factors: dict[str, LoraFactors] = {}  # adapter -> factors (unpacked path), built on first use
        self.weight, self.packed, self.blocks, self.b_all = None, None, (), None
        if self.int4 is not None:
            pass  # no dense copy of W; the LoRA factors are built on first use (the unpacked path)
        elif plain and not pack:
            self.weight = bases[0].weight if len(bases) == 1 else torch.cat([b.weight for b in bases])
        elif plain:
            names = sorted({n for m in modules if isinstance(m, RoutedLoRALinear) for n in m.lora_A})
            ranks = {n: a.shape[0] for m in modules if isinstance(m, RoutedLoRALinear) for n, a in m.lora_A.items()}
            factors = [LoraFactors(modules, n, ranks[n]) for n in names]
            self.blocks = tuple((n, f.a_t.shape[1]) for n, f in zip(names, factors))
            extra = [f.a_t.T.to(bases[0].weight.dtype) for f in factors]  # A_a rows under W
            lora_key = tuple((n, m.lora_A[n].data_ptr(), m.lora_B[n].data_ptr()) for n in names for m in modules
                             if isinstance(m, RoutedLoRALinear) and n in m.lora_A)
            self.packed = _packed_weight(bases, extra, lora_key)
            self.b_all = torch.cat([f.b_t for f in factors]) if factors else None  # (s B_all)ᵀ [Σ m·r_a, Σ out]

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """W x in the weights' dtype; x [M, in] in the weights' dtype."""
        if self.module is not None:
            return self.module(x)
        if self.int4 is not None:
            return self.int4(x)  # bf16 x -> bf16 W x, each row on its own (row-invariant)
        if x.dtype == torch.float32:
            m = x.shape[0]
            return F.linear(tile_rows(x), self.weight)[:m]
        return F.linear(x, self.weight)

    def __call__(self, x: torch.Tensor, x32: torch.Tensor, scales: dict[str, torch.Tensor]) -> torch.Tensor:
        """float32 [M, Σ out]: W x + Σ_a ((x A_aᵀ) ⊙ S_a) (s B_a)ᵀ.

        x: [M, in] the matmul input in the weights' dtype; x32: the same activations in float32 (the
        LoRA input of the unpacked path; may be `x` itself); scales: adapter -> S_a [M, 1] float32, the
        per-row scales of the adapters routed in this forward (0 on rows not routed to it).
        """
        if self.packed is not None:
            y_all = torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")  # [W; A_all] x
            y = y_all[:, : self.out_features].float()
            if self.b_all is not None and scales:
                start = self.out_features
                for name, width in self.blocks:  # adapters in sorted order; unrouted ones are skipped
                    s = scales.get(name)
                    if s is not None:
                        h = y_all[:, start:start + width].float().mul_(s)  # (A_a x) ⊙ S_a
                        rows = start - self.out_features
                        y += fp32_matmul(h, self.b_all[rows:rows + width])  # + Δ_a, in float32
                    start += width
            return y
        y = self.base(x)
        y = y.float() if y.dtype != torch.float32 else y
        if self.loras is None or not scales:
            return y
        x32 = tile_rows(x32)
        for name, s in scales.items():
            if not any(isinstance(m, RoutedLoRALinear) and name in m.lora_A for m in self.loras):
                continue
            f = self.factors.get(name)
            if f is None:
                rank = next(m.lora_A[name].shape[0] for m in self.loras if isinstance(m, RoutedLoRALinear) and name in m.lora_A)
                f = self.factors[name] = LoraFactors(self.loras, name, rank)
            h = (x32 @ f.a_t)[: y.shape[0]].mul_(s)  # (x A_aᵀ) ⊙ S_a   [M, m·r]
            y += fp32_matmul(h, f.b_t)  # + Δ_a, in float32
        return y
