"""CIFAR-10 through torchvision, with the files checked for presence and structure.

torchvision's :class:`~torchvision.datasets.CIFAR10` accepts a folder only if every file's md5
matches the official archive, and otherwise says "Dataset not found or corrupted". Fixture files
(written by :func:`~bayesnas_book.data.fixtures.write_cifar10_fixture` in the real format) can
never match those sums, and the message does not say which file is wrong. :class:`CheckedCIFAR10`
therefore replaces the md5 test by a structural one that names the file and the problem, and
leaves the parsing to torchvision's own code. The md5 test is still available
(``verify_checksums=True``) for real downloads.

Layout under ``ROOT`` (the official archive, extracted)::

    ROOT/cifar-10-batches-py/data_batch_1 ... data_batch_5   training, 10000 images each
    ROOT/cifar-10-batches-py/test_batch                      test, 10000 images
    ROOT/cifar-10-batches-py/batches.meta                    label_names

Each batch is a Python 2 pickle of a dict with ``data`` (uint8 ``(N, 3072)``: the red, green
and blue 32x32 planes of each image, row-major) and ``labels`` (N ints in 0..9).

.. note::
   Unpickling runs code named by the file, as torchvision does too: only read folders you trust.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import calculate_md5, download_and_extract_archive

from bayesnas_book.data.download import download_into_root
from bayesnas_book.data.errors import DatasetError, DatasetNotFoundError
from bayesnas_book.data.paths import resolve_root
from bayesnas_book.data.summary import DatasetSummary

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_FOLDER",
    "CIFAR10_META_FILE",
    "CIFAR10_TEST_FILES",
    "CIFAR10_TRAIN_FILES",
    "CIFAR10Layout",
    "CheckedCIFAR10",
    "check_cifar10_folder",
    "cifar10_dataset",
    "cifar10_samples",
    "prepare_cifar10",
]

CIFAR10_FOLDER = CIFAR10.base_folder  # "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(name for name, _ in CIFAR10.train_list)  # data_batch_1 .. 5
CIFAR10_TEST_FILES = tuple(name for name, _ in CIFAR10.test_list)  # test_batch
CIFAR10_META_FILE = CIFAR10.meta["filename"]  # batches.meta
#: The official class names, in label order.
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_PIXELS = 3 * 32 * 32
_MD5 = {name: md5 for name, md5 in CIFAR10.train_list + CIFAR10.test_list}
_MD5[CIFAR10_META_FILE] = CIFAR10.meta["md5"]


def _how_to_install(root: Path) -> str:
    return (
        f"run `bayesnas-book data cifar10 --root {root}` to download it (about 163 MB from "
        f"{CIFAR10.url}), or place the extracted `{CIFAR10_FOLDER}/` folder "
        f"({', '.join(CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES)}, {CIFAR10_META_FILE}) in {root}"
    )


@dataclass(frozen=True)
class CIFAR10Layout:
    """A checked ``cifar-10-batches-py`` folder.

    Attributes:
        folder: the ``cifar-10-batches-py`` folder.
        train_size: images in ``data_batch_1..5``.
        test_size: images in ``test_batch``.
        class_names: ``label_names`` from ``batches.meta``.
    """

    folder: Path
    train_size: int
    test_size: int
    class_names: tuple[str, ...]


def _unpickle(path: Path, fix: str) -> Any:
    """Load one CIFAR-10 pickle the way torchvision does, or say what is wrong with it."""
    try:
        with open(path, "rb") as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # old numpy module names in Python 2 pickles
            return pickle.load(handle, encoding="latin1")
    except Exception as error:  # noqa: BLE001 - any failure means the same thing to the user
        raise DatasetError(
            f"cannot read {path}: it is truncated or not a CIFAR-10 python pickle "
            f"({type(error).__name__}: {error}); {fix}"
        ) from None


def _check_batch(path: Path, fix: str) -> int:
    """Check one data batch's keys, shapes and labels; return its number of images."""
    entry = _unpickle(path, fix)
    if not isinstance(entry, dict):
        raise DatasetError(
            f"{path} holds a {type(entry).__name__}, expected a dict with 'data' and "
            f"'labels'; {fix}"
        )
    missing = [key for key in ("data", "labels") if key not in entry]
    if missing:
        found = ", ".join(repr(key) for key in entry) or "none"
        raise DatasetError(
            f"{path} lacks the key(s) {', '.join(map(repr, missing))} (found: {found}); {fix}"
        )
    data, labels = entry["data"], entry["labels"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _PIXELS
    ):
        described = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise DatasetError(
            f"{path}: 'data' must be a uint8 array of shape (N, {_PIXELS}), "
            f"got a {described}; {fix}"
        )
    if not isinstance(labels, list) or not all(
        isinstance(y, int) and not isinstance(y, bool) for y in labels
    ):
        raise DatasetError(
            f"{path}: 'labels' must be a list of ints, got {type(labels).__name__}; {fix}"
        )
    if len(labels) != len(data):
        raise DatasetError(f"{path} has {len(data)} images but {len(labels)} labels; {fix}")
    bad = [y for y in labels if not 0 <= y <= 9]
    if bad:
        raise DatasetError(
            f"{path}: labels must be in 0..9, found {bad[0]} ({len(bad)} bad); {fix}"
        )
    return len(labels)


def _check_meta(path: Path, fix: str) -> tuple[str, ...]:
    meta = _unpickle(path, fix)
    names = meta.get("label_names") if isinstance(meta, dict) else None
    if (
        not isinstance(names, list)
        or len(names) != 10
        or not all(isinstance(n, str) for n in names)
    ):
        raise DatasetError(
            f"{path} must hold a dict whose 'label_names' is a list of 10 strings; {fix}"
        )
    return tuple(names)


def check_cifar10_folder(
    root: str | os.PathLike[str] | None = None, verify_checksums: bool = False
) -> CIFAR10Layout:
    """Check ``ROOT/cifar-10-batches-py`` file by file.

    Every file must exist and unpickle into the right keys, dtypes, shapes and labels (see the
    module docstring); with ``verify_checksums`` each must also match the official md5.

    Args:
        root: the folder that holds ``cifar-10-batches-py/`` (``None``: the default root).
        verify_checksums: also compare md5 sums with the official archive's (real data only).

    Returns:
        The :class:`CIFAR10Layout`.

    Raises:
        DatasetNotFoundError: if ``cifar-10-batches-py/`` does not exist.
        DatasetError: naming the first wrong file and what to do, if any check fails.
    """
    root = resolve_root(root)
    folder = root / CIFAR10_FOLDER
    if not folder.is_dir():
        raise DatasetNotFoundError(
            f"CIFAR-10 not found: no folder {folder}. To get it, {_how_to_install(root)}"
        )
    fix = f"delete {folder} and run `bayesnas-book data cifar10 --root {root}` to download it again"
    names = CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES + (CIFAR10_META_FILE,)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DatasetError(
            f"CIFAR-10 in {folder} is incomplete: missing {', '.join(missing)}; {fix}"
        )
    if verify_checksums:
        for name in names:
            actual = calculate_md5(folder / name)
            if actual != _MD5[name]:
                raise DatasetError(
                    f"{folder / name} has md5 {actual}, expected {_MD5[name]} "
                    f"(the official archive); {fix}"
                )
    train_size = sum(_check_batch(folder / name, fix) for name in CIFAR10_TRAIN_FILES)
    test_size = sum(_check_batch(folder / name, fix) for name in CIFAR10_TEST_FILES)
    class_names = _check_meta(folder / CIFAR10_META_FILE, fix)
    return CIFAR10Layout(
        folder=folder, train_size=train_size, test_size=test_size, class_names=class_names
    )


class CheckedCIFAR10(CIFAR10):
    """torchvision's CIFAR-10, checked for structure instead of md5 sums.

    Items are ``(PIL image 32x32 RGB, int label)`` before ``transform``, as in torchvision;
    ``data`` is the uint8 array ``(N, 32, 32, 3)`` and ``targets`` the list of labels.

    Args:
        root: the folder that holds ``cifar-10-batches-py/``.
        train: the 50000 training images (``data_batch_1..5``) or the 10000 test images.
        transform: applied to the PIL image.
        target_transform: applied to the label.
        verify_checksums: also require the official md5 sums.

    Raises:
        DatasetError: see :func:`check_cifar10_folder`.

    .. note::
       There is no ``download`` argument: downloads go through
       :func:`~bayesnas_book.data.prepare.prepare_dataset`, which never leaves a partial folder.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        train: bool = True,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        verify_checksums: bool = False,
    ) -> None:
        self.verify_checksums = verify_checksums
        self.layout: CIFAR10Layout | None = None
        super().__init__(
            root,
            train=train,
            transform=transform,
            target_transform=target_transform,
            download=False,
        )

    def _check_integrity(self) -> bool:
        # Called by torchvision before it parses the batches; raises instead of returning False.
        self.layout = check_cifar10_folder(Path(self.root), verify_checksums=self.verify_checksums)
        return True

    def _load_meta(self) -> None:
        assert self.layout is not None, "_check_integrity runs before _load_meta"
        self.classes = list(self.layout.class_names)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}

    def download(self) -> None:  # pragma: no cover - never called with download=False
        raise DatasetError(
            "use `bayesnas-book data cifar10` (prepare_dataset) to download CIFAR-10"
        )


def cifar10_dataset(
    root: str | os.PathLike[str] | None = None,
    train: bool = True,
    transform: Callable[[Any], Any] | None = None,
    target_transform: Callable[[Any], Any] | None = None,
    verify_checksums: bool = False,
) -> CheckedCIFAR10:
    """CIFAR-10 from ``ROOT/cifar-10-batches-py`` (never downloads; see :func:`prepare_cifar10`).

    Args:
        root: the folder that holds ``cifar-10-batches-py/`` (``None``: the default root).
        train: training (50000) or test (10000) images.
        transform: applied to each PIL image (e.g. ``torchvision.transforms.ToTensor()``).
        target_transform: applied to each label.
        verify_checksums: also require the official md5 sums.

    Returns:
        A :class:`CheckedCIFAR10`.

    Raises:
        DatasetError: if the folder is missing or a file is incomplete or malformed.
    """
    return CheckedCIFAR10(
        resolve_root(root),
        train=train,
        transform=transform,
        target_transform=target_transform,
        verify_checksums=verify_checksums,
    )


def _summary(layout: CIFAR10Layout, root: Path, source: str) -> DatasetSummary:
    return DatasetSummary(
        name="cifar10",
        root=root,
        splits={"train": layout.train_size, "test": layout.test_size},
        image_shape=(3, 32, 32),
        num_classes=len(layout.class_names),
        class_names=layout.class_names,
        source=source,
    )


def _fetch_archive(staging: Path) -> None:
    """Download and extract the official archive into ``staging`` (md5-checked by torchvision)."""
    download_and_extract_archive(
        CIFAR10.url, staging, filename=CIFAR10.filename, md5=CIFAR10.tgz_md5
    )


def prepare_cifar10(
    root: str | os.PathLike[str] | None = None, download: bool = True
) -> DatasetSummary:
    """Check CIFAR-10 under ``root``; download it first if it is absent and ``download`` is set.

    An existing but broken folder is reported, never overwritten.

    Args:
        root: the folder that holds (or will hold) ``cifar-10-batches-py/``.
        download: fetch the official archive when the folder is absent.

    Returns:
        The :class:`DatasetSummary`.

    Raises:
        DatasetError: if the data is absent and ``download`` is off, the download fails (the
            message says whether the network was unreachable and which files to place where),
            or the folder on disk is broken.
    """
    root = resolve_root(root)
    try:
        return _summary(check_cifar10_folder(root), root, "checked on disk")
    except DatasetNotFoundError:
        if not download:
            raise
    download_into_root(
        root,
        CIFAR10_FOLDER,
        _fetch_archive,
        lambda staging: check_cifar10_folder(staging, verify_checksums=True),
        title="CIFAR-10",
        source=CIFAR10.url,
        manual_help=(
            f"extract it and place the `{CIFAR10_FOLDER}/` folder "
            f"({', '.join(CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES)}, {CIFAR10_META_FILE}) "
            f"in {root}"
        ),
    )
    return _summary(check_cifar10_folder(root), root, f"downloaded from {CIFAR10.url}")


def cifar10_samples(
    root: str | os.PathLike[str] | None, count: int
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The first ``count`` training images for a figure.

    Returns:
        ``images`` ``(n, 3, 32, 32)`` uint8, ``labels`` ``(n,)`` int64, class names.
    """
    dataset = cifar10_dataset(root, train=True)
    pixels = torch.from_numpy(np.ascontiguousarray(dataset.data[:count])).permute(
        0, 3, 1, 2
    )  # (n,H,W,C)->(n,C,H,W)
    return (
        pixels.contiguous(),
        torch.tensor(dataset.targets[:count], dtype=torch.int64),
        list(dataset.classes),
    )
