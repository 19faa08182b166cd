"""The shipped digits and the disjoint, seeded splits."""

from __future__ import annotations

import pytest
import torch

from bayesnas_book.data import (
    DIGITS_CLASSES,
    digits_splits,
    disjoint_split,
    load_digits,
    split_sizes,
)


def test_load_digits_shapes_dtypes_and_ranges() -> None:
    images, labels = load_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert labels.shape == (1797,) and labels.dtype == torch.int64
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    # pixel / 16: every value is a multiple of 1/16
    torch.testing.assert_close(images * 16, (images * 16).round(), rtol=0, atol=1e-5)
    assert torch.equal(torch.unique(labels), torch.arange(10))
    assert len(DIGITS_CLASSES) == 10


def test_load_digits_returns_fresh_tensors() -> None:
    images, _ = load_digits()
    images.zero_()
    again, _ = load_digits()
    assert float(again.max()) == 1.0


def _flat(dataset: torch.utils.data.TensorDataset) -> torch.Tensor:
    return dataset.tensors[0].flatten(1)


def test_digits_splits_are_disjoint_complete_and_deterministic() -> None:
    first = digits_splits(validation_fraction=0.2, test_fraction=0.1, seed=3)
    second = digits_splits(validation_fraction=0.2, test_fraction=0.1, seed=3)
    other = digits_splits(validation_fraction=0.2, test_fraction=0.1, seed=4)
    sizes = {name: len(part) for name, part in first.items()}
    assert sum(sizes.values()) == 1797
    assert abs(sizes["validation"] - 0.2 * 1797) <= 10 and abs(sizes["test"] - 0.1 * 1797) <= 10
    for name in first:
        assert torch.equal(first[name].tensors[0], second[name].tensors[0])
        assert torch.equal(first[name].tensors[1], second[name].tensors[1])
    assert not torch.equal(first["test"].tensors[1], other["test"].tensors[1])
    # every image lands in exactly one split: the multiset of rows is the whole dataset
    images, _ = load_digits()
    together = torch.cat([_flat(first[name]) for name in ("train", "validation", "test")])
    torch.testing.assert_close(
        torch.sort(together.sum(1)).values,
        torch.sort(images.flatten(1).sum(1)).values,
        rtol=0,
        atol=0,
    )


def test_digits_splits_stratified_keeps_class_proportions() -> None:
    parts = digits_splits(validation_fraction=0.25, test_fraction=0.25, seed=0, stratify=True)
    _, labels = load_digits()
    overall = torch.bincount(labels, minlength=10).double() / len(labels)
    for part in parts.values():
        share = torch.bincount(part.tensors[1], minlength=10).double() / len(part)
        torch.testing.assert_close(share, overall, rtol=0, atol=0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"validation_fraction": 0.0}, r"`validation_fraction` must be in \(0, 1\), got 0.0"),
        ({"test_fraction": 1.5}, r"`test_fraction` must be in \(0, 1\), got 1.5"),
        (
            {"validation_fraction": 0.5, "test_fraction": 0.5},
            r"must be < 1 to leave training images, got 1",
        ),
    ],
)
def test_digits_splits_rejects_bad_fractions(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        digits_splits(**kwargs)


def test_disjoint_split_parts_are_disjoint_sorted_and_seeded() -> None:
    parts = disjoint_split(103, [0.1, 0.9], seed=7)
    assert [len(p) for p in parts] == [10, 93]
    joined = torch.cat(parts)
    assert torch.equal(torch.sort(joined).values, torch.arange(103))
    for part in parts:
        assert part.dtype == torch.int64 and torch.equal(part, torch.sort(part).values)
    again = disjoint_split(103, [0.1, 0.9], seed=7)
    assert all(torch.equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not torch.equal(parts[0], disjoint_split(103, [0.1, 0.9], seed=8)[0])


def test_disjoint_split_partial_fractions_leave_the_rest_out() -> None:
    first, second = disjoint_split(50, [0.2, 0.3], seed=0)
    assert (len(first), len(second)) == (10, 15)
    assert not set(first.tolist()) & set(second.tolist())


def test_disjoint_split_stratified_by_labels() -> None:
    labels = torch.tensor([0] * 30 + [1] * 10)
    train, held_out = disjoint_split(40, [0.5, 0.5], seed=1, labels=labels)
    assert int((labels[train] == 1).sum()) == 5 and int((labels[held_out] == 1).sum()) == 5
    assert not set(train.tolist()) & set(held_out.tolist())


def test_split_sizes_gives_leftovers_to_largest_remainders() -> None:
    assert split_sizes(10, [1 / 3, 1 / 3, 1 / 3]) == [4, 3, 3]
    assert split_sizes(10, [0.15, 0.85]) == [2, 8]  # remainders 0.5 and 0.5: earlier part wins
    assert sum(split_sizes(50_000, [0.1, 0.9])) == 50_000


@pytest.mark.parametrize(
    ("n", "fractions", "kwargs", "error", "message"),
    [
        (-1, [0.5], {}, ValueError, r"`n` must be a non-negative integer, got -1"),
        (10, [], {}, ValueError, r"`fractions` must be a non-empty sequence of numbers"),
        (10, [0.5, -0.1], {}, ValueError, r"`fractions\[1\]` must be in \(0, 1\], got -0.1"),
        (10, [0.5, "a"], {}, ValueError, r"`fractions\[1\]` must be a number, got 'a'"),
        (10, [0.7, 0.6], {}, ValueError, r"`fractions` must sum to at most 1, got 1.3"),
        (
            10,
            [0.5, 0.5],
            {"seed": -2},
            ValueError,
            r"`seed` must be a non-negative integer, got -2",
        ),
        (
            3,
            [0.1, 0.9],
            {},
            ValueError,
            r"part 0 of the split \(fraction 0.1\) would be empty with n=3",
        ),
        (
            4,
            [0.5, 0.5],
            {"labels": torch.zeros(5, dtype=torch.int64)},
            ValueError,
            r"`labels` must be a tensor of shape \(4,\), got \(5,\)",
        ),
        (
            4,
            [0.5, 0.5],
            {"labels": torch.zeros(4)},
            ValueError,
            r"`labels` must hold integers, got dtype torch.float32",
        ),
    ],
)
def test_disjoint_split_rejects_bad_input(n, fractions, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        disjoint_split(n, fractions, **kwargs)
