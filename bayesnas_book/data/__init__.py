"""Datasets for the book: shipped digits, CIFAR-10, MNIST, ImageNet folders, and fixtures.

* :func:`load_digits`, :func:`digits_splits`, :func:`run_digits_splits`: scikit-learn's 8x8 digits, no download
* :func:`cifar10_dataset`, :func:`mnist_dataset`, :func:`imagenet_folder`: torchvision datasets
  whose files are checked first, with a :class:`DatasetError` that names the file and the fix
* :func:`prepare_dataset`: check or download a dataset by name (``bayesnas-book data NAME``);
  downloads are staged and moved into place only when complete
* :func:`write_cifar10_fixture`, :func:`write_mnist_fixture`, :func:`write_imagefolder_fixture`:
  tiny datasets in the real on-disk formats
* :func:`disjoint_split`: seeded, disjoint index splits
* :func:`image_grid_figure`, :func:`save_image_grid`: sample images

Datasets live under ``root``; ``root=None`` means :func:`default_data_root`
(``$BAYESNAS_DATA`` or ``~/.cache/bayesnas-book/datasets``).
"""

from bayesnas_book.data.cifar import CheckedCIFAR10, check_cifar10_folder, cifar10_dataset
from bayesnas_book.data.digits import DIGITS_CLASSES, digits_splits, load_digits, run_digits_splits
from bayesnas_book.data.errors import DatasetError, DatasetNotFoundError
from bayesnas_book.data.fixtures import (
    write_cifar10_fixture,
    write_imagefolder_fixture,
    write_mnist_fixture,
)
from bayesnas_book.data.grid import image_grid_figure, save_image_grid
from bayesnas_book.data.imagenet import check_imagenet_folder, imagenet_folder
from bayesnas_book.data.mnist import (
    CheckedMNIST,
    check_mnist_folder,
    mnist_dataset,
    read_idx_header,
)
from bayesnas_book.data.paths import default_data_root
from bayesnas_book.data.prepare import load_samples, prepare_dataset
from bayesnas_book.data.registry import (
    DatasetSpec,
    dataset_names,
    get_dataset_spec,
    register_dataset,
)
from bayesnas_book.data.splits import disjoint_split, split_sizes
from bayesnas_book.data.summary import DatasetSummary

__all__ = [
    "DIGITS_CLASSES",
    "CheckedCIFAR10",
    "CheckedMNIST",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "DatasetSummary",
    "check_cifar10_folder",
    "check_imagenet_folder",
    "check_mnist_folder",
    "cifar10_dataset",
    "dataset_names",
    "default_data_root",
    "digits_splits",
    "disjoint_split",
    "get_dataset_spec",
    "image_grid_figure",
    "imagenet_folder",
    "load_digits",
    "run_digits_splits",
    "load_samples",
    "mnist_dataset",
    "prepare_dataset",
    "read_idx_header",
    "register_dataset",
    "save_image_grid",
    "split_sizes",
    "write_cifar10_fixture",
    "write_imagefolder_fixture",
    "write_mnist_fixture",
]
