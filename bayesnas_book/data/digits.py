"""scikit-learn's 8x8 handwritten digits: a real dataset that ships inside a package.

1797 grey images of the digits 0-9 (UCI "Optical Recognition of Handwritten Digits"), each
pixel an integer count 0..16. They are read from scikit-learn's installed files, so no
download is ever needed; the quick profile's chapters search and compress on them.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from bayesnas_book.data.splits import disjoint_split
from bayesnas_book.data.summary import DatasetSummary

__all__ = [
    "DIGITS_CLASSES",
    "digits_samples",
    "digits_splits",
    "load_digits",
    "prepare_digits",
    "run_digits_splits",
]

#: Class names in label order.
DIGITS_CLASSES = tuple(str(digit) for digit in range(10))
_MAX_PIXEL = 16.0  # the digits' pixels count "on" cells of a 4x4 block: 0..16


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)  # (N, 8, 8), values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)  # (N,)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as tensors.

    Returns:
        ``images`` ``(N, 1, 8, 8)`` in torch's default dtype (float32, or float64 in the quick
        profile; pixel / 16 is exact in both) in ``[0, 1]`` and ``labels`` ``(N,)``
        int64 in ``0..9``, with ``N = 1797``. Fresh tensors on every call.
    """
    images, labels = _digits_arrays()
    x = torch.tensor(images, dtype=torch.get_default_dtype()).unsqueeze(1) / _MAX_PIXEL  # (N, 8, 8) -> (N, 1, 8, 8)
    return x, torch.tensor(labels)


def digits_splits(
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    stratify: bool = True,
) -> dict[str, TensorDataset]:
    """Deterministic, disjoint train / validation / test sets of the digits.

    Args:
        validation_fraction: share of the images in ``"validation"``, in ``(0, 1)``.
        test_fraction: share in ``"test"``, in ``(0, 1)``; the rest is ``"train"``.
        seed: a non-negative integer; the same seed gives the same split.
        stratify: keep the class proportions in every split (see
            :func:`~bayesnas_book.data.splits.disjoint_split`).

    Returns:
        ``{"train", "validation", "test"}`` -> ``TensorDataset(images (n, 1, 8, 8), labels (n,))``.

    Raises:
        ValueError: if a fraction is outside ``(0, 1)`` or the two leave no training images.
    """
    for argument, value in (
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
            raise ValueError(f"`{argument}` must be in (0, 1), got {value!r}")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            "`validation_fraction + test_fraction` must be < 1 to leave training images, "
            f"got {validation_fraction + test_fraction:.6g}"
        )
    images, labels = load_digits()
    fractions = [1.0 - validation_fraction - test_fraction, validation_fraction, test_fraction]
    parts = disjoint_split(len(labels), fractions, seed=seed, labels=labels if stratify else None)
    return {
        name: TensorDataset(images[index], labels[index])
        for name, index in zip(("train", "validation", "test"), parts, strict=True)
    }


def run_digits_splits(data: Any) -> dict[str, TensorDataset]:
    """The digits splits of a run: :func:`digits_splits` with the run's ``[data]`` section.

    Every command that uses the digits (search, train, compress, study) cuts them this way, so
    a run's held-out ``"test"`` split is the same for all of them and set by ``data.split_seed``
    alone, never by the run's seed.

    Args:
        data: a :class:`~bayesnas_book.config.DataConfig` (``validation_fraction``, ``split_seed``).

    Returns:
        As :func:`digits_splits`, with the default test fraction.
    """
    return digits_splits(validation_fraction=data.validation_fraction, seed=data.split_seed)

def prepare_digits(
    root: str | os.PathLike[str] | None = None, download: bool = True
) -> DatasetSummary:
    """Load the digits and summarise them (``root`` and ``download`` are ignored: they ship).

    Returns:
        The :class:`DatasetSummary`.
    """
    images, _ = load_digits()
    return DatasetSummary(
        name="digits",
        root=None,
        splits={"all": len(images)},
        image_shape=tuple(images.shape[1:]),
        num_classes=len(DIGITS_CLASSES),
        class_names=DIGITS_CLASSES,
        source="scikit-learn's load_digits (8x8 digits, shipped with the package)",
    )


def digits_samples(
    root: str | os.PathLike[str] | None, count: int
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The first ``count`` digits for a figure.

    Returns:
        ``images`` ``(count, 1, 8, 8)`` uint8 in ``0..255``, ``labels`` ``(count,)``, class names.
    """
    images, labels = load_digits()
    pixels = (images[:count] * 255).round().to(torch.uint8)
    return pixels, labels[:count], list(DIGITS_CLASSES)
