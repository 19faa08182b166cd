"""Cells of a given parameter budget, for comparing selection rules at the same network size.

The paper's RQ2 asks whether the entropy rule keeps better (edge, op) pairs than the magnitude
rule. DARTS's magnitude rule keeps two edges per node and one op per edge, so its cells are much
smaller networks than the BayesNAS cells of the same search; a comparison between them confounds
the rule with the size. Here a rule is an *order* over the ``E * K`` (edge, op) pairs of a cell
type, and a cell grows along that order until its evaluation network has as many parameters as a
target network (the BayesNAS cells' network):

* :func:`magnitude_order`: strongest effective gate ``|sbar_e s_e^k|`` first (the magnitude rule's
  score, without its two-edges-per-node cap);
* :func:`random_order`: a uniformly random permutation;
* :func:`grow_to_budget`: the prefix of an order whose network's parameter count is closest to the
  target (a pair whose source node has no input yet adds nothing until it has one, see
  :func:`~bayesnas_book.space.derive.derive_cell`, so the count never falls as the prefix grows);
* :func:`matched_genotype`: both cell types, the normal cell first (against the target's reduction
  cell), then the reduction cell (against the new normal cell).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from bayesnas_book.space.derive import derive_cell
from bayesnas_book.space.genotype import CellGenotype, Genotype, GenotypeError
from bayesnas_book.space.graph import CellGraph

__all__ = ["grow_to_budget", "magnitude_order", "matched_genotype", "random_order"]

Pair = tuple[int, int]  # (edge e, op k) with k indexing graph.ops


def magnitude_order(switches: torch.Tensor) -> list[Pair]:
    """Pairs by decreasing ``|sbar_e s_e^k|``; ties by edge, then op.

    Args:
        switches: ``(E, 1 + K)`` switch values of one cell type (column 0 the edge's parent switch).
    """
    if switches.dim() != 2 or switches.shape[1] < 2:
        raise ValueError(f"`switches` must have shape (E, 1 + K), got {tuple(switches.shape)}")
    gate = (switches[:, :1] * switches[:, 1:]).abs()  # (E, K)
    E, K = gate.shape
    return sorted(((e, k) for e in range(E) for k in range(K)), key=lambda p: (-float(gate[p]), p))


def random_order(graph: CellGraph, generator: torch.Generator) -> list[Pair]:
    """A uniformly random order of ``graph``'s ``E * K`` pairs."""
    K = graph.num_ops
    return [(int(i) // K, int(i) % K) for i in torch.randperm(graph.num_edges * K, generator=generator)]


def _cell(graph: CellGraph, pairs: Sequence[Pair]) -> CellGenotype | None:
    keep = torch.zeros(graph.num_edges, 1 + graph.num_ops, dtype=torch.bool)
    for e, k in pairs:
        keep[e, 0] = keep[e, 1 + k] = True
    try:
        return derive_cell(graph, keep)
    except GenotypeError:  # no pair reachable from the cell's inputs yet
        return None


def grow_to_budget(graph: CellGraph, order: Sequence[Pair], params: Callable[[CellGenotype], int],
                   target: int) -> CellGenotype:
    """The cell of the prefix of ``order`` whose parameter count is closest to ``target``.

    Args:
        graph: the cell graph.
        order: all or some of its (edge, op) pairs, best first.
        params: the parameter count of the network built with a candidate cell.
        target: the parameter count to match.

    Returns:
        The cell (the shorter prefix on a tie); binary search, as ``params`` of a prefix never
        falls when the prefix grows.

    Raises:
        ValueError: if no prefix of ``order`` gives a cell.
    """
    sizes: dict[int, tuple[CellGenotype | None, int]] = {}

    def at(n: int) -> tuple[CellGenotype | None, int]:
        if n not in sizes:
            cell = _cell(graph, order[:n])
            sizes[n] = (cell, params(cell) if cell is not None else -1)
        return sizes[n]

    low, high = 1, len(order)
    if at(high)[0] is None:
        raise ValueError(f"no prefix of the order gives a {graph.name} cell: no pair is reachable from its inputs")
    while low < high:  # the shortest prefix that reaches the target (or all of it)
        middle = (low + high) // 2
        if at(middle)[1] >= target:
            high = middle
        else:
            low = middle + 1
    candidates = [n for n in (low - 1, low) if n >= 1 and at(n)[0] is not None]
    best = min(candidates, key=lambda n: (abs(at(n)[1] - target), n))
    cell = at(best)[0]
    assert cell is not None
    return cell


def matched_genotype(like: Genotype, graphs: dict[str, CellGraph], orders: dict[str, Sequence[Pair]],
                     params: Callable[[Genotype], int], rule: str) -> Genotype:
    """Cells grown along ``orders`` until the network has as many parameters as ``like``'s.

    Args:
        like: the genotype whose network size to match (the BayesNAS cells).
        graphs, orders: per cell type (``normal``, ``reduction``), its graph and pair order.
        params: the parameter count of a genotype's evaluation network.
        rule: recorded in the genotype's ``meta["rule"]``.
    """
    target = params(like)
    normal = grow_to_budget(graphs["normal"], orders["normal"],
                            lambda cell: params(Genotype(cell, like.reduction, like.space)), target)
    reduction = grow_to_budget(graphs["reduction"], orders["reduction"],
                               lambda cell: params(Genotype(normal, cell, like.space)), target)
    return Genotype(normal, reduction, like.space, {**like.metadata, "rule": rule})
