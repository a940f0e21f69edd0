"""A slot KV cache for rows that join and leave a running batch (continuous batching).

Each forward row owns one slot; the live rows are always slots 0..n-1 (compact), so a decode step reads
the views K[:n, :, :span] without gathering. Row r's tokens sit at columns 0..len_r-1 (no left padding),
so its RoPE position is its column and its attention sees exactly the same keys, in the same places,
whatever other rows share the batch: columns past len_r are masked. A row that leaves is replaced by the
last live row (one copy per layer), and `remove` reports the new order so callers can remap.

Storage per layer: K, V [row_capacity, kv_heads, col_capacity, head_dim] (float32 by default, also at
bfloat16 weights: rounding keys and values to bfloat16 shrank the measured KL to the base model by 2%),
grown by doubling and zero initialised (masked columns then hold finite values: 0·V never makes a NaN). When the batch empties the
storage is dropped, so a long prompt does not hold memory after it is done.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

SPAN_TILE = 64  # a decode step attends over a multiple of this many columns (SDPA rows stay bit-identical)


class SlotCache:
    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
                 rows: int = 4, cols: int = 256) -> None:
        self.layers, self.kv_heads, self.head_dim, self.dtype = layers, kv_heads, head_dim, dtype
        self.min_rows, self.min_cols = rows, cols
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.lengths = torch.zeros(0, dtype=torch.long)  # tokens cached per live row
        self.max_bytes: int | None = None  # set by the scheduler: growth stays within it where the need does

    @property
    def rows(self) -> int:
        return len(self.lengths)

    @property
    def capacity(self) -> tuple[int, int]:
        return (self.keys[0].shape[0], self.keys[0].shape[2]) if self.keys else (0, 0)

    def _grown(self, rows: int, cols: int) -> tuple[int, int]:
        """Row and column capacity after `reserve(rows, cols)`: doubling (few copies). Where doubling would pass
        `max_bytes`: columns to the need (a multiple of SPAN_TILE) and as many rows as fit in `max_bytes` (a
        multiple of 8, at least the need), so a cache near its budget grows once rather than at every join."""
        old_r, old_c = max(self.capacity[0], self.min_rows), max(self.capacity[1], self.min_cols)
        new_r, new_c = old_r, old_c
        while new_r < rows:
            new_r *= 2
        while new_c < cols:
            new_c *= 2
        if self.max_bytes is not None and self._bytes(new_r, new_c) > self.max_bytes:
            need_r, need_c = self._need(rows, cols)
            c = new_c if self._bytes(need_r, new_c) <= self.max_bytes else need_c
            fit_r = self.max_bytes // self._bytes(1, c) // 8 * 8
            r = max(need_r, min(new_r, fit_r))
            if self._bytes(r, c) < self._bytes(new_r, new_c):
                return r, c
        return new_r, new_c

    def _need(self, rows: int, cols: int) -> tuple[int, int]:
        """The least capacity that holds `rows` × `cols` (rows to a multiple of 8, columns of SPAN_TILE)."""
        old_r, old_c = max(self.capacity[0], self.min_rows), max(self.capacity[1], self.min_cols)
        return max(old_r, -(-rows // 8) * 8), max(old_c, -(-cols // SPAN_TILE) * SPAN_TILE)

    def _bytes(self, rows: int, cols: int) -> int:
        return 2 * self.layers * rows * self.kv_heads * cols * self.head_dim * self.dtype.itemsize

    def bytes_for(self, rows: int, cols: int) -> int:
        """Memory the cache must hold at least to take `rows` × `cols` (what it holds now, or the need rounded to
        whole tiles); `reserve` may add headroom, without passing `max_bytes` where the need fits in it."""
        return self._bytes(*self._need(rows, cols))

    def reserve(self, rows: int, cols: int) -> None:
        """Make room for `rows` live rows of up to `cols` tokens each (doubling; contents kept)."""
        if rows <= self.capacity[0] and cols <= self.capacity[1]:
            return
        new_r, new_c = self._grown(rows, cols)
        n, used = self.rows, int(self.lengths.max()) if self.rows else 0
        shape = (new_r, self.kv_heads, new_c, self.head_dim)
        grown = []
        for old in self.keys + self.values:
            t = torch.zeros(shape, dtype=self.dtype)
            t[:n, :, :used] = old[:n, :, :used]
            grown.append(t)
        if not grown:
            grown = [torch.zeros(shape, dtype=self.dtype) for _ in range(2 * self.layers)]
        self.keys, self.values = grown[: self.layers], grown[self.layers:]

    def add_rows(self, lengths: Sequence[int]) -> range:
        """Append rows that will hold lengths[i] tokens (written by the caller's prefill); return their slots."""
        n, count = self.rows, len(lengths)
        self.reserve(n + count, max(lengths, default=0) + 1)
        self.lengths = torch.cat([self.lengths, torch.tensor(list(lengths), dtype=torch.long)])
        return range(n, n + count)

    def copy_row(self, src: int, dst: int) -> None:
        """Slot dst := slot src (a deduplicated prefill: same prompt, same adapter routing)."""
        n = int(self.lengths[src])
        for t in self.keys + self.values:
            t[dst, :, :n] = t[src, :, :n]

    def span(self, extra: int = 0) -> int:
        """Columns a step attends over: the longest row (+ extra), rounded up to SPAN_TILE."""
        longest = int(self.lengths.max()) + extra if self.rows else extra
        return -(-longest // SPAN_TILE) * SPAN_TILE

    def remove(self, rows: Sequence[int]) -> list[int]:
        """Drop `rows`; return `order`, the old index of each remaining row (new row j = old row order[j]).

        Holes below the new size are filled with the last live rows (one slot copy each)."""
        gone = set(rows)
        n = self.rows
        keep = n - len(gone)
        order = list(range(keep))
        movers = [r for r in range(keep, n) if r not in gone]
        holes = [r for r in range(keep) if r in gone]
        for hole, src in zip(holes, movers):
            order[hole] = src
            m = int(self.lengths[src])
            for t in self.keys + self.values:
                t[hole, :, :m] = t[src, :, :m]
        self.lengths = self.lengths[order] if order else self.lengths[:0]
        if keep == 0:
            self.keys, self.values = [], []  # release the memory; the next join allocates afresh
        return order
