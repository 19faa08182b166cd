"""HARD (hierarchical ARD) groups on a cell graph, the coupling of child to parent, the node rule.

**Switch layout.** The supernet holds, for each cell type (``"normal"``, ``"reduction"``), one
tensor of switch values of shape ``(N, E, 1 + K)``: N cells of that type, E candidate edges of
its :class:`~bayesnas_book.space.graph.CellGraph` (in the graph's edge order), and ``1 + K``
columns per edge: column 0 is the edge's parent switch ``sbar_e``, column ``1 + k`` the child
switch ``s_e^k`` of ``graph.ops[k]``. Every per-group quantity (``gamma``, ``omega``, the penalty
weights, the keep masks) has shape ``(E, 1 + K)`` with the same columns.

**Groups.** An ARD group g is one (cell type, edge, column): the N values ``switches[:, e, c]``
of that switch across the N cells of the type share one prior ``s_g ~ N(0, gamma_g I_N)``
(the paper's ARD prior on switches). The paper's supernet has ``{"normal": 6, "reduction": 2}`` cells, so
``2 * 8 * 8 = 128`` groups over ``8 * 64 = 512`` switches. :class:`SwitchGroups` indexes them.

**HARD coupling within an edge.** A child's variance is capped by its parent's::

    gamma_child <- (1 / gamma_child + 1 / gamma_parent)^-1

so ``gamma_parent -> 0`` drives every child to 0 and ``gamma_parent -> inf`` leaves it alone
(:func:`hard_coupling`).

**HARD across nodes (the node rule).** A node all of whose incoming edges are off computes
nothing, so its outgoing edges are switched off too, repeated until nothing changes
(:func:`apply_node_rule`). An edge is *on* when its parent switch is kept and at least one of its
ops is kept (:func:`edge_alive`). The derived cell then

* keeps every surviving (edge, op) pair and sums the ops of an edge and the edges of a node,
* concatenates only the nodes that still have an incoming edge (:func:`live_nodes`): a node that
  lost all its inputs feeds nothing and is removed from the output concatenation.

.. note::
    The node rule follows the paper (Fig. 1a-c); the official code couples only within an edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import Tensor

from bayesnas_book.space.graph import CellGraph, get_cell_graph

__all__ = [
    "PAPER_NUM_CELLS",
    "SwitchGroup",
    "SwitchGroups",
    "apply_hard_rules",
    "apply_node_rule",
    "dangling_nodes",
    "describe_switch",
    "edge_alive",
    "group_norms",
    "hard_coupling",
    "live_nodes",
]

#: Cells of each type in the paper's 8-cell search supernet (N N R N N R N N).
PAPER_NUM_CELLS: Mapping[str, int] = MappingProxyType({"normal": 6, "reduction": 2})


def describe_switch(cell_type: str, graph: CellGraph | None, edge: int, column: int) -> str:
    """Readable name of a switch group, for messages.

    Args:
        cell_type: e.g. ``"normal"``.
        graph: the cell graph, to name the edge and op; ``None`` gives indices only.
        edge: edge index e.
        column: 0 for the parent switch, ``1 + k`` for op k.

    Returns:
        e.g. ``"normal cell, edge 6 (c_{k-2} -> node_3), op sep_conv_3x3"``.
    """
    if graph is not None and 0 <= edge < graph.num_edges and 0 <= column <= graph.num_ops:
        edge_text = f"edge {edge} ({graph.edges[edge].name})"
        kind = "parent switch" if column == 0 else f"op {graph.ops[column - 1]}"
    else:
        edge_text = f"edge {edge}"
        kind = "parent switch" if column == 0 else f"op column {column}"
    return f"{cell_type} cell, {edge_text}, {kind}"


@dataclass(frozen=True)
class SwitchGroup:
    """One ARD group: a switch shared (in its prior) by all cells of one type.

    Attributes:
        index: position in :attr:`SwitchGroups.groups` (cell types in order, then edges, then
            columns).
        cell_type: ``"normal"`` or ``"reduction"`` (any key of the graphs mapping).
        edge: edge index e in the cell graph.
        column: 0 for the parent switch, ``1 + k`` for the child switch of op k.
        op: the op name for a child switch, ``None`` for a parent switch.
        num_cells: N, how many switch values (one per cell) the group holds.
        label: readable name (:func:`describe_switch`).
    """

    index: int
    cell_type: str
    edge: int
    column: int
    op: str | None
    num_cells: int
    label: str

    @property
    def is_parent(self) -> bool:
        """Whether this is an edge's parent switch."""
        return self.column == 0


class SwitchGroups:
    """Index of every ARD group of a supernet, and who controls whom.

    Args:
        graphs: cell graph of each cell type, e.g. ``{"normal": g_n, "reduction": g_r}``.
        num_cells: number of cells of each type, e.g. :data:`PAPER_NUM_CELLS`.

    Raises:
        ValueError: if the two mappings have different keys, a graph is not a
            :class:`CellGraph`, or a cell count is not an integer >= 1 (an empty group).
    """

    def __init__(self, graphs: Mapping[str, CellGraph], num_cells: Mapping[str, int]) -> None:
        if set(graphs) != set(num_cells) or not graphs:
            raise ValueError(
                f"`graphs` and `num_cells` must name the same non-empty set of cell types, "
                f"got {sorted(graphs)} and {sorted(num_cells)}"
            )
        for cell_type, graph in graphs.items():
            if not isinstance(graph, CellGraph):
                raise ValueError(
                    f"`graphs[{cell_type!r}]` must be a CellGraph, got {type(graph).__name__}"
                )
            n = num_cells[cell_type]
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(
                    f"`num_cells[{cell_type!r}]` must be an integer >= 1 (a group needs at least "
                    f"one switch), got {n!r}"
                )
        self.graphs: Mapping[str, CellGraph] = MappingProxyType(dict(graphs))
        self.num_cells: Mapping[str, int] = MappingProxyType({t: num_cells[t] for t in graphs})
        groups: list[SwitchGroup] = []
        self._offset: dict[str, int] = {}
        for cell_type, graph in self.graphs.items():
            self._offset[cell_type] = len(groups)
            for e in range(graph.num_edges):
                for c in range(1 + graph.num_ops):
                    groups.append(
                        SwitchGroup(
                            index=len(groups),
                            cell_type=cell_type,
                            edge=e,
                            column=c,
                            op=None if c == 0 else graph.ops[c - 1],
                            num_cells=self.num_cells[cell_type],
                            label=describe_switch(cell_type, graph, e, c),
                        )
                    )
        self.groups: tuple[SwitchGroup, ...] = tuple(groups)

    @classmethod
    def for_space(cls, space: str, num_cells: Mapping[str, int] = PAPER_NUM_CELLS) -> SwitchGroups:
        """Groups of a registered space: graphs ``f"{space}_normal"`` and ``f"{space}_reduction"``.

        Args:
            space: ``"bayesnas"`` or ``"darts"`` (or any space whose two graphs are registered).
            num_cells: cells of each type; keys ``"normal"`` and ``"reduction"``.

        Raises:
            KeyError: if a graph of the space is not registered (lists the valid names).
        """
        graphs = {t: get_cell_graph(f"{space}_{t}") for t in ("normal", "reduction")}
        return cls(graphs, num_cells)

    # -- look-ups ---------------------------------------------------------------------------------
    @property
    def cell_types(self) -> tuple[str, ...]:
        """The cell types, in the order groups are numbered."""
        return tuple(self.graphs)

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def num_switches(self) -> int:
        """Total number of switch values in the supernet (sum over types of N * E * (1 + K))."""
        return sum(self.num_cells[t] * g.num_switches for t, g in self.graphs.items())

    def _graph(self, cell_type: str) -> CellGraph:
        if cell_type not in self.graphs:
            raise ValueError(
                f"unknown cell type {cell_type!r}; valid: {', '.join(self.cell_types)}"
            )
        return self.graphs[cell_type]

    def shape(self, cell_type: str) -> tuple[int, int, int]:
        """Shape ``(N, E, 1 + K)`` of the switch tensor of ``cell_type``."""
        graph = self._graph(cell_type)
        return (self.num_cells[cell_type], graph.num_edges, 1 + graph.num_ops)

    def index(self, cell_type: str, edge: int, column: int) -> int:
        """Flat group index of (cell type, edge, column).

        Raises:
            ValueError: for an unknown cell type or an edge / column out of range.
        """
        graph = self._graph(cell_type)
        if not 0 <= edge < graph.num_edges:
            raise ValueError(f"`edge` must be in 0..{graph.num_edges - 1}, got {edge}")
        if not 0 <= column <= graph.num_ops:
            raise ValueError(f"`column` must be in 0..{graph.num_ops}, got {column}")
        return self._offset[cell_type] + edge * (1 + graph.num_ops) + column

    def group(self, cell_type: str, edge: int, column: int) -> SwitchGroup:
        """The :class:`SwitchGroup` of (cell type, edge, column)."""
        return self.groups[self.index(cell_type, edge, column)]

    def members(self, index: int) -> tuple[tuple[str, int, int, int], ...]:
        """Switch values of group ``index`` as ``(cell_type, cell, edge, column)``, one per cell."""
        g = self.groups[index]
        return tuple((g.cell_type, n, g.edge, g.column) for n in range(g.num_cells))

    def children(self, index: int) -> tuple[int, ...]:
        """Child group indices (one per op) of the parent group ``index``.

        Raises:
            ValueError: if group ``index`` is a child switch.
        """
        g = self.groups[index]
        if not g.is_parent:
            raise ValueError(f"group {index} ({g.label}) is a child switch and has no children")
        k = self.graphs[g.cell_type].num_ops
        return tuple(range(index + 1, index + 1 + k))

    def parent(self, index: int) -> int:
        """Parent group index of the child group ``index``.

        Raises:
            ValueError: if group ``index`` is a parent switch.
        """
        g = self.groups[index]
        if g.is_parent:
            raise ValueError(f"group {index} ({g.label}) is a parent switch and has no parent")
        return index - g.column

    def edges_into(self, cell_type: str, node: int) -> tuple[int, ...]:
        """Edges that feed ``node`` in the graph of ``cell_type``."""
        return self._graph(cell_type).edges_into(node)

    def edges_out_of(self, cell_type: str, source: str | int) -> tuple[int, ...]:
        """Edges that leave ``source`` (input name, ``"node_i"`` or ``i``) in ``cell_type``."""
        return self._graph(cell_type).edges_out_of(source)

    # -- flat <-> per type ----------------------------------------------------------------------
    def flatten(self, values: Mapping[str, Tensor]) -> Tensor:
        """Concatenate per-type ``(E, 1 + K)`` tensors into one ``(G,)`` tensor in group order.

        Raises:
            ValueError: if a cell type is missing or a tensor has the wrong shape.
        """
        parts = []
        for cell_type in self.cell_types:
            if cell_type not in values:
                raise ValueError(f"`values` is missing cell type {cell_type!r}")
            expected = self.shape(cell_type)[1:]
            if tuple(values[cell_type].shape) != expected:
                raise ValueError(
                    f"`values[{cell_type!r}]` must have shape {expected}, "
                    f"got {tuple(values[cell_type].shape)}"
                )
            parts.append(values[cell_type].reshape(-1))  # (E, 1+K) -> (E*(1+K),)
        return torch.cat(parts)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Inverse of :meth:`flatten`: ``(G,)`` -> ``{cell_type: (E, 1 + K)}``.

        Raises:
            ValueError: if ``flat`` does not have shape ``(len(self),)``.
        """
        if tuple(flat.shape) != (len(self),):
            raise ValueError(f"`flat` must have shape ({len(self)},), got {tuple(flat.shape)}")
        out = {}
        for cell_type in self.cell_types:
            _, E, C = self.shape(cell_type)
            start = self._offset[cell_type]
            out[cell_type] = flat[start : start + E * C].reshape(E, C)
        return out


# -- functional core ------------------------------------------------------------------------------
def group_norms(switches: Tensor) -> Tensor:
    """``||s_g||_2`` over the cells of each group.

    Args:
        switches: switch values ``(N, E, 1 + K)``.

    Returns:
        ``(E, 1 + K)``: the l2 norm over the N cells.

    Raises:
        ValueError: if ``switches`` is not 3-D or has no cell.
    """
    if switches.dim() != 3 or switches.shape[0] == 0:
        raise ValueError(
            f"`switches` must have shape (N, E, 1 + K) with N >= 1, got {tuple(switches.shape)}"
        )
    return torch.linalg.vector_norm(switches, ord=2, dim=0)  # (N, E, 1+K) -> (E, 1+K)


def hard_coupling(gamma: Tensor) -> Tensor:
    """HARD coupling of each child variance to its edge's parent variance.

    ``gamma[:, 1:] <- (1 / gamma[:, 1:] + 1 / gamma[:, :1])^-1``; the parent column is unchanged.
    Computed with reciprocals so that ``gamma_parent = 0`` gives 0 and ``gamma_parent = inf``
    leaves the child unchanged.

    Args:
        gamma: variances ``(E, 1 + K)`` (column 0 parent), all ``>= 0`` (``inf`` allowed).

    Returns:
        Coupled variances ``(E, 1 + K)``.

    Raises:
        ValueError: if ``gamma`` is not 2-D with at least 2 columns, or has a NaN or negative entry.
    """
    if gamma.dim() != 2 or gamma.shape[1] < 2:
        raise ValueError(
            f"`gamma` must have shape (E, 1 + K) with K >= 1, got {tuple(gamma.shape)}"
        )
    if torch.isnan(gamma).any() or (gamma < 0).any():
        raise ValueError(f"`gamma` must be >= 0 and not NaN, got min {gamma.min().item()}")
    parent, child = gamma[:, :1], gamma[:, 1:]  # (E, 1), (E, K)
    coupled = torch.reciprocal(torch.reciprocal(child) + torch.reciprocal(parent))  # (E, K)
    return torch.cat([parent, coupled], dim=1)


def _check_graph_mask(graph: CellGraph, mask: Tensor, name: str, shape: tuple[int, ...]) -> None:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != shape:
        got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        dtype = mask.dtype if isinstance(mask, Tensor) else None
        raise ValueError(
            f"`{name}` must be a bool tensor of shape {shape} for {graph.name}, got {got} ({dtype})"
        )


def edge_alive(keep: Tensor) -> Tensor:
    """Which edges are on: parent switch kept and at least one op kept.

    Args:
        keep: bool keep mask ``(E, 1 + K)`` (column 0 parent).

    Returns:
        bool ``(E,)``.

    Raises:
        ValueError: if ``keep`` is not a 2-D bool tensor with at least 2 columns.
    """
    if keep.dtype != torch.bool or keep.dim() != 2 or keep.shape[1] < 2:
        raise ValueError(
            "`keep` must be a bool tensor of shape (E, 1 + K), "
            f"got {tuple(keep.shape)} ({keep.dtype})"
        )
    return keep[:, 0] & keep[:, 1:].any(dim=1)  # (E,)


def live_nodes(graph: CellGraph, edge_on: Tensor) -> Tensor:
    """Nodes with at least one incoming edge on; these (only) go into the cell's concatenation.

    Args:
        graph: the cell graph.
        edge_on: bool ``(E,)``.

    Returns:
        bool ``(num_nodes,)``.
    """
    _check_graph_mask(graph, edge_on, "edge_on", (graph.num_edges,))
    return torch.stack([edge_on[list(graph.edges_into(j))].any() for j in range(graph.num_nodes)])


def apply_node_rule(graph: CellGraph, edge_on: Tensor) -> Tensor:
    """Switch off the outgoing edges of every node with all incoming edges off, to a fixed point.

    Args:
        graph: the cell graph.
        edge_on: bool ``(E,)``, which edges are on before the rule.

    Returns:
        bool ``(E,)``, a subset of ``edge_on`` in which every node that has an outgoing edge on
        also has an incoming edge on.
    """
    _check_graph_mask(graph, edge_on, "edge_on", (graph.num_edges,))
    on = edge_on.clone()
    changed = True
    while changed:  # at most num_nodes rounds: each round removes a node's last outgoing edges
        changed = False
        alive = live_nodes(graph, on)  # (num_nodes,)
        for j in range(graph.num_nodes):
            out = list(graph.edges_out_of(j))
            if not alive[j] and out and on[out].any():
                on[out] = False
                changed = True
    return on


def dangling_nodes(graph: CellGraph, edge_on: Tensor) -> tuple[int, ...]:
    """Nodes that have an outgoing edge on but no incoming edge on (what the node rule forbids).

    Args:
        graph: the cell graph.
        edge_on: bool ``(E,)``.

    Returns:
        The node indices, ascending; empty after :func:`apply_node_rule`.
    """
    alive = live_nodes(graph, edge_on)
    return tuple(
        j
        for j in range(graph.num_nodes)
        if not alive[j] and edge_on[list(graph.edges_out_of(j))].any()
    )


def apply_hard_rules(graph: CellGraph, keep: Tensor, *, node_rule: bool = True) -> Tensor:
    """Make a keep mask consistent with the HARD structure.

    A pruned parent prunes all its ops; an edge with every op pruned loses its parent; with
    ``node_rule`` the node rule then switches off the edges of disconnected nodes (all columns).

    Args:
        graph: the cell graph.
        keep: bool ``(E, 1 + K)``.
        node_rule: apply :func:`apply_node_rule` too.

    Returns:
        bool ``(E, 1 + K)``, a subset of ``keep``: each row is either all False (edge off) or has
        its parent column and at least one op column True.
    """
    _check_graph_mask(graph, keep, "keep", (graph.num_edges, 1 + graph.num_ops))
    on = edge_alive(keep)  # (E,)
    if node_rule:
        on = apply_node_rule(graph, on)
    out = keep & on[:, None]  # (E, 1+K): an edge that is off loses every column
    assert bool((out[:, 0] == out[:, 1:].any(dim=1)).all()), "parent kept iff some op kept"
    return out
