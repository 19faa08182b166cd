"""Scoring a recovered architecture against the planted one, and intervals over seeds.

A genotype is read as the set of its (cell type, source, node, op) pairs ``P``. With ``T`` the
planted set::

    precision = |P & T| / |P|,        recall = |P & T| / |T|

(the support-recovery scores of chapter 02, one level up). Over ``n`` seeds a score is reported as
its mean with a two-sided Student-t interval (:func:`bayesnas_book.intervals.t_interval`).
"""

from __future__ import annotations

from bayesnas_book.space.genotype import Genotype
from bayesnas_book.space.supernet import CELL_TYPES

__all__ = ["Pair", "genotype_pairs", "precision_recall"]

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
