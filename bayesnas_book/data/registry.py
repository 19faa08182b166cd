"""The registry of dataset names: ``"digits"``, ``"cifar10"``, ``"mnist"``, ``"imagenet"``.

Each :class:`DatasetSpec` knows how to check or prepare its dataset (``prepare``) and how to
fetch a few images for a figure (``samples``). Registering a name twice is refused; asking for an
unknown name raises :class:`~bayesnas_book.data.errors.DatasetError` listing the valid ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bayesnas_book.data.errors import DatasetError
from bayesnas_book.data.summary import DatasetSummary

__all__ = ["DatasetSpec", "dataset_names", "get_dataset_spec", "register_dataset"]

Root = str | os.PathLike[str] | None
#: ``prepare(root, download) -> DatasetSummary``
PrepareFn = Callable[[Root, bool], DatasetSummary]
#: ``samples(root, count) -> (images (N, C, H, W) uint8, labels (N,) int64, class names)``
SamplesFn = Callable[[Root, int], tuple[torch.Tensor, torch.Tensor, list[str]]]


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset.

    Attributes:
        name: the registry key, lower case (``"cifar10"``).
        title: how people write it (``"CIFAR-10"``).
        prepare: checks the dataset under a root (downloading it where allowed and possible)
            and returns its :class:`DatasetSummary`.
        samples: returns up to ``count`` images ``(N, C, H, W)`` uint8, labels ``(N,)`` int64
            and the class names.
        description: one line for help texts.
    """

    name: str
    title: str
    prepare: PrepareFn
    samples: SamplesFn
    description: str = ""


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry.

    Args:
        spec: the dataset to register.

    Returns:
        ``spec`` (so this can be used on module level without a temporary).

    Raises:
        ValueError: if the name is not a lower-case identifier or is already registered.
    """
    if not spec.name or spec.name != spec.name.lower() or not spec.name.isidentifier():
        raise ValueError(f"dataset name must be a lower-case identifier, got {spec.name!r}")
    if spec.name in _DATASETS:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    _DATASETS[spec.name] = spec
    return spec


def dataset_names() -> tuple[str, ...]:
    """The registered names, sorted."""
    return tuple(sorted(_DATASETS))


def get_dataset_spec(name: str) -> DatasetSpec:
    """Look a dataset up by name (case and surrounding spaces ignored).

    Args:
        name: a registered name, e.g. ``"cifar10"``.

    Returns:
        Its :class:`DatasetSpec`.

    Raises:
        DatasetError: if no dataset has that name; the message lists the valid names.
    """
    key = name.strip().lower() if isinstance(name, str) else None
    if key is None or key not in _DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(dataset_names())}")
    return _DATASETS[key]
