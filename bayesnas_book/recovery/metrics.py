"""Scoring a recovered architecture against the planted one, and intervals over seeds.

A genotype is read as the set of its (cell type, source, node, op) pairs ``P``. With ``T`` the
planted set::

    precision = |P & T| / |P|,        recall = |P & T| / |T|

(the support-recovery scores of chapter 02, one level up). Over ``n`` seeds a score is reported as
its mean with a two-sided Student-t interval ``mean +- t_{n-1, (1+c)/2} * sd / sqrt(n)``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from scipy import stats

from bayesnas_book.space.genotype import Genotype
from bayesnas_book.space.supernet import CELL_TYPES

__all__ = ["Pair", "genotype_pairs", "mean_interval", "precision_recall"]

#: One (edge, op) pair of a genotype: (cell type, source, target node, op).
Pair = tuple[str, str, int, str]


def genotype_pairs(genotype: Genotype) -> set[Pair]:
    """Every (cell type, source, node, op) pair of ``genotype`` (both cell types)."""
    return {(kind, source, node, op) for kind in CELL_TYPES
            for source, node, op in getattr(genotype, kind).edges()}


def precision_recall(found: set[Pair], planted: set[Pair]) -> dict[str, float | int]:
    """Precision and recall of ``found`` against ``planted``.

    Returns:
        ``precision``, ``recall``, ``hits`` (``|found & planted|``), ``found`` and ``planted``
        (the set sizes).

    Raises:
        ValueError: if either set is empty (precision or recall would be 0 / 0).
    """
    if not planted:
        raise ValueError("`planted` is empty; recovery needs at least one planted pair")
    if not found:
        raise ValueError("`found` is empty; a derived genotype has at least one pair")
    hits = len(found & planted)
    return {"precision": hits / len(found), "recall": hits / len(planted), "hits": hits,
            "found": len(found), "planted": len(planted)}


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float | int]:
    """Mean and two-sided Student-t confidence interval of ``values``.

    Returns:
        ``mean``, ``low``, ``high``, ``sd`` and ``n``; with one value the interval is that value
        (no spread can be estimated) and ``sd`` is 0.

    Raises:
        ValueError: for no values, a non-finite value or a confidence outside (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence!r}")
    values = [float(v) for v in values]
    if not values:
        raise ValueError("`values` is empty; give at least one value")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"`values` must be finite, got {values}")
    n, mean = len(values), statistics.fmean(values)
    if n == 1:
        return {"mean": mean, "low": mean, "high": mean, "sd": 0.0, "n": 1}
    sd = statistics.stdev(values)
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "sd": sd, "n": n}
