"""Decoders: the forward passes behind the engine, one batch of rows, prefill then one token per step.

`HFDecoder` works for any transformers causal LM (left-padded batch, explicit position ids, a
DynamicCache). A faster architecture-specific decoder can replace it as long as it keeps the same two
calls and lets `RoutedLoRALinear` layers apply the per-row adapter deltas.
"""
from __future__ import annotations

from typing import Protocol
from collections.abc import Sequence

import torch
from transformers import DynamicCache


class Decoder(Protocol):
    def start(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Prefill the rows' prompts; return the next-token logits [rows, V] (float32)."""

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token per row [rows]; return the next-token logits [rows, V] (float32)."""


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad prompts so the newest token of every row is the last column; return (ids, mask)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids, mask


class HFDecoder:
    """Any `AutoModelForCausalLM`: left padding, position ids from the mask, dynamic KV cache."""

    def __init__(self, model: torch.nn.Module, pad_id: int) -> None:
        self.model, self.pad_id = model, pad_id
        self.mask = self.pos = self.cache = None

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=self.pos, past_key_values=self.cache,
                         use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :].float()

    def start(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        ids, self.mask = left_pad(prompts, self.pad_id)
        self.pos = (self.mask.cumsum(-1) - 1).clamp(min=0)
        self.cache = DynamicCache()
        return self._forward(ids)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, torch.ones(len(tokens), 1, dtype=self.mask.dtype)], dim=1)
        self.pos = self.pos[:, -1:] + 1
        return self._forward(tokens[:, None])
