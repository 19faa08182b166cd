"""Schematic figures: the picture of a switched supernet a reader needs before the equations.

:func:`supernet_schematic` draws a cell graph with one edge picked out (left) and that edge opened
up (right): the parent switch on the edge input, the ``K`` candidate operations, a child switch on
each output, and their sum. It is drawn from the library's cell graph and op list, so the picture
and the code cannot disagree.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from bayesnas_book.space.graph import CellGraph, get_cell_graph

__all__ = ["supernet_schematic"]

_SHORT = {"sep_conv_3x3": "sep 3x3", "sep_conv_5x5": "sep 5x5", "dil_conv_3x3": "dil 3x3",
          "dil_conv_5x5": "dil 5x5", "max_pool_3x3": "max pool", "avg_pool_3x3": "avg pool",
          "skip_connect": "identity"}
_INPUT_LABELS = {"c_{k-2}": r"$c_{k-2}$", "c_{k-1}": r"$c_{k-1}$"}


def _box(ax, xy: tuple[float, float], text: str, color: str, width: float = 0.16,
         height: float = 0.075, fontsize: int = 10) -> None:
    x, y = xy
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                boxstyle="round,pad=0.01", fc=color, ec="0.3", lw=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], color: str = "0.35",
           lw: float = 1.0, rad: float = 0.0, shrink: float = 0.0) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9, color=color, lw=lw,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=shrink, shrinkB=shrink))


def _cell_panel(ax, graph: CellGraph, picked: int) -> None:
    """The cell's DAG: inputs left, nodes in a column, the output right; edge ``picked`` red."""
    places = {name: (0.08, y) for name, y in zip(graph.inputs, (0.28, 0.72), strict=True)}
    for j in range(graph.num_nodes):
        places[f"node_{j}"] = (0.45 + 0.09 * (j % 2), 0.86 - 0.24 * j)
    places["output"] = (0.9, 0.5)
    for e, edge in enumerate(graph.edges):
        target = f"node_{edge.target}"
        chosen = e == picked
        _arrow(ax, places[edge.source], places[target], color="tab:red" if chosen else "0.55",
               lw=2.4 if chosen else 1.0, rad=0.12 if edge.source.startswith("node") else 0.0,
               shrink=14)
    for j in range(graph.num_nodes):
        _arrow(ax, places[f"node_{j}"], places["output"], color="0.8", lw=0.8, shrink=14)
    for name, (x, y) in places.items():
        label = _INPUT_LABELS.get(name, "concat")
        if name.startswith("node"):
            label = rf"$x_{name.split('_')[1]}$"
        ax.add_patch(FancyBboxPatch((x - 0.055, y - 0.04), 0.11, 0.08, boxstyle="circle,pad=0.0",
                                    fc="white" if name.startswith("node") else "0.9", ec="0.3"))
        ax.text(x, y, label, ha="center", va="center", fontsize=10 if name != "output" else 8)
    ax.set_title(f"a cell: {graph.num_edges} edges, each with all {graph.num_ops} candidate ops\n"
                 "(red: the edge opened on the right)", fontsize=10)


def _edge_panel(ax, ops: tuple[str, ...]) -> None:
    """One edge: x -> parent switch -> K ops -> child switches -> sum -> y_e."""
    top, bottom = 0.9, 0.1
    ys = [top - (top - bottom) * k / max(len(ops) - 1, 1) for k in range(len(ops))]
    x_in, x_parent, x_op, x_child, x_sum = 0.05, 0.2, 0.46, 0.69, 0.87
    w_in, w_parent, w_op, w_child, w_sum = 0.08, 0.11, 0.17, 0.11, 0.06
    _box(ax, (x_in, 0.5), r"$x_i$", "0.92", width=w_in)
    _box(ax, (x_parent, 0.5), r"$\times\,\bar s_e$", "#f8d5a3", width=w_parent)
    _arrow(ax, (x_in + w_in / 2, 0.5), (x_parent - w_parent / 2, 0.5))
    for k, (op, y) in enumerate(zip(ops, ys, strict=True), start=1):
        _box(ax, (x_op, y), _SHORT.get(op, op), "#cfe3f6", width=w_op)
        _box(ax, (x_child, y), rf"$\times\,s_e^{{{k}}}$", "#d7efd0", width=w_child)
        _arrow(ax, (x_parent + w_parent / 2, 0.5), (x_op - w_op / 2, y))
        _arrow(ax, (x_op + w_op / 2, y), (x_child - w_child / 2, y))
        _arrow(ax, (x_child + w_child / 2, y), (x_sum - w_sum / 2, 0.5))
    _box(ax, (x_sum, 0.5), r"$\Sigma$", "0.92", width=w_sum)
    _arrow(ax, (x_sum + w_sum / 2, 0.5), (0.97, 0.5))
    ax.text(0.985, 0.5, r"$y_e$", ha="left", va="center", fontsize=11)
    ax.text(x_parent, 0.4, "parent switch\n(the edge's\nzero op)", ha="center", va="top",
            fontsize=9)
    ax.text(x_child, 0.985, "child switches", ha="center", fontsize=9)
    ax.text(x_op, 0.985, "candidate ops", ha="center", fontsize=9)
    ax.set_title(r"one edge: $y_e = \sum_k s_e^k\, o_k(\bar s_e\, x_i)$", fontsize=10)


def supernet_schematic(graph: CellGraph | None = None, picked: int = 0) -> Figure:
    """A cell graph with one edge picked out, and that edge's switches.

    Args:
        graph: the cell graph (default ``bayesnas_normal``).
        picked: index of the edge drawn in red and opened up, ``0 <= picked < graph.num_edges``.

    Returns:
        A matplotlib Figure (no pyplot state), 10 x 4.6 inches.

    Raises:
        ValueError: for an edge index outside the graph.
    """
    graph = graph or get_cell_graph("bayesnas_normal")
    if not 0 <= picked < graph.num_edges:
        raise ValueError(f"`picked` must be an edge index in [0, {graph.num_edges}), got {picked}")
    figure = Figure(figsize=(10, 4.6), layout="constrained")
    cell_ax, edge_ax = figure.subplots(1, 2, width_ratios=[1, 1.15])
    _cell_panel(cell_ax, graph, picked)
    _edge_panel(edge_ax, graph.ops)
    for ax in (cell_ax, edge_ax):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.axis("off")
    cell_ax.set_aspect("equal")  # round nodes
    return figure
