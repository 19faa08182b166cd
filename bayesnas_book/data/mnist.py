"""MNIST through torchvision, with the IDX files' headers checked first.

torchvision's :class:`~torchvision.datasets.MNIST` reads ``ROOT/MNIST/raw/*-ubyte`` and meets a
bad file with a bare ``assert`` or a reshape error. :class:`CheckedMNIST` reads each file's IDX
header first and names the file and the problem: wrong magic number, wrong image size, a file
shorter or longer than its header says, labels that do not match the images.

The IDX format (big-endian)::

    magic   4 bytes  0x00 0x00 type ndim   (2051 = unsigned bytes, 3 dims: images;
                                            2049 = unsigned bytes, 1 dim: labels)
    dims    4 bytes each                   (N, 28, 28) or (N,)
    data    prod(dims) bytes               row-major pixels 0..255, or labels 0..9

Layout under ``ROOT``::

    ROOT/MNIST/raw/train-images-idx3-ubyte   train-labels-idx1-ubyte    60000 images
    ROOT/MNIST/raw/t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte     10000 images
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.datasets import MNIST
from torchvision.datasets.utils import download_and_extract_archive

from bayesnas_book.data.download import download_into_root
from bayesnas_book.data.errors import DatasetError, DatasetNotFoundError
from bayesnas_book.data.paths import resolve_root
from bayesnas_book.data.summary import DatasetSummary

__all__ = [
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "MNIST_CLASSES",
    "MNIST_FILES",
    "CheckedMNIST",
    "MNISTLayout",
    "check_mnist_folder",
    "mnist_dataset",
    "mnist_samples",
    "prepare_mnist",
    "read_idx_header",
]

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
MNIST_IMAGE_SIZE = 28
#: (images file, labels file) per split, as torchvision names them.
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_CLASSES = tuple(MNIST.classes)  # "0 - zero" ... "9 - nine"
_ALL_FILES = MNIST_FILES["train"] + MNIST_FILES["test"]


def _how_to_install(root: Path) -> str:
    return (
        f"run `bayesnas-book data mnist --root {root}` to download it (about 12 MB), or place "
        f"the four uncompressed files {', '.join(_ALL_FILES)} in {root / 'MNIST' / 'raw'}"
    )


def read_idx_header(path: str | os.PathLike[str], expected_magic: int) -> tuple[int, ...]:
    """Read and check an IDX file's header against the file's length.

    Args:
        path: an ``*-ubyte`` file.
        expected_magic: :data:`IDX_IMAGES_MAGIC` (2051) or :data:`IDX_LABELS_MAGIC` (2049).

    Returns:
        The dimensions the header declares, e.g. ``(60000, 28, 28)``.

    Raises:
        DatasetError: if the file cannot be read, its magic number differs, or its length is
            not ``4 + 4 * ndim + prod(dims)`` bytes.
    """
    path = Path(path)
    kind = "images" if expected_magic == IDX_IMAGES_MAGIC else "labels"
    ndim = expected_magic & 0xFF  # the magic's last byte is the number of dimensions
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            header = handle.read(4 + 4 * ndim)
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error}") from None
    if len(header) < 4:
        raise DatasetError(
            f"{path} is {size} bytes, too short for an IDX header; the file is truncated"
        )
    magic = int.from_bytes(header[:4], "big")
    if magic != expected_magic:
        raise DatasetError(
            f"wrong IDX magic number {magic} in {path}; expected {expected_magic} "
            f"(unsigned bytes, {ndim} dimensions: MNIST {kind}). Is it still gzip-compressed, "
            "or an images file where a labels file belongs?"
        )
    if len(header) < 4 + 4 * ndim:
        raise DatasetError(
            f"{path} is {size} bytes, too short for its {ndim} IDX dimensions; "
            "the file is truncated"
        )
    dims = tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_size = 4 + 4 * ndim + math.prod(dims)
    if size < expected_size:
        raise DatasetError(
            f"{path} is {size} bytes but its IDX header {dims} promises {expected_size}; "
            "the file is truncated"
        )
    if size > expected_size:
        raise DatasetError(
            f"{path} is {size} bytes but its IDX header {dims} describes {expected_size}; "
            f"{size - expected_size} unexpected bytes follow the data"
        )
    return dims


@dataclass(frozen=True)
class MNISTLayout:
    """A checked ``MNIST/raw`` folder.

    Attributes:
        raw_folder: ``ROOT/MNIST/raw``.
        train_size: images in the training files.
        test_size: images in the test (``t10k``) files.
    """

    raw_folder: Path
    train_size: int
    test_size: int


def _check_split(raw: Path, split: str, fix: str) -> int:
    images_name, labels_name = MNIST_FILES[split]
    try:
        image_dims = read_idx_header(raw / images_name, IDX_IMAGES_MAGIC)
        if image_dims[1:] != (MNIST_IMAGE_SIZE, MNIST_IMAGE_SIZE):
            raise DatasetError(
                f"{raw / images_name} holds images of {image_dims[1]}x{image_dims[2]} pixels; "
                f"MNIST's are {MNIST_IMAGE_SIZE}x{MNIST_IMAGE_SIZE}"
            )
        (label_count,) = read_idx_header(raw / labels_name, IDX_LABELS_MAGIC)
        if label_count != image_dims[0]:
            raise DatasetError(
                f"{raw / labels_name} has {label_count} labels but {raw / images_name} has "
                f"{image_dims[0]} images; the two files of a split must match"
            )
        labels = np.fromfile(raw / labels_name, dtype=np.uint8, offset=8)
    except DatasetError as error:
        raise DatasetError(f"{error}; {fix}") from None
    if labels.size and labels.max() > 9:
        raise DatasetError(
            f"{raw / labels_name}: labels must be in 0..9, found {int(labels.max())}; {fix}"
        )
    return image_dims[0]


def check_mnist_folder(root: str | os.PathLike[str] | None = None) -> MNISTLayout:
    """Check ``ROOT/MNIST/raw``: all four IDX files present and consistent.

    Args:
        root: the folder that holds ``MNIST/raw/`` (``None``: the default root).

    Returns:
        The :class:`MNISTLayout`.

    Raises:
        DatasetNotFoundError: if ``ROOT/MNIST/raw`` does not exist.
        DatasetError: naming the file and the problem if any check fails.
    """
    root = resolve_root(root)
    raw = root / "MNIST" / "raw"
    if not raw.is_dir():
        raise DatasetNotFoundError(
            f"MNIST not found: no folder {raw}. To get it, {_how_to_install(root)}"
        )
    fix = (
        f"delete {root / 'MNIST'} and run `bayesnas-book data mnist --root {root}` "
        "to download it again"
    )
    missing = [name for name in _ALL_FILES if not (raw / name).is_file()]
    if missing:
        zipped = [name for name in missing if (raw / f"{name}.gz").is_file()]
        hint = (
            f" (found {', '.join(n + '.gz' for n in zipped)}: decompress them with gunzip)"
            if zipped
            else ""
        )
        raise DatasetError(
            f"MNIST in {raw} is incomplete: missing {', '.join(missing)}{hint}; {fix}"
        )
    return MNISTLayout(raw, _check_split(raw, "train", fix), _check_split(raw, "test", fix))


class CheckedMNIST(MNIST):
    """torchvision's MNIST, with the IDX files checked before torchvision parses them.

    Items are ``(PIL image 28x28 grey, int label)`` before ``transform``; ``data`` is uint8
    ``(N, 28, 28)`` and ``targets`` int64 ``(N,)``.

    Args:
        root: the folder that holds ``MNIST/raw/``.
        train: the training files or the ``t10k`` test files.
        transform: applied to the PIL image.
        target_transform: applied to the label.

    Raises:
        DatasetError: see :func:`check_mnist_folder`.

    .. note::
       torchvision also accepts a legacy ``MNIST/processed/*.pt`` cache; this class reads only
       the raw IDX files it can check. There is no ``download`` argument (see
       :func:`prepare_mnist`).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        train: bool = True,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self.layout: MNISTLayout | None = None
        super().__init__(
            root,
            train=train,
            transform=transform,
            target_transform=target_transform,
            download=False,
        )

    @property
    def raw_folder(self) -> str:
        # torchvision derives the folder from the class name; keep the official "MNIST".
        return os.path.join(self.root, "MNIST", "raw")

    @property
    def processed_folder(self) -> str:
        return os.path.join(self.root, "MNIST", "processed")

    def _check_legacy_exist(self) -> bool:
        return False

    def _check_exists(self) -> bool:
        # Called by torchvision before it parses the files; raises instead of returning False.
        self.layout = check_mnist_folder(Path(self.root))
        return True


def mnist_dataset(
    root: str | os.PathLike[str] | None = None,
    train: bool = True,
    transform: Callable[[Any], Any] | None = None,
    target_transform: Callable[[Any], Any] | None = None,
) -> CheckedMNIST:
    """MNIST from ``ROOT/MNIST/raw`` (never downloads; see :func:`prepare_mnist`).

    Args:
        root: the folder that holds ``MNIST/raw/`` (``None``: the default root).
        train: training (60000) or test (10000) images.
        transform: applied to each PIL image.
        target_transform: applied to each label.

    Returns:
        A :class:`CheckedMNIST`.

    Raises:
        DatasetError: if the folder is missing or a file is malformed.
    """
    return CheckedMNIST(
        resolve_root(root), train=train, transform=transform, target_transform=target_transform
    )


def _fetch_raw_files(staging: Path) -> None:
    """Download the four gzip files into ``staging/MNIST/raw`` and decompress them there.

    Each file is tried on torchvision's mirrors in turn (md5-checked by torchvision).
    """
    raw = staging / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for filename, md5 in MNIST.resources:
        errors: list[Exception] = []
        for mirror in MNIST.mirrors:
            try:
                download_and_extract_archive(f"{mirror}{filename}", raw, filename=filename, md5=md5)
            except Exception as error:  # noqa: BLE001 - try the next mirror, report the last
                errors.append(error)
                continue
            break
        else:
            raise errors[-1]


def _summary(layout: MNISTLayout, root: Path, source: str) -> DatasetSummary:
    return DatasetSummary(
        name="mnist",
        root=root,
        splits={"train": layout.train_size, "test": layout.test_size},
        image_shape=(1, MNIST_IMAGE_SIZE, MNIST_IMAGE_SIZE),
        num_classes=len(MNIST_CLASSES),
        class_names=MNIST_CLASSES,
        source=source,
    )


def prepare_mnist(
    root: str | os.PathLike[str] | None = None, download: bool = True
) -> DatasetSummary:
    """Check MNIST under ``root``; download it first if it is absent and ``download`` is set.

    Args:
        root: the folder that holds (or will hold) ``MNIST/raw/``.
        download: fetch the four files from torchvision's mirrors when the folder is absent.

    Returns:
        The :class:`DatasetSummary`.

    Raises:
        DatasetError: if the data is absent and ``download`` is off, the download fails, or
            the files on disk are broken. ``ROOT/MNIST`` existing without a valid ``raw/`` is
            reported, never overwritten.
    """
    root = resolve_root(root)
    try:
        return _summary(check_mnist_folder(root), root, "checked on disk")
    except DatasetNotFoundError:
        if not download:
            raise
    download_into_root(
        root,
        "MNIST",
        _fetch_raw_files,
        check_mnist_folder,
        title="MNIST",
        source=(
            f"{', '.join(name for name, _ in MNIST.resources)} from {' or '.join(MNIST.mirrors)}"
        ),
        manual_help=(
            f"decompress the four files and place {', '.join(_ALL_FILES)} "
            f"in {root / 'MNIST' / 'raw'}"
        ),
    )
    return _summary(check_mnist_folder(root), root, f"downloaded from {MNIST.mirrors[0]}")


def mnist_samples(
    root: str | os.PathLike[str] | None, count: int
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The first ``count`` training images for a figure.

    Returns:
        ``images`` ``(n, 1, 28, 28)`` uint8, ``labels`` ``(n,)`` int64, class names.
    """
    dataset = mnist_dataset(root, train=True)
    return (
        dataset.data[:count].unsqueeze(1).clone(),
        dataset.targets[:count].clone(),
        list(MNIST_CLASSES),
    )
