"""The data of a search: disjoint warm-up, switch and validation splits, seeded epoch loaders.

The official code draws its 5k warm-up split and its 45k switch split independently, so they
overlap. Here the training images are cut once, by one seeded permutation, into three disjoint
parts: validation (``data.validation_fraction``, to monitor the supernet), warm-up
(``search.warmup_fraction`` of the rest) and switch (the remainder).

Every epoch's order comes from a generator seeded by ``(seed, step)``, so a resumed run sees
exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from bayesnas_book.config import RunConfig
from bayesnas_book.data import cifar10_dataset, disjoint_split, mnist_dataset, run_digits_splits
from bayesnas_book.data.transforms import (
    cifar10_eval_transform,
    cifar10_train_transform,
    mnist_transform,
)

__all__ = ["SearchData", "build_search_data", "epoch_loader"]


@dataclass
class SearchData:
    """The three disjoint parts of a search's training data.

    Attributes:
        warmup: weights-only epochs.
        switch: weights-and-switches epochs and the curvature.
        validation: held out, to report the supernet's accuracy.
        in_channels: image channels; num_classes: label count; image_size: side in pixels.
    """

    warmup: Dataset
    switch: Dataset
    validation: Dataset
    in_channels: int
    num_classes: int
    image_size: int


def _split_training(train: Dataset, eval_view: Dataset, config: RunConfig) -> tuple[Dataset, Dataset, Dataset]:
    n = len(train)  # type: ignore[arg-type]
    val_fraction = config.data.validation_fraction
    warm_fraction = (1.0 - val_fraction) * config.search.warmup_fraction
    validation, warmup, switch = disjoint_split(
        n, [val_fraction, warm_fraction, 1.0 - val_fraction - warm_fraction], seed=config.data.split_seed
    )
    return Subset(train, warmup.tolist()), Subset(train, switch.tolist()), Subset(eval_view, validation.tolist())


def build_search_data(config: RunConfig) -> SearchData:
    """The splits for ``config.data.dataset`` (digits, cifar10 or mnist).

    Raises:
        DatasetError: if the dataset is missing or corrupt (with what to do).
        ValueError: for a dataset a search cannot use (imagenet).
    """
    name = config.data.dataset
    root = config.data.root or None
    if name == "digits":
        # the digits' own test split stays untouched by the search (chapters evaluate on it)
        parts = run_digits_splits(config.data)
        train = parts["train"]
        assert isinstance(train, TensorDataset)
        warmup_idx, switch_idx = disjoint_split(
            len(train), [config.search.warmup_fraction, 1.0 - config.search.warmup_fraction], seed=config.data.split_seed
        )
        return SearchData(
            warmup=Subset(train, warmup_idx.tolist()),
            switch=Subset(train, switch_idx.tolist()),
            validation=parts["validation"],
            in_channels=1,
            num_classes=10,
            image_size=8,
        )
    if name == "cifar10":
        train = cifar10_dataset(root, train=True, transform=cifar10_train_transform(config.search.cutout))
        view = cifar10_dataset(root, train=True, transform=cifar10_eval_transform())
        warmup, switch, validation = _split_training(train, view, config)
        return SearchData(warmup, switch, validation, in_channels=3, num_classes=10, image_size=32)
    if name == "mnist":
        train = mnist_dataset(root, train=True, transform=mnist_transform())
        warmup, switch, validation = _split_training(train, train, config)
        return SearchData(warmup, switch, validation, in_channels=1, num_classes=10, image_size=28)
    raise ValueError(f"`data.dataset` {name!r} cannot be searched on; use digits, cifar10 or mnist")


def epoch_loader(
    dataset: Dataset, batch_size: int, seed: int, step: int, shuffle: bool = True, num_workers: int = 0
) -> DataLoader:
    """A loader whose order depends only on ``(seed, step)``.

    Args:
        dataset: the split.
        batch_size: images per batch (the last batch may be smaller).
        seed: the run's seed.
        step: the index of the epoch in the run's schedule (any integer unique per epoch).
        shuffle: draw a fresh seeded permutation (training) or keep the order (evaluation).
        num_workers: DataLoader workers.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )


def take(loader: DataLoader, max_batches: int) -> Iterator:
    """The loader's batches, at most ``max_batches`` of them (0: all)."""
    for index, batch in enumerate(loader):
        if max_batches and index >= max_batches:
            return
        yield batch
