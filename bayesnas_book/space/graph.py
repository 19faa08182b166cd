"""Cell graphs: which candidate edges a searched cell has (pure data, no torch modules).

A cell of the one-shot supernet takes two inputs, ``c_{k-2}`` (the output of the cell before the
previous one) and ``c_{k-1}`` (the previous cell), and computes ``num_nodes`` intermediate nodes
``node_0 .. node_{n-1}``. Every candidate *edge* ``source -> node_j`` carries all candidate ops;
BayesNAS gates an edge with one *parent switch* (on the edge input) and each op with one *child
switch* (on the op output), so an edge owns ``1 + K`` switches (K candidate ops)::

    y_e = sum_k s_e^k * o_k(sbar_e * x_source)          node_j = sum over edges e into j of y_e

The cell output is the channel concatenation of the intermediate nodes.

Four graphs are registered (:func:`get_cell_graph`):

* ``bayesnas_normal`` / ``bayesnas_reduction``: the BayesNAS search space, 8 edges each
  (the official code's graph). Normal: both inputs feed nodes 0, 1, 2; ``c_{k-2}`` and ``node_0`` feed
  node 3. Reduction: both inputs feed node 0; ``c_{k-2}`` and ``node_0`` feed nodes 1, 2, 3.
* ``darts_normal`` / ``darts_reduction``: the DARTS space, 14 edges: node ``j`` gets an edge
  from both inputs and from every earlier node. The parent switch plays DARTS's ``none`` op.

In a reduction cell the edges that leave a cell input have stride 2 and the edges between nodes
stride 1, so every node has the same spatial size.

.. note::
    The official BayesNAS code (commit f55a71c) feeds the normal cell's ``c_{k-2} -> node_3``
    edge from ``c_{k-1}`` by mistake (``search/OneShot.py``); its module names, its Hessian pass
    and its released cells all assume ``c_{k-2}``. ``bayesnas_normal`` follows the intended graph:
    node 3 <- ``c_{k-2}``, ``node_0``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BAYESNAS_OPS",
    "CELL_INPUTS",
    "CellGraph",
    "Edge",
    "cell_graph_names",
    "get_cell_graph",
    "node_name",
    "register_cell_graph",
]

#: The 7 BayesNAS candidate ops, in the order of the child-switch columns 1..K.
BAYESNAS_OPS: tuple[str, ...] = (
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
)

#: Names of the two cell inputs: the cell before the previous one, and the previous cell.
CELL_INPUTS: tuple[str, str] = ("c_{k-2}", "c_{k-1}")

_NODE_RE = re.compile(r"^node_(\d+)$")


def node_name(index: int) -> str:
    """Name of intermediate node ``index`` as an edge source, e.g. ``node_name(0) == "node_0"``."""
    return f"node_{index}"


def _node_index(source: str) -> int | None:
    """Return ``i`` if ``source`` is ``"node_i"``, else ``None``."""
    match = _NODE_RE.match(source)
    return int(match.group(1)) if match else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Edge:
    """One candidate edge ``source -> node_target``.

    Args:
        source: a cell input name (``"c_{k-2}"``, ``"c_{k-1}"``) or an earlier node ``"node_i"``.
        target: index of the intermediate node the edge feeds (0-based).
        stride: 1, or 2 for edges that leave a cell input in a reduction cell.

    Raises:
        ValueError: if ``source`` is empty, ``target`` is not a non-negative integer or
            ``stride`` is not 1 or 2.
    """

    source: str
    target: int
    stride: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(f"`source` must be a non-empty string, got {self.source!r}")
        if not _is_int(self.target) or self.target < 0:
            raise ValueError(f"`target` must be a non-negative integer, got {self.target!r}")
        if not _is_int(self.stride) or self.stride not in (1, 2):
            raise ValueError(f"`stride` must be 1 or 2, got {self.stride!r}")

    @property
    def name(self) -> str:
        """Readable name, e.g. ``"c_{k-1} -> node_0"``."""
        return f"{self.source} -> {node_name(self.target)}"


@dataclass(frozen=True)
class CellGraph:
    """The candidate edges and ops of one cell type.

    Edge ``e`` owns the switch columns ``0`` (parent switch) and ``1 .. K`` (child switch of
    ``ops[k-1]``); the edge order of ``edges`` is the row order of every ``(E, 1 + K)`` tensor in
    :mod:`bayesnas_book.bayes`.

    Args:
        inputs: names of the cell inputs, usually :data:`CELL_INPUTS`.
        num_nodes: number of intermediate nodes ``node_0 .. node_{n-1}``.
        edges: the candidate edges (a sequence of :class:`Edge` or ``(source, target[, stride])``).
        ops: candidate op names, :data:`BAYESNAS_OPS` by default.
        reduction: whether this is a reduction cell (stride 2 on the edges from the inputs).
        name: a label used in messages and drawings.

    Raises:
        ValueError: if an edge's source does not exist or does not precede its target, an edge is
            repeated, a node has no incoming edge, a stride does not fit the cell type, or
            ``inputs``/``ops``/``num_nodes`` are malformed.
    """

    inputs: tuple[str, ...]
    num_nodes: int
    edges: tuple[Edge, ...]
    ops: tuple[str, ...] = BAYESNAS_OPS
    reduction: bool = False
    name: str = "custom"
    _edges_into: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)
    _edges_out_of: dict[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        inputs = tuple(self.inputs)
        ops = tuple(self.ops)
        edges = tuple(e if isinstance(e, Edge) else Edge(*e) for e in self.edges)
        if not inputs or any(not isinstance(i, str) or not i for i in inputs):
            raise ValueError(f"`inputs` must be non-empty strings, got {self.inputs!r}")
        if len(set(inputs)) != len(inputs) or any(_node_index(i) is not None for i in inputs):
            raise ValueError(
                "`inputs` must be distinct and must not look like a node ('node_i'), "
                f"got {inputs!r}"
            )
        if not _is_int(self.num_nodes) or self.num_nodes < 1:
            raise ValueError(f"`num_nodes` must be an integer >= 1, got {self.num_nodes!r}")
        if (
            not ops
            or any(not isinstance(o, str) or not o for o in ops)
            or len(set(ops)) != len(ops)
        ):
            raise ValueError(f"`ops` must be distinct non-empty strings, got {self.ops!r}")
        if not isinstance(self.reduction, bool):
            raise ValueError(f"`reduction` must be a bool, got {self.reduction!r}")
        seen: set[tuple[str, int]] = set()
        into: list[list[int]] = [[] for _ in range(self.num_nodes)]
        out_of: dict[str, list[int]] = {
            s: [] for s in (*inputs, *map(node_name, range(self.num_nodes)))
        }
        for index, edge in enumerate(edges):
            where = f"edge {index} ({edge.name})"
            if edge.target >= self.num_nodes:
                raise ValueError(
                    f"{where}: target must be a node in 0..{self.num_nodes - 1}, got {edge.target}"
                )
            source_node = _node_index(edge.source)
            if source_node is None and edge.source not in inputs:
                raise ValueError(
                    f"{where}: source must be a cell input {inputs} or a node 'node_i', "
                    f"got {edge.source!r}"
                )
            if source_node is not None and source_node >= edge.target:
                raise ValueError(
                    f"{where}: a node source must precede its target (node_i -> node_j needs "
                    f"i < j), got node_{source_node} -> node_{edge.target}"
                )
            if (edge.source, edge.target) in seen:
                raise ValueError(f"{where}: duplicate edge {edge.name}")
            seen.add((edge.source, edge.target))
            from_input = source_node is None
            if edge.stride == 2 and not (self.reduction and from_input):
                raise ValueError(
                    f"{where}: stride 2 is allowed only on edges from a cell input in a "
                    f"reduction cell, got stride 2 (reduction={self.reduction})"
                )
            if self.reduction and from_input and edge.stride != 2:
                raise ValueError(
                    f"{where}: an edge from a cell input in a reduction cell must have stride 2 "
                    f"(every node must have the same spatial size), got stride {edge.stride}"
                )
            into[edge.target].append(index)
            out_of[edge.source].append(index)
        for node, incoming in enumerate(into):
            if not incoming:
                raise ValueError(f"node_{node} has no incoming edge; every node needs at least one")
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "ops", ops)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "_edges_into", tuple(tuple(i) for i in into))
        object.__setattr__(self, "_edges_out_of", {k: tuple(v) for k, v in out_of.items()})

    # -- sizes ------------------------------------------------------------------------------
    @property
    def num_edges(self) -> int:
        """E, the number of candidate edges."""
        return len(self.edges)

    @property
    def num_ops(self) -> int:
        """K, the number of candidate ops per edge."""
        return len(self.ops)

    @property
    def num_switches(self) -> int:
        """Switches of one cell: one parent switch per edge + one child switch per (edge, op)."""
        return self.num_edges * (1 + self.num_ops)

    @property
    def node_names(self) -> tuple[str, ...]:
        """``("node_0", ..., "node_{n-1}")``."""
        return tuple(node_name(i) for i in range(self.num_nodes))

    # -- connectivity ---------------------------------------------------------------------------
    def edges_into(self, node: int) -> tuple[int, ...]:
        """Indices of the edges that feed intermediate node ``node``.

        Raises:
            ValueError: if ``node`` is not in ``0 .. num_nodes - 1``.
        """
        if not _is_int(node) or not 0 <= node < self.num_nodes:
            raise ValueError(f"`node` must be in 0..{self.num_nodes - 1}, got {node!r}")
        return self._edges_into[node]

    def edges_out_of(self, source: str | int) -> tuple[int, ...]:
        """Indices of the edges that leave ``source`` (a cell input name, ``"node_i"`` or ``i``).

        Raises:
            ValueError: if ``source`` is neither a cell input nor a node of this graph.
        """
        key = node_name(source) if _is_int(source) else source
        if key not in self._edges_out_of:
            valid = ", ".join(self._edges_out_of)
            raise ValueError(f"`source` must be one of {valid}, got {source!r}")
        return self._edges_out_of[key]

    def edge_index(self, source: str, target: int) -> int:
        """Index of the edge ``source -> node_target``.

        Raises:
            KeyError: if there is no such edge.
        """
        for index, edge in enumerate(self.edges):
            if edge.source == source and edge.target == target:
                return index
        raise KeyError(f"{self.name} has no edge {source} -> {node_name(target)}")

    # -- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it."""
        return {
            "name": self.name,
            "inputs": list(self.inputs),
            "num_nodes": self.num_nodes,
            "edges": [[e.source, e.target, e.stride] for e in self.edges],
            "ops": list(self.ops),
            "reduction": self.reduction,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellGraph:
        """Build a graph from :meth:`to_dict` output (validated like the constructor)."""
        return cls(
            inputs=tuple(data["inputs"]),
            num_nodes=data["num_nodes"],
            edges=tuple(Edge(*e) for e in data["edges"]),
            ops=tuple(data["ops"]),
            reduction=data["reduction"],
            name=data.get("name", "custom"),
        )


# -- registry -----------------------------------------------------------------------------------
_REGISTRY: dict[str, CellGraph] = {}


def register_cell_graph(name: str, graph: CellGraph) -> CellGraph:
    """Register ``graph`` under ``name``.

    Raises:
        ValueError: if ``name`` is already registered or ``graph`` is not a :class:`CellGraph`.
    """
    if not isinstance(graph, CellGraph):
        raise ValueError(f"`graph` must be a CellGraph, got {type(graph).__name__}")
    if name in _REGISTRY:
        raise ValueError(f"a cell graph named {name!r} is already registered")
    _REGISTRY[name] = graph
    return graph


def get_cell_graph(name: str) -> CellGraph:
    """The registered graph ``name``.

    Raises:
        KeyError: for an unknown name; the message lists the valid ones.
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown cell graph {name!r}; valid names: {', '.join(cell_graph_names())}")
    return _REGISTRY[name]


def cell_graph_names() -> tuple[str, ...]:
    """Names of all registered cell graphs, sorted."""
    return tuple(sorted(_REGISTRY))


def _bayesnas_graph(reduction: bool) -> CellGraph:
    k1, k2 = CELL_INPUTS[1], CELL_INPUTS[0]
    s = 2 if reduction else 1
    if reduction:  # node 0 <- both inputs; nodes 1, 2, 3 <- c_{k-2}, node_0
        pairs: Iterable[tuple[str, int, int]] = [(k1, 0, s), (k2, 0, s)] + [
            e for j in (1, 2, 3) for e in ((k2, j, s), ("node_0", j, 1))
        ]
    else:  # nodes 0, 1, 2 <- both inputs; node 3 <- c_{k-2}, node_0 (official defect fixed)
        pairs = [e for j in (0, 1, 2) for e in ((k1, j, s), (k2, j, s))]
        pairs += [(k2, 3, s), ("node_0", 3, 1)]
    return CellGraph(
        inputs=CELL_INPUTS,
        num_nodes=4,
        edges=tuple(Edge(*p) for p in pairs),
        reduction=reduction,
        name="bayesnas_reduction" if reduction else "bayesnas_normal",
    )


def _darts_graph(reduction: bool) -> CellGraph:
    # DARTS order: for node j, edges from c_{k-2}, c_{k-1}, node_0 .. node_{j-1}.
    s = 2 if reduction else 1
    edges = []
    for j in range(4):
        edges += [Edge(i, j, s) for i in CELL_INPUTS]
        edges += [Edge(node_name(i), j, 1) for i in range(j)]
    return CellGraph(
        inputs=CELL_INPUTS,
        num_nodes=4,
        edges=tuple(edges),
        reduction=reduction,
        name="darts_reduction" if reduction else "darts_normal",
    )


for _reduction in (False, True):
    register_cell_graph(_bayesnas_graph(_reduction).name, _bayesnas_graph(_reduction))
    register_cell_graph(_darts_graph(_reduction).name, _darts_graph(_reduction))
del _reduction
