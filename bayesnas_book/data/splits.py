"""Deterministic, disjoint splits of ``range(n)``.

BayesNAS trains the supernet's weights on one part of the training set and updates the
switches on another. The search needs those parts to be disjoint and reproducible.

.. note::
   The official code draws its two search splits with two independent random samplers, so they
   overlap. Here one seeded permutation is cut into consecutive pieces: no index is in two
   parts, and the same ``seed`` gives the same parts on every machine (``torch.randperm`` on
   the CPU with a seeded generator).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["disjoint_split", "split_sizes"]

_SUM_TOLERANCE = 1e-9


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence) or not fractions:
        raise ValueError(f"`fractions` must be a non-empty sequence of numbers, got {fractions!r}")
    values = []
    for position, fraction in enumerate(fractions):
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise ValueError(f"`fractions[{position}]` must be a number, got {fraction!r}")
        if not (0.0 < fraction <= 1.0) or math.isnan(fraction):
            raise ValueError(f"`fractions[{position}]` must be in (0, 1], got {fraction}")
        values.append(float(fraction))
    if sum(values) > 1.0 + _SUM_TOLERANCE:
        raise ValueError(f"`fractions` must sum to at most 1, got {sum(values):.6g}")
    return values


def split_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """How many of ``n`` items each part of a split gets.

    Each part gets ``floor(fraction * n)``. When the fractions sum to 1 the items left over by
    rounding down go, one each, to the parts with the largest remainders (ties: earlier part),
    so that every item is used; otherwise the rest is left out.

    Args:
        n: number of items, ``>= 0``.
        fractions: one fraction in ``(0, 1]`` per part, summing to at most 1.

    Returns:
        One size per part.

    Raises:
        ValueError: if ``n`` or ``fractions`` break the rules above.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"`n` must be a non-negative integer, got {n!r}")
    values = _check_fractions(fractions)
    exact = [fraction * n for fraction in values]
    sizes = [math.floor(x + _SUM_TOLERANCE) for x in exact]
    if abs(sum(values) - 1.0) <= _SUM_TOLERANCE:
        leftover = n - sum(sizes)
        by_remainder = sorted(range(len(values)), key=lambda i: (-(exact[i] - sizes[i]), i))
        for i in by_remainder[:leftover]:
            sizes[i] += 1
    return sizes


def disjoint_split(
    n: int,
    fractions: Sequence[float],
    seed: int = 0,
    labels: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Cut ``range(n)`` into disjoint, seeded parts.

    Args:
        n: number of items.
        fractions: one fraction in ``(0, 1]`` per part, summing to at most 1 (see
            :func:`split_sizes` for the rounding).
        seed: a non-negative integer; the same seed gives the same parts.
        labels: optional class labels ``(n,)`` (integers); if given, each class is split
            separately with the same fractions (a stratified split), so every part keeps the
            class proportions (up to rounding per class).

    Returns:
        One sorted ``int64`` index tensor ``(n_k,)`` per part; no index appears twice.

    Raises:
        ValueError: if an argument breaks its rule, or if a part would be empty.
    """
    sizes = split_sizes(n, fractions)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}")
    generator = torch.Generator().manual_seed(seed)
    if labels is None:
        order = torch.randperm(n, generator=generator)
        parts = list(torch.split(order, sizes + [n - sum(sizes)]))[: len(sizes)]
    else:
        if not isinstance(labels, torch.Tensor) or labels.shape != (n,):
            shape = (
                tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            )
            raise ValueError(f"`labels` must be a tensor of shape ({n},), got {shape}")
        if labels.is_floating_point() or labels.is_complex():
            raise ValueError(f"`labels` must hold integers, got dtype {labels.dtype}")
        pieces: list[list[torch.Tensor]] = [[] for _ in sizes]
        for label in torch.unique(labels).tolist():
            members = torch.nonzero(labels == label).flatten()
            order = members[torch.randperm(len(members), generator=generator)]
            class_sizes = split_sizes(len(members), fractions)
            for k, piece in enumerate(
                torch.split(order, class_sizes + [len(members) - sum(class_sizes)])
            ):
                if k < len(sizes):
                    pieces[k].append(piece)
        parts = [
            torch.cat(piece) if piece else torch.empty(0, dtype=torch.int64) for piece in pieces
        ]
    for k, part in enumerate(parts):
        if len(part) == 0:
            raise ValueError(
                f"part {k} of the split (fraction {fractions[k]}) would be empty with n={n}; "
                "raise that fraction or use more items"
            )
    return [torch.sort(part).values.to(torch.int64) for part in parts]
