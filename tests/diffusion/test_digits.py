"""The digit data split and the "alignment" classifier."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from playground.diffusion import digits


def test_images_are_16x16_in_range_and_split_is_fixed_and_disjoint() -> None:
    train_x, train_y = digits.load_digit_images("train")
    test_x, test_y = digits.load_digit_images("test")
    all_x, _ = digits.load_digit_images("all")
    assert train_x.shape == (1437, 1, 16, 16) and test_x.shape == (360, 1, 16, 16)
    assert train_x.dtype == np.float32 and all_x.min() == -1.0 and all_x.max() == 1.0
    assert set(np.unique(test_y)) == set(range(10))  # stratified: every digit held out
    # no held-out image appears in the train split
    train_rows = {row.tobytes() for row in train_x.reshape(len(train_x), -1)}
    overlap = sum(row.tobytes() in train_rows for row in test_x.reshape(len(test_x), -1))
    assert overlap <= 2  # load_digits holds a few exact duplicates; none are shared by design
    again_x, again_y = digits.load_digit_images("test")
    assert np.array_equal(again_x, test_x) and np.array_equal(again_y, test_y)


def test_unknown_split_raises() -> None:
    with pytest.raises(ValueError, match="split"):
        digits.load_digit_images("validation")


def test_classifier_heldout_accuracy_at_least_95_percent() -> None:
    assert digits.heldout_accuracy() >= 0.95


def test_probabilities_and_features_shapes_accept_numpy_and_torch() -> None:
    x, _ = digits.load_digit_images("test")
    probs = digits.class_probabilities(torch.from_numpy(x[:5]))
    assert probs.shape == (5, 10) and np.allclose(probs.sum(axis=1), 1.0)
    feats = digits.features(x[:5])
    assert feats.shape == (5, 64) and (feats >= 0).all()


def test_bad_image_shape_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        digits.class_probabilities(np.zeros((2, 1, 8, 8), np.float32))
