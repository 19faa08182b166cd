"""Tree cells: a tree of edges whose branches split and merge, and its switched search version.

Path-level network transformation (Cai et al., ICML 2018, Section 4) grows a cell as a tree. A
tree *node* takes one input ``x`` of width ``w`` and has ``n`` branches; each branch is an *edge*
(an op) optionally followed by a child node::

    inputs_i = x                        (split "copy")    or  the i-th channel slice of x ("split")
    out_i    = child_i(edge_i(inputs_i))                  (child_i = identity at a leaf)
    node(x)  = (1/n) sum_i out_i        (merge "add")     or  concat_i out_i             ("concat")

"copy" pairs with "add" and "split" with "concat", so every node maps width ``w`` to ``w``. The
root's edges carry the cell's stride. TreeCell-A (the paper's Figure 4, the best CIFAR-10 cell)
has 7 nodes, 15 edges and 9 leaves; :data:`TREE_SHAPES` holds it.

For the search, every edge becomes a :class:`TreeSwitchedEdge`, ``y_e = sum_k s_e^k o_k(sbar_e x)``
with a parent switch ``sbar_e`` and one child switch per candidate op, exactly the switch layout of
the 8-edge space (:mod:`bayesnas_book.space.edge`). :func:`tree_graph` flattens a tree into a
:class:`~bayesnas_book.space.graph.CellGraph` (edge ``e`` ends in node ``e``; its source is the
cell input ``"x"`` or the node its parent edge ends in), so the HARD prior, the Laplace update and
the entropy and node rules of :mod:`bayesnas_book.bayes` run on it unchanged: pruning an edge
prunes the subtree under it.

Shapes: ``TreeCell.forward(x: (B, C, H, W)) -> (B, C, ceil(H / stride), ceil(W / stride))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bayesnas_book.space.edge import SwitchedEdge
from bayesnas_book.space.graph import CellGraph, Edge
from bayesnas_book.space.switch import Switch
from bayesnas_book.space.tree_ops import PROXYLESS_OPS, TREE_OPS, build_tree_op

__all__ = [
    "TREE_INPUT",
    "TREE_SHAPES",
    "FlatTree",
    "TreeBranch",
    "TreeCell",
    "TreeNode",
    "TreeSwitchedEdge",
    "flatten_tree",
    "get_tree",
    "split_widths",
    "tree_graph",
    "treecell_a_graph",
]

#: Name of a tree cell's input in its :class:`CellGraph`.
TREE_INPUT = "x"
_PAIRS = {"copy": "add", "split": "concat"}


@dataclass(frozen=True)
class TreeBranch:
    """One branch of a tree node: the edge's op (in the found cell) and the node below it, if any."""

    op: str
    child: TreeNode | None = None


@dataclass(frozen=True)
class TreeNode:
    """A tree node: how its input is shared (``split``) and its branches combined (``merge``).

    Raises:
        ValueError: for an unknown split / merge, a mismatched pair, or no branch.
    """

    split: str
    merge: str
    branches: tuple[TreeBranch, ...]

    def __post_init__(self) -> None:
        if self.split not in _PAIRS:
            raise ValueError(f"tree node split must be 'copy' or 'split', got {self.split!r}")
        if _PAIRS[self.split] != self.merge:
            raise ValueError(
                f"tree node with split {self.split!r} must merge by {_PAIRS[self.split]!r} (widths must add up), "
                f"got merge {self.merge!r}"
            )
        if not self.branches:
            raise ValueError("a tree node needs at least one branch")


def _node(split: str, *branches: tuple[str, TreeNode | None] | str) -> TreeNode:
    made = tuple(TreeBranch(b) if isinstance(b, str) else TreeBranch(*b) for b in branches)
    return TreeNode(split, _PAIRS[split], made)


def _treecell_a() -> TreeNode:
    b1 = _node(
        "copy",
        ("conv_1x1", _node("split", "avg_pool_3x3", "sep_conv_7x7")),
        ("max_pool_3x3", _node("copy", "sep_conv_3x3", "sep_conv_5x5")),
    )
    b2 = _node(
        "copy",
        ("sep_conv_5x5", _node("copy", "sep_conv_5x5", "avg_pool_3x3", "avg_pool_3x3")),
        ("sep_conv_3x3", _node("copy", "avg_pool_3x3", "sep_conv_3x3")),
    )
    return _node("copy", ("group_conv_3x3", b1), ("group_conv_3x3", b2))


#: Registered tree shapes, by name.
TREE_SHAPES: dict[str, TreeNode] = {"treecell_a": _treecell_a()}


def get_tree(name: str) -> TreeNode:
    """The registered tree ``name`` (``KeyError`` naming the valid shapes)."""
    if name not in TREE_SHAPES:
        raise KeyError(
            f"unknown tree shape {name!r}; valid shapes: {', '.join(sorted(TREE_SHAPES))}"
        )
    return TREE_SHAPES[name]


@dataclass(frozen=True)
class FlatTree:
    """A tree with its edges numbered breadth first.

    Attributes:
        nodes: per tree node (0 = root), ``(split, merge, ((edge, child node or -1), ...))``.
        ops: the found cell's op of each edge, ``(E,)``.
        sources: per edge, the tree node whose branch it is.
    """

    nodes: tuple[tuple[str, str, tuple[tuple[int, int], ...]], ...]
    ops: tuple[str, ...]
    sources: tuple[int, ...]

    @property
    def num_edges(self) -> int:
        return len(self.ops)


def flatten_tree(tree: TreeNode) -> FlatTree:
    """Number the edges breadth first: the root's edges are ``0 .. n-1``, and so on."""
    nodes: list[tuple[str, str, list[tuple[int, int]]]] = []
    ops: list[str] = []
    sources: list[int] = []
    queue = [tree]
    while queue:
        index = len(nodes)
        node = queue.pop(0)
        branches = []
        for branch in node.branches:
            edge = len(ops)
            ops.append(branch.op)
            sources.append(index)
            child = -1
            if branch.child is not None:
                child = len(nodes) + len(queue) + 1
                queue.append(branch.child)
            branches.append((edge, child))
        nodes.append((node.split, node.merge, branches))
    return FlatTree(tuple((s, m, tuple(b)) for s, m, b in nodes), tuple(ops), tuple(sources))


def tree_graph(tree: TreeNode, ops: Sequence[str], name: str = "tree") -> CellGraph:
    """The tree as a :class:`CellGraph` for the Bayesian machinery: edge ``e`` ends in node ``e``.

    An edge hanging from the root reads the cell input :data:`TREE_INPUT`; an edge of another tree
    node reads the graph node of the edge above that tree node. Strides are all 1 here: the graph
    carries the switch layout and the topology, the backbone decides where a cell strides.
    """
    flat = flatten_tree(tree)
    into_node = {
        child: edge for _, _, branches in flat.nodes for edge, child in branches if child >= 0
    }
    edges = []
    for e, source in enumerate(flat.sources):
        edges.append(Edge(TREE_INPUT if source == 0 else f"node_{into_node[source]}", e, 1))
    return CellGraph(
        inputs=(TREE_INPUT,),
        num_nodes=flat.num_edges,
        edges=tuple(edges),
        ops=tuple(ops),
        name=name,
    )


def split_widths(width: int, parts: int) -> list[int]:
    """Channel widths of a ``split`` node's branches: as equal as possible, the first ones larger."""
    return [width // parts + (1 if i < width % parts else 0) for i in range(parts)]


class TreeSwitchedEdge(SwitchedEdge):
    """A :class:`SwitchedEdge` whose ops come from :data:`~bayesnas_book.space.tree_ops.TREE_OPS`.

    Same switch layout and forward as the parent class (parent switch, then one child switch per
    op in ``op_names`` order), so the curvature methods and the Bayesian update see no difference.
    """

    def __init__(self, channels: int, stride: int, op_names: Sequence[str]) -> None:
        nn.Module.__init__(self)
        if isinstance(op_names, str) or not op_names or len(set(op_names)) != len(op_names):
            raise ValueError(f"`op_names` must be distinct op names, got {op_names!r}")
        self.op_names = tuple(op_names)
        self.channels, self.stride = channels, stride
        self.parent = Switch()
        self.ops = nn.ModuleDict({n: build_tree_op(n, channels, stride) for n in self.op_names})
        self.switches = nn.ModuleDict({n: Switch() for n in self.op_names})


class _FixedEdge(nn.Module):
    """The sum of a derived edge's kept ops (no switches); ``None`` ops: a pruned edge."""

    def __init__(self, channels: int, stride: int, op_names: Sequence[str]) -> None:
        super().__init__()
        self.op_names = tuple(op_names)
        self.ops = nn.ModuleDict({n: build_tree_op(n, channels, stride) for n in self.op_names})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [op(x) for op in self.ops.values()]
        return outputs[0] if len(outputs) == 1 else torch.stack(outputs).sum(0)


class TreeCell(nn.Module):
    """A tree cell of width ``channels``.

    Args:
        tree: the tree shape (e.g. ``get_tree("treecell_a")``).
        channels: ``C``, the input and output width.
        stride: 1, or 2 to halve the resolution (on the root's edges).
        edge_ops: per edge (breadth-first order), the op names it carries. Default: the tree's
            own op on each edge (the found cell). An empty tuple is a pruned edge: its branch,
            subtree included, contributes zeros.
        switched: make every edge a :class:`TreeSwitchedEdge` (the search cell).
        root_bn: give each root branch its own BN and a skip around its subtree,
            ``out_i = (BN_i(child_i(e_i)) + e_i) / 2`` with ``e_i`` the root edge's output (the
            path-level paper's CIFAR nets normalise each root branch before the add).

    Raises:
        ValueError: for a wrong number of edge op lists, a switched edge without ops, or a width
            that a ``split`` node cannot share among its branches.
        KeyError: for an unknown op name (listing the valid ones).
    """

    def __init__(
        self,
        tree: TreeNode,
        channels: int,
        stride: int = 1,
        edge_ops: Sequence[Sequence[str]] | None = None,
        switched: bool = False,
        root_bn: bool = True,
    ) -> None:
        super().__init__()
        self.flat = flatten_tree(tree)
        self.tree, self.channels, self.stride, self.switched = tree, channels, stride, switched
        if edge_ops is None:
            edge_ops = [(op,) for op in self.flat.ops]
        if len(edge_ops) != self.flat.num_edges:
            raise ValueError(
                f"`edge_ops` must list the ops of all {self.flat.num_edges} edges, got {len(edge_ops)}"
            )
        for ops in edge_ops:
            for name in ops:
                TREE_OPS[name]  # KeyError listing the valid names
        widths = self._edge_widths(channels)
        root_edges = {edge for edge, _ in self.flat.nodes[0][2]}
        modules: list[nn.Module] = []
        for e, ops in enumerate(edge_ops):
            s = stride if e in root_edges else 1
            if switched:
                modules.append(TreeSwitchedEdge(widths[e], s, tuple(ops)))
            else:
                modules.append(_FixedEdge(widths[e], s, tuple(ops)))
        self.edges = nn.ModuleList(modules)
        self.widths = tuple(widths)
        self.root_bns = (
            nn.ModuleList(nn.BatchNorm2d(widths[e]) for e, _ in self.flat.nodes[0][2])
            if root_bn
            else None
        )

    def _edge_widths(self, channels: int) -> list[int]:
        widths = [0] * self.flat.num_edges
        node_width = {0: channels}
        for index, (split, _, branches) in enumerate(self.flat.nodes):
            w = node_width[index]
            parts = split_widths(w, len(branches)) if split == "split" else [w] * len(branches)
            if min(parts) < 1:
                raise ValueError(
                    f"tree node {index} splits {w} channels among {len(branches)} branches; "
                    f"it needs at least {len(branches)} channels (widen the backbone)"
                )
            for (edge, child), part in zip(branches, parts, strict=False):
                widths[edge] = part
                if child >= 0:
                    node_width[child] = part
        return widths

    @property
    def op_names(self) -> tuple[str, ...]:
        """The candidate ops of the switched cell (its first edge's; all edges carry the same)."""
        return self.edges[0].op_names

    def _is_pruned(self, edge: int) -> bool:
        return not self.switched and not self.edges[edge].op_names

    def _node_forward(self, index: int, x: torch.Tensor) -> torch.Tensor | None:
        split, merge, branches = self.flat.nodes[index]
        if split == "split":
            inputs = list(x.split(split_widths(x.shape[1], len(branches)), dim=1))
        else:
            inputs = [x] * len(branches)
        outputs: list[torch.Tensor | None] = []
        for i, ((edge, child), u) in enumerate(zip(branches, inputs, strict=False)):
            e = None if self._is_pruned(edge) else self.edges[edge](u)
            y = e
            if e is not None and child >= 0:
                y = self._node_forward(child, e)
            if e is not None and index == 0 and self.root_bns is not None:
                y = (self.root_bns[i](y if y is not None else torch.zeros_like(e)) + e) / 2
            outputs.append(y)
        alive = [y for y in outputs if y is not None]
        if not alive:
            return None
        if merge == "add":
            return sum(alive[1:], alive[0]) / len(branches)
        shape = alive[0].shape
        filled = [
            y if y is not None else x.new_zeros(shape[0], e_width, *shape[2:])
            for y, e_width in zip(outputs, (self.widths[e] for e, _ in branches), strict=False)
        ]
        return torch.cat(filled, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._node_forward(0, x)
        if y is None:  # every root edge pruned: the cell outputs zeros
            size = [(s + self.stride - 1) // self.stride for s in x.shape[2:]]
            return x.new_zeros(x.shape[0], self.channels, *size)
        return y

    # -- the switch interface of the 8-edge space's cells ------------------------------------------
    def switch_values(self) -> torch.Tensor:
        """``(E, 1 + K)`` switch values (parent first), differentiable."""
        return torch.stack([edge.switch_values() for edge in self.edges])

    @torch.no_grad()
    def load_switch_values(self, values: torch.Tensor) -> None:
        """Overwrite the switches from an ``(E, 1 + K)`` tensor."""
        expected = (len(self.edges), 1 + len(self.op_names))
        if tuple(values.shape) != expected:
            raise ValueError(f"`values` must have shape {expected}, got {tuple(values.shape)}")
        for edge, row in zip(self.edges, values, strict=False):
            edge.load_switch_values(row)


def treecell_a_graph(ops: Sequence[str] = PROXYLESS_OPS) -> CellGraph:
    """TreeCell-A's 15 edges, each carrying ``ops`` (default the 7 ProxylessNAS CIFAR ops), as a graph."""
    return tree_graph(get_tree("treecell_a"), ops, name="treecell_a")
