"""ImageNet (ILSVRC-2012) from a local ImageFolder tree.

There is no download: ImageNet's licence requires each user to fetch it from image-net.org.
The expected layout, one folder per class named by its WordNet id::

    ROOT/train/n01440764/n01440764_10026.JPEG ...
    ROOT/val/n01440764/ILSVRC2012_val_00000293.JPEG ...

The official validation archive is flat (50000 JPEGs plus a ground-truth file); sort it into
class folders first. :func:`check_imagenet_folder` names a missing split, a flat or empty split,
an empty class folder and class folders that differ between ``train`` and ``val``, before
torchvision's :class:`~torchvision.datasets.ImageFolder` scans the tree.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from bayesnas_book.data.errors import DatasetError, DatasetNotFoundError
from bayesnas_book.data.paths import resolve_root
from bayesnas_book.data.summary import DatasetSummary

__all__ = [
    "IMAGENET_SPLITS",
    "ImageNetLayout",
    "check_imagenet_folder",
    "default_imagenet_root",
    "imagenet_folder",
    "imagenet_samples",
    "prepare_imagenet",
]

IMAGENET_SPLITS = ("train", "val")
_SAMPLE_SIZE = 64  # side of the square crops shown in sample grids


def default_imagenet_root() -> Path:
    """``<default data root>/imagenet``: where ImageNet is looked for when ``root`` is ``None``."""
    return resolve_root(None) / "imagenet"


def _imagenet_root(root: str | os.PathLike[str] | None) -> Path:
    return default_imagenet_root() if root is None else resolve_root(root)


def _layout_help(root: Path) -> str:
    return (
        "ImageNet cannot be downloaded automatically: get ILSVRC-2012 from https://image-net.org, "
        f"and arrange it as {root / 'train'}/<wnid>/*.JPEG and {root / 'val'}/<wnid>/*.JPEG "
        "(the validation images sorted into one folder per class), then run "
        f"`bayesnas-book data imagenet --root {root}`"
    )


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _class_folders(split_folder: Path) -> list[str]:
    """The sorted class folders of one split (as ImageFolder orders them), each with an image."""
    with os.scandir(split_folder) as entries:
        items = [
            (entry.name, entry.is_dir()) for entry in entries if not entry.name.startswith(".")
        ]
    classes = sorted(name for name, is_dir in items if is_dir)
    if not classes:
        loose = sum(1 for name, is_dir in items if not is_dir and _is_image(name))
        hint = (
            f"; it holds {loose} images directly: sort them into one folder per class (wnid)"
            if loose
            else ""
        )
        raise DatasetError(
            f"{split_folder} has no class folders; expected {split_folder}/<wnid>/*.JPEG{hint}"
        )
    for name in classes:
        with os.scandir(split_folder / name) as entries:
            if not any(entry.is_file() and _is_image(entry.name) for entry in entries):
                raise DatasetError(
                    f"class folder {split_folder / name} has no images "
                    f"(extensions {', '.join(IMG_EXTENSIONS)}); fill it or remove it"
                )
    return classes


def _compare_classes(root: Path, by_split: dict[str, list[str]]) -> None:
    (first, first_classes), (second, second_classes) = by_split.items()
    if first_classes == second_classes:
        return

    def listing(names: set[str]) -> str:
        shown = sorted(names)[:5]
        more = len(names) - len(shown)
        return (", ".join(shown) + (f" (and {more} more)" if more else "")) if names else "none"

    only_first = set(first_classes) - set(second_classes)
    only_second = set(second_classes) - set(first_classes)
    raise DatasetError(
        f"the class folders of {root / first} and {root / second} differ, so their labels would "
        f"not match: only in {first}: {listing(only_first)}; "
        f"only in {second}: {listing(only_second)}. "
        "Both splits need the same class folders"
    )


@dataclass(frozen=True)
class ImageNetLayout:
    """A checked ImageNet folder.

    Attributes:
        root: the folder holding ``train/`` and ``val/``.
        classes: the class folder names (wnids), sorted: label ``i`` is ``classes[i]``.
        splits: the splits that were checked.
    """

    root: Path
    classes: tuple[str, ...]
    splits: tuple[str, ...]


def check_imagenet_folder(
    root: str | os.PathLike[str] | None = None,
    splits: Sequence[str] = IMAGENET_SPLITS,
) -> ImageNetLayout:
    """Check an ImageNet ImageFolder tree.

    Each requested split folder must exist and hold class folders, each with at least one
    image. If both ``train`` and ``val`` exist (requested or not), their class folders must be
    the same, or the labels of the two splits would not mean the same classes.

    Args:
        root: the folder holding ``train/`` and ``val/`` (``None``: ``<data root>/imagenet``).
        splits: which splits must be present.

    Returns:
        The :class:`ImageNetLayout`.

    Raises:
        ValueError: if a split name is not ``"train"`` or ``"val"``.
        DatasetNotFoundError: if ``root`` does not exist.
        DatasetError: for a missing or flat split, an empty class folder or differing classes.
    """
    for split in splits:
        if split not in IMAGENET_SPLITS:
            raise ValueError(f"`split` must be one of {', '.join(IMAGENET_SPLITS)}, got {split!r}")
    root = _imagenet_root(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"ImageNet not found: no folder {root}. {_layout_help(root)}")
    by_split: dict[str, list[str]] = {}
    for split in IMAGENET_SPLITS:
        folder = root / split
        if not folder.is_dir():
            if split in splits:
                raise DatasetError(f"missing ImageNet split folder {folder}. {_layout_help(root)}")
            continue
        by_split[split] = _class_folders(folder)
    if len(by_split) == 2:
        _compare_classes(root, by_split)
    classes = next(iter(by_split.values()))
    return ImageNetLayout(root=root, classes=tuple(classes), splits=tuple(splits))


def imagenet_folder(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    transform: Callable[[Any], Any] | None = None,
    target_transform: Callable[[Any], Any] | None = None,
) -> ImageFolder:
    """One split of a local ImageNet tree as a torchvision :class:`ImageFolder`.

    Args:
        root: the folder holding ``train/`` and ``val/`` (``None``: ``<data root>/imagenet``).
        split: ``"train"`` or ``"val"``.
        transform: applied to each PIL image (RGB).
        target_transform: applied to each label.

    Returns:
        An ``ImageFolder`` whose items are ``(image, label)``; ``classes`` are the wnids.

    Raises:
        ValueError: if ``split`` is not ``"train"`` or ``"val"``.
        DatasetError: see :func:`check_imagenet_folder`.
    """
    if split not in IMAGENET_SPLITS:
        raise ValueError(f"`split` must be one of {', '.join(IMAGENET_SPLITS)}, got {split!r}")
    layout = check_imagenet_folder(root, splits=(split,))
    try:
        return ImageFolder(
            str(layout.root / split), transform=transform, target_transform=target_transform
        )
    except (OSError, ValueError) as error:  # the tree changed between the check and the scan
        raise DatasetError(f"cannot read {layout.root / split}: {error}") from None


def _count_images(folder: Path) -> int:
    return sum(
        1
        for _, _, files in os.walk(folder)
        for name in files
        if _is_image(name) and not name.startswith(".")
    )


def prepare_imagenet(
    root: str | os.PathLike[str] | None = None, download: bool = True
) -> DatasetSummary:
    """Check an ImageNet tree and count its images (``download`` is ignored: there is none).

    Args:
        root: the folder holding ``train/`` and ``val/`` (``None``: ``<data root>/imagenet``).
        download: ignored; the error for a missing folder explains where to put ImageNet.

    Returns:
        The :class:`DatasetSummary` (``image_shape`` is ``None``: JPEG sizes vary).

    Raises:
        DatasetError: see :func:`check_imagenet_folder`.
    """
    layout = check_imagenet_folder(root)
    return DatasetSummary(
        name="imagenet",
        root=layout.root,
        splits={split: _count_images(layout.root / split) for split in IMAGENET_SPLITS},
        image_shape=None,
        num_classes=len(layout.classes),
        class_names=layout.classes,
        source="local ImageFolder tree (no download exists)",
    )


def imagenet_samples(
    root: str | os.PathLike[str] | None, count: int
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``count`` training images spread evenly over the classes, centre-cropped to 64x64.

    Returns:
        ``images`` ``(n, 3, 64, 64)`` uint8, ``labels`` ``(n,)`` int64, class names (wnids).
    """
    from torchvision import transforms

    crop = transforms.Compose(
        [
            transforms.Resize(_SAMPLE_SIZE),
            transforms.CenterCrop(_SAMPLE_SIZE),
            transforms.PILToTensor(),
        ]
    )
    dataset = imagenet_folder(root, split="train", transform=crop)
    picks = torch.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().long().unique()
    items = [dataset[int(i)] for i in picks]
    images = torch.stack([image for image, _ in items])  # (n, 3, 64, 64)
    return (
        images,
        torch.tensor([label for _, label in items], dtype=torch.int64),
        list(dataset.classes),
    )
