"""Int4 weights read straight from a GGUF's Q4_1 blocks, for torch's CPU int4 matmul (no re-quantization).

A Q4_1 block holds 32 consecutive weights of one output row (along K, the input dimension):

    struct block_q4_1 { fp16 d; fp16 m; uint8 qs[16]; }      w_j = d·q_j + m,   q_j ∈ 0…15
    qs[j] & 0xF = q_j,   qs[j] >> 4 = q_{j+16}                 (j = 0…15; ggml's layout)

torch's `_weight_int4pack_mm_for_cpu(x_bf16 [M, K], packed, group, scales_and_zeros)` computes
y = x Wᵀ with, per group of `group` weights along K, w = (q − 8)·scale + zero; `scales_and_zeros` is bf16
[K/group, N, 2]. With group = 32 a Q4_1 block maps onto one group exactly:

    (q − 8)·scale + zero = d·q + m   ⇔   scale = d,  zero = m + 8·d

so the 4-bit codes q are the file's own; only d and m + 8d are rounded to bfloat16 (the op refuses float32
scales). `dequantize` gives the weights the kernel really uses ("the int4-rounded weights"), which the
fidelity benchmark feeds to an independent float32 transformers + peft recomputation.

Layout: llama.cpp stores q and k with their rows permuted for its RoPE (convert_hf_to_gguf `permute`);
transformers undoes it on load (`_reverse_permute_weights`), and `hf_rows` does the same to block rows
(a permutation of whole rows keeps every block intact).

Row invariance: the kernel treats each row of x on its own (checked for M = 1…200 in tests/lm/test_int4.py),
so a row's bits do not depend on its batch.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

GROUP = 32  # Q4_1 block size = the kernel's group size
_BLOCK_BYTES = 20  # fp16 d, fp16 m, 16 bytes of nibbles
_INNER_TILE = 2  # `_convert_weight_to_int4pack_for_cpu`'s inner-K tile argument


def supported() -> bool:
    """torch's CPU int4 matmul exists and runs here (it has an AVX-512 path for bf16 activations)."""
    op = getattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu", None)
    if op is None:
        return False
    try:
        q = torch.zeros(16, 64, dtype=torch.int32)  # the op needs N % 16 == 0
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, _INNER_TILE)
        sz = torch.ones(2, 16, 2, dtype=torch.bfloat16)
        op(torch.ones(1, 64, dtype=torch.bfloat16), packed, GROUP, sz)
        return True
    except (RuntimeError, NotImplementedError):
        return False


@dataclass(frozen=True)
class Q4Weight:
    """One [N, K] weight as 4-bit codes q [N, K] (uint8, 0…15) with per-block d, m [N, K/32] float32."""

    q: torch.Tensor
    d: torch.Tensor
    m: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.q.shape)  # type: ignore[return-value]

    def rows(self, index: torch.Tensor) -> Q4Weight:
        return Q4Weight(self.q[index], self.d[index], self.m[index])

    @staticmethod
    def cat(parts: list[Q4Weight]) -> Q4Weight:
        """[W_1; …; W_m] stacked along N (fused q/k/v, gate/up)."""
        return Q4Weight(torch.cat([p.q for p in parts]), torch.cat([p.d for p in parts]), torch.cat([p.m for p in parts]))

    def scales_and_zeros(self) -> torch.Tensor:
        """bf16 [K/32, N, 2]: (scale, zero) = (d, m + 8d), each rounded to bfloat16 once."""
        scale = self.d.to(torch.bfloat16)
        zero = (self.m + 8 * self.d).to(torch.bfloat16)  # computed in float32 from the fp16 file values, then rounded
        return torch.stack([scale, zero], -1).transpose(0, 1).contiguous()

    def dequantize(self) -> torch.Tensor:
        """The float32 [N, K] weight the int4 kernel computes with: (q − 8)·scale + zero, scale/zero in bf16."""
        sz = self.scales_and_zeros().float()  # [G, N, 2]
        scale, zero = sz[..., 0].T, sz[..., 1].T  # [N, G]
        n, k = self.shape
        q = self.q.float().view(n, k // GROUP, GROUP)
        return ((q - 8) * scale[..., None] + zero[..., None]).view(n, k)

    def pack(self) -> PackedInt4:
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(self.q.to(torch.int32).contiguous(), _INNER_TILE)
        return PackedInt4(packed, self.scales_and_zeros(), self.shape[0])


@dataclass(frozen=True)
class PackedInt4:
    """A weight in the kernel's layout: y = x Wᵀ for bf16 x [M, K] -> bf16 [M, N]."""

    packed: torch.Tensor
    scales_and_zeros: torch.Tensor
    out_features: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.packed, GROUP, self.scales_and_zeros)

    @property
    def nbytes(self) -> int:
        return self.packed.numel() * self.packed.element_size() + self.scales_and_zeros.numel() * 2


def q4_1_from_blocks(raw: np.ndarray, n: int, k: int) -> Q4Weight:
    """Decode ggml Q4_1 blocks (uint8 [n, k/32·20]) into codes and block constants."""
    blocks = np.ascontiguousarray(raw, dtype=np.uint8).reshape(n, k // GROUP, _BLOCK_BYTES)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    qs = blocks[..., 4:]  # [n, G, 16]
    q = np.concatenate([qs & 0x0F, qs >> 4], -1).reshape(n, k)  # low nibbles are q_0…15, high q_16…31
    return Q4Weight(torch.from_numpy(q), torch.from_numpy(d), torch.from_numpy(m))


def hf_rows(n: int, heads: int) -> torch.Tensor:
    """Row order that turns llama.cpp's permuted q/k rows into transformers' (its `_reverse_permute_weights`)."""
    dim = n // heads // 2
    return torch.arange(n).view(heads, dim, 2).transpose(1, 2).reshape(n)


# GGUF tensor names of one llama layer -> transformers module paths
_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def read_gguf_q4_1(path: str, heads: int, kv_heads: int) -> dict[str, Q4Weight]:
    """Every Q4_1 layer weight of a llama GGUF, keyed by its transformers name ("model.layers.0.self_attn.q_proj"),
    rows in transformers' order. Raises ValueError naming the tensor if a layer weight is not Q4_1."""
    from gguf import GGMLQuantizationType, GGUFReader

    out: dict[str, Q4Weight] = {}
    for t in GGUFReader(path).tensors:
        parts = t.name.split(".")
        if len(parts) != 4 or parts[0] != "blk" or parts[2] not in _NAMES:
            continue
        if t.tensor_type != GGMLQuantizationType.Q4_1:
            raise ValueError(f"{Path(path).name}: {t.name} is {t.tensor_type.name}, the int4 path reads Q4_1 blocks only")
        k, n = (int(x) for x in t.shape)  # GGUF shapes are [K, N]
        w = q4_1_from_blocks(t.data, n, k)
        if parts[2] in ("attn_q", "attn_k"):
            w = w.rows(hf_rows(n, heads if parts[2] == "attn_q" else kv_heads))
        out[f"model.layers.{parts[1]}.{_NAMES[parts[2]]}"] = w
    return out


# one llama layer's projections in the groups the decoder multiplies together (q/k/v and gate/up fused)
LAYER_GROUPS = (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), ("self_attn.o_proj",),
                ("mlp.gate_proj", "mlp.up_proj"), ("mlp.down_proj",))


class Int4Layers:
    """A llama model's layer weights packed for the int4 kernel, by group of transformers module names.

    Built once per model (`from_gguf`); only the packed form is kept (≈ 0.6 bytes a weight with its bf16
    scale/zero pairs), so the 4-bit codes cost no second copy."""

    def __init__(self, packed: dict[tuple[str, ...], PackedInt4], source: str) -> None:
        self._packed, self.source = packed, source

    @classmethod
    def from_gguf(cls, path: str | Path, layers: int, heads: int, kv_heads: int, cache: Path | None = None) -> Int4Layers:
        """Read and pack the GGUF's Q4_1 layers; with `cache` (a directory), the packed tensors are stored there
        as safetensors once and loaded from it afterwards (seconds saved at every start). The cache key is the
        file (path, size, mtime), torch's version and the CPU capability (the packed layout may differ by them)."""
        path = Path(path)
        if cache is not None:
            st = path.stat()
            key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{torch.__version__}|"
                                 f"{torch.backends.cpu.get_cpu_capability()}|{layers}|{heads}|{kv_heads}".encode()).hexdigest()[:16]
            file = cache / f"int4-{key}.safetensors"
            if file.is_file():
                try:
                    return cls._load(file, str(path))
                except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt
                    file.unlink(missing_ok=True)
        built = cls.from_q4(read_gguf_q4_1(str(path), heads, kv_heads), layers, str(path))
        if cache is not None:
            built._save(file)
        return built

    def _save(self, file: Path) -> None:
        from safetensors.torch import save_file

        tensors = {}
        for names, p in self._packed.items():
            key = ",".join(names)
            tensors[f"{key}|packed"], tensors[f"{key}|sz"] = p.packed, p.scales_and_zeros
        tmp = file.with_name(file.name + f".tmp{os.getpid()}")
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            outs = {",".join(names): p.out_features for names, p in self._packed.items()}  # in layer order
            save_file(tensors, str(tmp), metadata={"out_features": json.dumps(outs)})
            os.replace(tmp, file)  # atomic: a reader sees the whole file or none
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only or full cache only costs the packing time

    @classmethod
    def _load(cls, file: Path, source: str) -> Int4Layers:
        from safetensors import safe_open

        packed = {}
        with safe_open(str(file), "pt") as f:
            outs = json.loads(f.metadata()["out_features"])  # group key -> out_features, in layer order
            for key, n in outs.items():
                packed[tuple(key.split(","))] = PackedInt4(f.get_tensor(f"{key}|packed"), f.get_tensor(f"{key}|sz"), n)
        for names, p in packed.items():
            if p.packed.shape[0] != p.out_features:
                raise ValueError(f"{file}: {names} does not fit its out_features")
        return cls(packed, source)

    @classmethod
    def from_q4(cls, raw: dict[str, Q4Weight], layers: int, source: str) -> Int4Layers:
        """Pack Q4_1 weights keyed by transformers module name (consumes `raw`)."""
        packed = {}  # insertion order = layer order (kept in the cache file's metadata)
        for i in range(layers):
            for group in LAYER_GROUPS:
                names = tuple(f"model.layers.{i}.{g}" for g in group)
                if all(n in raw for n in names):
                    w = Q4Weight.cat([raw.pop(n) for n in names])
                    if w.shape[0] % 16 == 0 and w.shape[1] % GROUP == 0:  # what the kernel packs
                        packed[names] = w.pack()
        return cls(packed, source)

    def get(self, names: tuple[str, ...]) -> PackedInt4 | None:
        """The packed [W_1; …; W_m] of these modules (a group of LAYER_GROUPS), or None (dense path)."""
        return self._packed.get(tuple(names))

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self._packed.values())
