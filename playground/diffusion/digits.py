"""The 8×8 scikit-learn digits, upsampled to 16×16, and a small classifier that measures "alignment".

`load_digit_images(split)` is the one place the train / held-out split is defined; the diffusion model
(models/digits/train_digits.py) trains on "train" only and the classifier's accuracy is reported on "test".
The classifier is a one-hidden-layer MLP fitted on the train split at first use (a few seconds, cached in
memory, never pickled). Its hidden layer is the feature space used by `features()` for diversity metrics.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from sklearn.neural_network import MLPClassifier

IMAGE_SIZE = 16
NUM_DIGITS = 10
NULL_CLASS = 10  # the "no condition" label used for classifier-free guidance
SPLIT_SEED = 0
TEST_SIZE = 0.2
SPLITS = ("train", "test", "all")


@lru_cache(maxsize=1)
def _all_images() -> tuple[np.ndarray, np.ndarray]:
    """Every digit as float32 [N,1,16,16] in [-1, 1] (bilinear upsampling of the 0..16 8×8 image)."""
    from sklearn.datasets import load_digits  # scikit-learn is imported on first use (~0.5 s)

    data = load_digits()
    small = torch.from_numpy(data.images.astype(np.float32) / 16.0).unsqueeze(1)  # [N,1,8,8] in [0,1]
    big = F.interpolate(small, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    images = (big.clamp(0.0, 1.0) * 2.0 - 1.0).numpy()
    return images, data.target.astype(np.int64)


@lru_cache(maxsize=1)
def _split_indices() -> tuple[np.ndarray, np.ndarray]:
    images, labels = _all_images()
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        idx, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=labels
    )
    return np.sort(train_idx), np.sort(test_idx)


def load_digit_images(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images float32 [N,1,16,16] in [-1,1] and labels int64 [N] for split "train", "test" or "all"."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    images, labels = _all_images()
    if split == "all":
        return images.copy(), labels.copy()
    train_idx, test_idx = _split_indices()
    idx = train_idx if split == "train" else test_idx
    return images[idx].copy(), labels[idx].copy()


def _flat(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """[N,1,16,16] (or [N,16,16]) in [-1,1] → [N,256] float64, clipped to the data range."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().float().numpy()
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim < 3 or arr.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"images must have shape [N,1,{IMAGE_SIZE},{IMAGE_SIZE}], got {arr.shape}")
    return np.clip(arr.reshape(arr.shape[0], -1), -1.0, 1.0)


@lru_cache(maxsize=1)
def classifier() -> MLPClassifier:
    """A 256→64→10 ReLU MLP fitted on the train split (deterministic, ~2 s on one core)."""
    from sklearn.neural_network import MLPClassifier

    images, labels = load_digit_images("train")
    clf = MLPClassifier(
        hidden_layer_sizes=(64,), alpha=1e-3, max_iter=600, random_state=0, early_stopping=False
    )
    with threadpool_limits(limits=1):  # tiny matrices: one BLAS thread is as fast and never oversubscribes
        clf.fit(_flat(images), labels)
    return clf


def class_probabilities(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Classifier probabilities [N,10] for images in [-1,1]."""
    clf = classifier()
    with threadpool_limits(limits=1):
        return clf.predict_proba(_flat(images))


def features(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """The classifier's hidden-layer activations [N,64]: a feature space where distance ≈ "looks different"."""
    clf = classifier()
    hidden = _flat(images) @ clf.coefs_[0] + clf.intercepts_[0]
    return np.maximum(hidden, 0.0)


@lru_cache(maxsize=1)
def heldout_accuracy() -> float:
    """Share of held-out real digits the classifier labels correctly."""
    images, labels = load_digit_images("test")
    return float((class_probabilities(images).argmax(axis=1) == labels).mean())
