"""The bundled all-MiniLM-L6-v2 embedder behaves like sentence-transformers' (mean pooling + L2 norm)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from playground.judges.embeddings import Embedder, default_embedder_path, get_embedder


def test_default_path_is_a_sentence_transformers_dir() -> None:
    path = default_embedder_path()
    assert path.name == "model"
    assert (path / "config.json").is_file()
    assert (path / "model.safetensors").is_file()


def test_encode_shape_dtype_and_unit_norm() -> None:
    emb = get_embedder().encode(["hello world", "", "a much longer sentence " * 200])
    assert emb.shape == (3, 384)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_empty_list_gives_empty_matrix() -> None:
    assert get_embedder().encode([]).shape == (0, 384)


def test_semantic_similarity_ordering() -> None:
    emb = get_embedder().encode(
        ["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."]
    )
    close, far = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert close > far + 0.3  # sentence-transformers gives about 0.755 vs 0.247
    assert close == pytest.approx(0.7553, abs=2e-3)


def test_batching_and_order_do_not_change_embeddings() -> None:
    texts = ["short", "a medium length sentence here", "x", "another one, somewhat longer than the others"]
    embedder = get_embedder()
    np.testing.assert_allclose(embedder.encode(texts, batch_size=1), embedder.encode(texts, batch_size=64), atol=1e-5)


def test_get_embedder_is_cached() -> None:
    assert get_embedder() is get_embedder()


def test_missing_path_names_path_and_expectation(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=r"nope.*expected config\.json"):
        Embedder(str(missing))


def test_single_string_is_refused() -> None:
    with pytest.raises(TypeError):
        get_embedder().encode("not a list")  # type: ignore[arg-type]
