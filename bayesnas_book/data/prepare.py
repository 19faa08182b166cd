"""``prepare_dataset``: the library side of ``bayesnas-book data NAME``.

The four built-in datasets are registered here, each with its ``prepare`` and ``samples``:

=============  ==============================================  ============================
name           root holds                                      download
=============  ==============================================  ============================
``digits``     nothing (ships with scikit-learn)               never needed
``cifar10``    ``cifar-10-batches-py/``                        torchvision's URL, staged
``mnist``      ``MNIST/raw/*-ubyte``                           torchvision's mirrors, staged
``imagenet``   ``train/<wnid>/``, ``val/<wnid>/`` (root is the  none: place it by hand
               ImageNet folder; default ``<data root>/imagenet``)
=============  ==============================================  ============================
"""

from __future__ import annotations

import os

import torch

from bayesnas_book.data.cifar import cifar10_samples, prepare_cifar10
from bayesnas_book.data.digits import digits_samples, prepare_digits
from bayesnas_book.data.imagenet import imagenet_samples, prepare_imagenet
from bayesnas_book.data.mnist import mnist_samples, prepare_mnist
from bayesnas_book.data.registry import DatasetSpec, get_dataset_spec, register_dataset
from bayesnas_book.data.summary import DatasetSummary

__all__ = ["load_samples", "prepare_dataset"]

register_dataset(
    DatasetSpec(
        "digits",
        "8x8 digits",
        prepare_digits,
        digits_samples,
        "scikit-learn's 1797 handwritten digits, shipped: no download",
    )
)
register_dataset(
    DatasetSpec(
        "cifar10",
        "CIFAR-10",
        prepare_cifar10,
        cifar10_samples,
        "60000 32x32 colour images in 10 classes (torchvision download)",
    )
)
register_dataset(
    DatasetSpec(
        "mnist",
        "MNIST",
        prepare_mnist,
        mnist_samples,
        "70000 28x28 handwritten digits (torchvision download)",
    )
)
register_dataset(
    DatasetSpec(
        "imagenet",
        "ImageNet",
        prepare_imagenet,
        imagenet_samples,
        "ILSVRC-2012 from a local ImageFolder tree (no download)",
    )
)


def prepare_dataset(
    name: str, root: str | os.PathLike[str] | None = None, download: bool = True
) -> DatasetSummary:
    """Check a dataset on disk, downloading it first where that is possible and allowed.

    Args:
        name: ``"digits"``, ``"cifar10"``, ``"mnist"`` or ``"imagenet"`` (see the table above).
        root: the dataset folder (``None``: ``$BAYESNAS_DATA`` or
            ``~/.cache/bayesnas-book/datasets``; for ImageNet ``<that>/imagenet``).
        download: fetch CIFAR-10 / MNIST when absent. A download goes to a staging folder and
            moves into place only when complete and checked.

    Returns:
        The :class:`DatasetSummary`; ``summary.describe()`` prints it.

    Raises:
        DatasetError: for an unknown name (listing the valid ones), a missing dataset with
            ``download=False``, an unreachable network, or broken files (naming the file).
    """
    return get_dataset_spec(name).prepare(root, download)


def load_samples(
    name: str, root: str | os.PathLike[str] | None = None, count: int = 32
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A few images of a dataset for a figure (never downloads).

    Args:
        name: a registered dataset name.
        root: as in :func:`prepare_dataset`.
        count: how many images, ``>= 1`` (fewer if the dataset is smaller).

    Returns:
        ``images`` ``(n, C, H, W)`` uint8, ``labels`` ``(n,)`` int64 and the class names.

    Raises:
        ValueError: if ``count`` is not a positive integer.
        DatasetError: if the dataset is unknown, missing or broken.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"`count` must be a positive integer, got {count!r}")
    return get_dataset_spec(name).samples(root, count)
