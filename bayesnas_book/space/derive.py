"""From trained switches to a derived cell: the BayesNAS rule and the magnitude (DARTS) rule.

Both rules read the same switch values of one cell type, laid out as ``(E, 1 + K)``: row ``e``
is edge ``e`` of the :class:`~bayesnas_book.space.graph.CellGraph`, column 0 its parent switch,
column ``k`` the child switch of op ``k - 1``.

* :func:`derive_cell` turns a keep mask (from the entropy rule and the node rule in
  :mod:`bayesnas_book.bayes.pruning`) into a :class:`CellGenotype`: every surviving (edge, op)
  pair is kept, ops on one edge are summed, nodes that lost every input leave the concat.
* :func:`magnitude_cell` is the baseline of the paper's RQ2, DARTS's rule on the same switches:
  per node the 2 strongest incoming edges, per edge its strongest op.
"""

from __future__ import annotations

import torch

from bayesnas_book.space.genotype import CellGenotype, GenotypeError, NodeInput
from bayesnas_book.space.graph import CellGraph

__all__ = ["derive_cell", "magnitude_cell"]


def _check_shape(name: str, tensor: torch.Tensor, graph: CellGraph) -> None:
    expected = (graph.num_edges, 1 + graph.num_ops)
    if tuple(tensor.shape) != expected:
        raise ValueError(f"`{name}` must have shape (E, 1 + K) = {expected} for {graph.name}, got {tuple(tensor.shape)}")


def derive_cell(graph: CellGraph, keep: torch.Tensor) -> CellGenotype:
    """The derived cell of ``graph`` given which switches survived.

    Args:
        graph: the searched cell graph.
        keep: bool ``(E, 1 + K)``; an op survives when its own column and its edge's parent
            column (0) are both True.

    Returns:
        The cell; nodes whose every input was pruned are left empty and out of ``concat``, and
        inputs from such nodes are dropped too (the node rule, applied once more here so any
        mask gives a valid cell).

    Raises:
        ValueError: if ``keep`` has the wrong shape.
        GenotypeError: if nothing survives ("pruned to nothing").
    """
    _check_shape("keep", keep, graph)
    keep = keep.bool()
    alive_ops = keep[:, 1:] & keep[:, :1]  # (E, K)
    live: set[str] = set(graph.inputs)
    nodes: list[tuple[NodeInput, ...]] = []
    for j in range(graph.num_nodes):
        inputs = []
        for e in graph.edges_into(j):
            edge = graph.edges[e]
            ops = tuple(op for k, op in enumerate(graph.ops) if alive_ops[e, k])
            if ops and edge.source in live:
                inputs.append(NodeInput(edge.source, ops, edge.stride))
        if inputs:
            live.add(f"node_{j}")
        nodes.append(tuple(inputs))
    if not any(nodes):
        raise GenotypeError(f"the {graph.name} cell was pruned to nothing: no (edge, op) pair survived")
    return CellGenotype(tuple(nodes), tuple(j for j, n in enumerate(nodes) if n), ops_vocabulary=graph.ops)


def magnitude_cell(graph: CellGraph, switches: torch.Tensor, edges_per_node: int = 2) -> CellGenotype:
    """DARTS's derivation rule applied to BayesNAS switches.

    The strength of op ``k`` on edge ``e`` is its effective gate ``|sbar_e * s_e^k|``; an edge's
    strength is that of its strongest op. Each node keeps its ``edges_per_node`` strongest
    incoming edges (all of them if it has fewer), each with its single strongest op.

    Args:
        graph: the searched cell graph.
        switches: ``(E, 1 + K)`` switch values (e.g. the mean of ``|s|`` over the cells of one type).
        edges_per_node: edges kept per node (DARTS: 2).

    Raises:
        ValueError: for a wrong shape or ``edges_per_node < 1``.
    """
    _check_shape("switches", switches, graph)
    if edges_per_node < 1:
        raise ValueError(f"`edges_per_node` must be >= 1, got {edges_per_node}")
    gate = (switches[:, :1] * switches[:, 1:]).abs()  # (E, K): |sbar_e s_e^k|
    strength, best_op = gate.max(dim=1)  # (E,), (E,)
    nodes = []
    for j in range(graph.num_nodes):
        incoming = list(graph.edges_into(j))
        chosen = sorted(incoming, key=lambda e: (-float(strength[e]), e))[:edges_per_node]
        nodes.append(tuple(
            NodeInput(graph.edges[e].source, (graph.ops[int(best_op[e])],), graph.edges[e].stride)
            for e in sorted(chosen)
        ))
    return CellGenotype(tuple(nodes), tuple(range(graph.num_nodes)), ops_vocabulary=graph.ops)
