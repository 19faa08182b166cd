"""Small datasets written in the real on-disk formats, so tests run the real loaders.

* :func:`write_cifar10_fixture`: ``cifar-10-batches-py/`` with Python 2 style protocol-2 pickles
  (``batch_label``, ``labels``, ``data``, ``filenames``; ``batches.meta`` with ``label_names``),
  byte for byte the structure of the official archive.
* :func:`write_mnist_fixture`: ``MNIST/raw/*-ubyte`` IDX files with big-endian headers.
* :func:`write_imagefolder_fixture`: ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``.

Images are not noise only: each class has its own colour (CIFAR-10, ImageNet) or the position
of a bright square (MNIST), plus seeded noise, so a small model can learn them in a smoke test.
Every file is written atomically. Only the md5 sums differ from the real data.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bayesnas_book.atomic import atomic_write_bytes
from bayesnas_book.data._py2pickle import dumps_py2
from bayesnas_book.data.cifar import (
    CIFAR10_CLASSES,
    CIFAR10_FOLDER,
    CIFAR10_META_FILE,
    CIFAR10_TEST_FILES,
    CIFAR10_TRAIN_FILES,
)
from bayesnas_book.data.mnist import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    MNIST_FILES,
    MNIST_IMAGE_SIZE,
)

__all__ = ["write_cifar10_fixture", "write_imagefolder_fixture", "write_mnist_fixture"]

_NOISE = 40  # +-amplitude of the uniform pixel noise added to every class pattern


def _check_count(argument: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{argument}` must be a positive integer, got {value!r}")


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}")


def _balanced_labels(count: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` labels covering every class as evenly as possible, in random order."""
    return rng.permutation(np.arange(count) % classes)


def _class_colours(classes: int) -> np.ndarray:
    """One well-separated RGB colour per class, ``(classes, 3)`` in 40..215."""
    hues = np.arange(classes) / classes
    phases = np.array([0.0, 1.0 / 3.0, 2.0 / 3.0])
    return (128 + 87 * np.cos(2 * np.pi * (hues[:, None] + phases[None, :]))).astype(np.int16)


def _noisy(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.integers(-_NOISE, _NOISE + 1, size=base.shape, dtype=np.int16)
    return np.clip(base.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def write_cifar10_fixture(
    root: str | os.PathLike[str],
    images_per_batch: int = 20,
    test_images: int = 20,
    seed: int = 0,
) -> Path:
    """Write a small ``ROOT/cifar-10-batches-py`` in the official archive's format.

    Args:
        root: the folder to hold ``cifar-10-batches-py/`` (created if missing).
        images_per_batch: images in each of ``data_batch_1..5`` (the real archive: 10000).
        test_images: images in ``test_batch`` (the real archive: 10000).
        seed: a non-negative integer; the same seed writes the same bytes.

    Returns:
        The ``cifar-10-batches-py`` folder.

    Raises:
        ValueError: if a count is not a positive integer or ``seed`` is negative.
    """
    _check_count("images_per_batch", images_per_batch)
    _check_count("test_images", test_images)
    _check_seed(seed)
    folder = Path(root) / CIFAR10_FOLDER
    rng = np.random.default_rng(seed)
    colours = _class_colours(len(CIFAR10_CLASSES))  # (10, 3)
    batches = [
        (name, images_per_batch, f"training batch {i + 1} of 5")
        for i, name in enumerate(CIFAR10_TRAIN_FILES)
    ]
    batches += [(name, test_images, "testing batch 1 of 1") for name in CIFAR10_TEST_FILES]
    serial = 0
    for name, count, batch_label in batches:
        labels = _balanced_labels(count, len(CIFAR10_CLASSES), rng)
        base = np.broadcast_to(
            colours[labels][:, :, None, None], (count, 3, 32, 32)
        )  # (N, C, H, W)
        data = _noisy(base, rng).reshape(count, 3 * 32 * 32)  # R plane, G plane, B plane per row
        filenames = []
        for label in labels:
            serial += 1
            filenames.append(f"fixture_{CIFAR10_CLASSES[label]}_s_{serial:06d}.png".encode("ascii"))
        batch = {
            b"batch_label": batch_label.encode("ascii"),
            b"labels": [int(label) for label in labels],
            b"data": data,
            b"filenames": filenames,
        }
        atomic_write_bytes(folder / name, dumps_py2(batch))
    meta = {
        b"num_cases_per_batch": images_per_batch,
        b"label_names": [name.encode("ascii") for name in CIFAR10_CLASSES],
        b"num_vis": 3 * 32 * 32,
    }
    atomic_write_bytes(folder / CIFAR10_META_FILE, dumps_py2(meta))
    return folder


def _idx_bytes(magic: int, array: np.ndarray) -> bytes:
    """An IDX file: big-endian magic, one big-endian uint32 per dimension, then the bytes."""
    return (
        struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
        + np.ascontiguousarray(array).tobytes()
    )


def write_mnist_fixture(
    root: str | os.PathLike[str],
    train_images: int = 60,
    test_images: int = 20,
    seed: int = 0,
) -> Path:
    """Write ``ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (uncompressed IDX).

    Image ``i`` of class ``y`` is dark noise with a bright 6x6 square at one of 12 positions
    (a 3x4 grid), set by ``y``.

    Args:
        root: the folder to hold ``MNIST/raw/`` (created if missing).
        train_images: images in the training files (the real data: 60000).
        test_images: images in the ``t10k`` files (the real data: 10000).
        seed: a non-negative integer; the same seed writes the same bytes.

    Returns:
        The ``MNIST/raw`` folder.

    Raises:
        ValueError: if a count is not a positive integer or ``seed`` is negative.
    """
    _check_count("train_images", train_images)
    _check_count("test_images", test_images)
    _check_seed(seed)
    raw = Path(root) / "MNIST" / "raw"
    rng = np.random.default_rng(seed)
    size = MNIST_IMAGE_SIZE
    for split, count in (("train", train_images), ("test", test_images)):
        labels = _balanced_labels(count, 10, rng).astype(np.uint8)
        base = np.full((count, size, size), _NOISE, dtype=np.int16)  # (N, H, W)
        for i, label in enumerate(labels):
            row, column = 1 + 9 * (label // 4), 1 + 7 * (label % 4)  # a 3x4 grid of positions
            base[i, row : row + 6, column : column + 6] = 215
        images = _noisy(base, rng)
        images_name, labels_name = MNIST_FILES[split]
        atomic_write_bytes(raw / images_name, _idx_bytes(IDX_IMAGES_MAGIC, images))
        atomic_write_bytes(raw / labels_name, _idx_bytes(IDX_LABELS_MAGIC, labels))
    return raw


def write_imagefolder_fixture(
    root: str | os.PathLike[str],
    classes: int | Sequence[str] = 3,
    images_per_class: int = 2,
    size: int = 32,
    seed: int = 0,
    splits: Sequence[str] = ("train", "val"),
) -> Path:
    """Write an ImageNet-style tree ``ROOT/<split>/<wnid>/*.JPEG`` of real JPEG files.

    Args:
        root: the folder to hold the split folders (created if missing).
        classes: a number of classes (named ``n00000000``, ``n00000001``, ... like wnids) or
            the class folder names.
        images_per_class: JPEGs per class and split.
        size: the side of each square image, in pixels.
        seed: a non-negative integer; the same seed writes the same images.
        splits: the split folders to write.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: if an argument breaks its rule (positive counts, unique non-empty names).
    """
    from PIL import Image

    if isinstance(classes, int) and not isinstance(classes, bool):
        _check_count("classes", classes)
        names = [f"n{index:08d}" for index in range(classes)]
    else:
        names = list(classes)
        if (
            not names
            or len(set(names)) != len(names)
            or not all(isinstance(n, str) and n.strip() for n in names)
        ):
            raise ValueError(
                f"`classes` must be a positive int or unique non-empty names, got {classes!r}"
            )
    _check_count("images_per_class", images_per_class)
    _check_count("size", size)
    _check_seed(seed)
    if isinstance(splits, str) or not splits:
        raise ValueError(f"`splits` must be a non-empty sequence of folder names, got {splits!r}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    colours = _class_colours(len(names))
    serial = 0
    for split in splits:
        for label, name in enumerate(names):
            for _ in range(images_per_class):
                serial += 1
                base = np.broadcast_to(colours[label][None, None, :], (size, size, 3))  # (H, W, C)
                buffer = io.BytesIO()
                Image.fromarray(_noisy(base, rng)).save(buffer, format="JPEG", quality=90)
                filename = (
                    f"{name}_{serial}.JPEG"
                    if split == "train"
                    else f"ILSVRC2012_val_{serial:08d}.JPEG"
                )
                atomic_write_bytes(root / split / name / filename, buffer.getvalue())
    return root
