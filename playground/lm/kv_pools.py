"""KV pools: one slot cache per width class, so a short row does not take the width of the longest row.

A slot cache (kv_cache.py) gives every row the same number of columns: the longest row's. Beside a sweep
of 300-token prompts, a chat turn's 55-token rows would each hold 512 float32 columns (23 MB a row on the
shipped model instead of 3 MB), fill the KV budget and wait. Here a row goes, when it joins, to the pool of
the columns it can reach (prompt + new tokens, `reach`), rounded up to a width class (`widths`; the last
pool takes everything longer). Each pool is a compact `SlotCache` that grows and empties on its own.

Rows keep one order across pools (the decoder's row index, appended on `add_rows`, compacted stably on
`remove`); `where[r] = (pool, slot)`. A decode step runs the projections on all rows at once and attention
pool by pool (`groups`), each over its own span. Per row nothing changes: its keys sit at columns
0..len-1 of its own slot, whichever pool, so its bits do not depend on the other rows (see kv_cache.py).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from playground.lm.kv_cache import SPAN_TILE, SlotCache


class KVPools:
    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype, widths: Sequence[int]) -> None:
        self.widths = sorted(widths)
        assert all(w % SPAN_TILE == 0 for w in self.widths), f"KV widths must be multiples of {SPAN_TILE}: {widths}"
        self.dtype = dtype
        # pool p holds rows that reach at most widths[p] columns; the last pool, everything longer
        self.pools = [SlotCache(layers, kv_heads, head_dim, dtype, cols=w) for w in self.widths]
        self.pools.append(SlotCache(layers, kv_heads, head_dim, dtype, cols=self.widths[-1] * 2))
        self.where: list[tuple[int, int]] = []  # row -> (pool, slot)
        self.reach: list[int] = []  # row -> the columns it can fill (prompt + new tokens)
        self.max_bytes: int | None = None  # all pools together (set by the scheduler)
        self._groups: list[tuple[int, torch.Tensor]] | None = None

    # --- where rows live -------------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        return len(self.where)

    def pool_of(self, reach: int) -> int:
        """The pool of a row that can reach `reach` columns."""
        return next((p for p, w in enumerate(self.widths) if reach <= w), len(self.widths))

    def groups(self) -> list[tuple[int, torch.Tensor]]:
        """(pool, rows [n_p]: the row in each of its slots 0..n_p-1) for every pool in use."""
        if self._groups is None:
            rows: dict[int, list[int]] = {}
            for r, (p, s) in enumerate(self.where):
                rows.setdefault(p, [0] * self.pools[p].rows)[s] = r
            self._groups = [(p, torch.tensor(rows[p])) for p in sorted(rows)]
        return self._groups

    @property
    def lengths(self) -> torch.Tensor:
        """Tokens cached per row, in row order."""
        out = torch.zeros(self.rows, dtype=torch.long)
        for p, rows in self.groups():
            out[rows] = self.pools[p].lengths
        return out

    # --- memory ----------------------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Memory the pools hold now."""
        return sum(pool.bytes_for(0, 0) if pool.keys else 0 for pool in self.pools)

    def bytes_for(self, extra: dict[int, tuple[int, int]]) -> int:
        """Memory the pools must hold at least, once their rows and extra[p] = (rows, longest reach) added to
        pool p reach their full length."""
        reach: dict[int, int] = {}
        for (p, _), r in zip(self.where, self.reach):
            reach[p] = max(reach.get(p, 0), r)
        total = 0
        for p, pool in enumerate(self.pools):
            rows, cols = extra.get(p, (0, 0))
            if rows or pool.rows:
                total += pool.bytes_for(pool.rows + rows, max(cols, reach.get(p, 0)))
        return total

    def place(self, reach: int, prompt: int) -> int:
        """The pool a row of `prompt` tokens that can reach `reach` columns joins."""
        return self.pool_of(max(reach, prompt + 1))

    def reserve(self, p: int, rows: int, cols: int) -> None:
        """Room in pool p; it grows within what the other pools leave of `max_bytes` (see SlotCache._grown)."""
        pool = self.pools[p]
        if self.max_bytes is not None:
            others = sum(q.bytes_for(0, 0) for i, q in enumerate(self.pools) if i != p and q.keys)
            pool.max_bytes = max(self.max_bytes - others, 0)
        pool.reserve(rows, cols)

    # --- rows joining and leaving ------------------------------------------------------------------------
    def add_rows(self, lengths: Sequence[int], reach: Sequence[int]) -> list[tuple[int, int]]:
        """Append rows holding lengths[i] tokens (written by the caller's prefill), each in the pool of reach[i]."""
        pools = [self.place(r, n) for n, r in zip(lengths, reach)]
        slots: dict[int, int] = {}
        for p in sorted(set(pools)):
            idx = [i for i, q in enumerate(pools) if q == p]
            pool = self.pools[p]
            self.reserve(p, pool.rows + len(idx), max(lengths[i] for i in idx) + 1)
            slots.update(zip(idx, pool.add_rows([lengths[i] for i in idx])))
        placed = [(p, slots[i]) for i, p in enumerate(pools)]
        self.where += placed
        self.reach += [max(r, n + 1) for n, r in zip(lengths, reach)]
        self._groups = None
        return placed

    def copy_row(self, src: int, dst: int) -> None:
        """Row dst := row src (a deduplicated prefill), across pools if they differ."""
        (ps, ss), (pd, sd) = self.where[src], self.where[dst]
        a, b = self.pools[ps], self.pools[pd]
        n = int(a.lengths[ss])
        for x, y in zip(a.keys + a.values, b.keys + b.values):
            y[sd, :, :n] = x[ss, :, :n]

    def remove(self, rows: Sequence[int]) -> list[int]:
        """Drop rows; return the old index of each remaining row (their order is kept)."""
        gone = set(rows)
        moved: dict[int, dict[int, int]] = {}
        for p, pool in enumerate(self.pools):
            slots = [s for r, (q, s) in enumerate(self.where) if q == p and r in gone]
            if slots:
                moved[p] = {old: new for new, old in enumerate(pool.remove(slots))}
        order = [r for r in range(self.rows) if r not in gone]
        self.where = [(p, moved[p][s] if p in moved else s) for p, s in (self.where[r] for r in order)]
        self.reach = [self.reach[r] for r in order]
        self._groups = None
        return order

    def advanced(self) -> None:
        """Every row holds one more token (after a decode step wrote it)."""
        for pool in self.pools:
            if pool.rows:
                pool.lengths = pool.lengths + 1
