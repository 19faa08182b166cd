"""Schematic figures: the picture of a switched supernet a reader needs before the equations.

:func:`supernet_schematic` draws a cell graph with one edge picked out (left) and that edge opened
up (right): the parent switch on the edge input, the ``K`` candidate operations, a child switch on
each output, and their sum. It is drawn from the library's cell graph and op list, so the picture
and the code cannot disagree.

:func:`curvature_sweep_schematic` draws the fast diagonal Gauss-Newton sweep of
:mod:`bayesnas_book.curvature.recursion` on a small switched network: the forward pass left to
right, the sweep of the diagonal curvature ``H`` right to left from ``H_z = p (1 - p) / B`` at the
logits, the rule each layer applies, what a switch collects, where branches add, and the cross
terms the sweep drops.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from bayesnas_book.space.graph import CellGraph, get_cell_graph

__all__ = ["curvature_sweep_schematic", "supernet_schematic"]

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


_FORWARD, _SWEEP, _DROPPED = "0.45", "tab:red", "0.35"


def _pair(ax, start: tuple[float, float], end: tuple[float, float], gap: float = 0.017) -> None:
    """A forward arrow ``start -> end`` (grey, above) and a sweep arrow back (red, below)."""
    (x0, y0), (x1, y1) = start, end
    _arrow(ax, (x0, y0 + gap), (x1, y1 + gap), color=_FORWARD)
    _arrow(ax, (x1, y1 - gap), (x0, y0 - gap), color=_SWEEP, lw=1.4)


def curvature_sweep_schematic() -> Figure:
    r"""The fast diagonal Gauss-Newton sweep on a small switched network.

    The network: an input ``x`` feeding two branches of an edge (ReLU, conv, BN and a child
    switch ``s_1``; a max pool and a child switch ``s_2``) that meet at a sum, then the head
    (global pool, linear) to the logits ``z`` and the softmax cross-entropy ``L``. Grey arrows
    are the forward pass; red arrows the sweep of the diagonal curvature ``H``, each layer's rule
    (:mod:`bayesnas_book.curvature.recursion`) in red beside it; the grey band at the bottom
    names the cross terms ``J_ji J_ki G_jk`` (``j != k``) the sweep drops, under the layers where
    they arise.

    Returns:
        A matplotlib Figure (no pyplot state), 7.4 x 5 inches: every label at least 9 pt when
        shown at about 700 pixels wide.
    """
    figure = Figure(figsize=(7.4, 5.0), layout="constrained")
    ax = figure.subplots()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    top, mid, low = 0.69, 0.5, 0.3  # branch a, the main line, branch b
    w, h = 0.085, 0.085  # box size
    cols = {"relu": 0.18, "conv": 0.295, "bn": 0.41, "switch": 0.525, "sum": 0.635,
            "head": 0.75, "ce": 0.89}
    op, switch, other = "#cfe3f6", "#d7efd0", "0.92"

    # forward: the boxes
    _box(ax, (0.04, mid), "$x$", other, width=0.05, height=h, fontsize=11)
    for key, text in (("relu", "ReLU"), ("conv", "conv"), ("bn", "BN")):
        _box(ax, (cols[key], top), text, op, width=w, height=h)
    _box(ax, (cols["switch"], top), r"$\times\,s_1$", switch, width=w, height=h, fontsize=11)
    _box(ax, (cols["conv"], low), "max pool", op, width=w + 0.03, height=h)
    _box(ax, (cols["switch"], low), r"$\times\,s_2$", switch, width=w, height=h, fontsize=11)
    _box(ax, (cols["sum"], mid), r"$\Sigma$", other, width=0.05, height=h, fontsize=11)
    _box(ax, (cols["head"], mid), "pool,\nlinear", op, width=w + 0.01, height=h + 0.02)
    _box(ax, (cols["ce"], mid), "softmax\nCE", "#f8d5a3", width=w + 0.01, height=h + 0.02)
    ax.text(0.985, mid, "$L$", ha="center", va="center", fontsize=11)

    # forward and sweep arrows, box edge to box edge
    half = w / 2
    _pair(ax, (0.065, mid + 0.03), (cols["relu"] - half, top - 0.02))
    _pair(ax, (0.065, mid - 0.03), (cols["conv"] - half - 0.015, low + 0.02))
    for a, b in (("relu", "conv"), ("conv", "bn"), ("bn", "switch")):
        _pair(ax, (cols[a] + half, top), (cols[b] - half, top))
    _pair(ax, (cols["conv"] + half + 0.015, low), (cols["switch"] - half, low))
    _pair(ax, (cols["switch"] + half, top - 0.02), (cols["sum"] - 0.025, mid + 0.03))
    _pair(ax, (cols["switch"] + half, low + 0.02), (cols["sum"] - 0.025, mid - 0.03))
    _pair(ax, (cols["sum"] + 0.025, mid), (cols["head"] - half - 0.005, mid))
    _pair(ax, (cols["head"] + half + 0.005, mid), (cols["ce"] - half - 0.005, mid))
    _arrow(ax, (cols["ce"] + half + 0.005, mid + 0.017), (0.97, mid + 0.017), color=_FORWARD)
    ax.text((cols["head"] + cols["ce"]) / 2, mid + 0.035, "$z$", ha="center", va="bottom",
            fontsize=10)

    # the sweep: each layer's rule, in red
    def rule(xy: tuple[float, float], text: str, ha: str = "center", va: str = "top") -> None:
        ax.text(*xy, text, color=_SWEEP, fontsize=9, ha=ha, va=va)

    rule((cols["ce"], mid + 0.09), "starts at the\nlogits $z$:\n$H_z = p\\,(1-p)/B$",
         va="bottom")
    rule((cols["head"], mid - 0.075), "$\\times W^2$,\n$/\\,(HW)^2$")
    rule((cols["sum"] - 0.01, mid + 0.06), "$H_y$ to both\nbranches", ha="left", va="bottom")
    rule((cols["bn"], top - 0.06), "$\\times\\, w^2/\\sigma^2$")
    rule((cols["conv"], top - 0.06), "conv$^\\top$\nwith $W^2$")
    rule((cols["relu"], top - 0.06), "$\\times\\,[z > 0]$")
    rule((cols["conv"], low - 0.06), "to the\nargmax")
    rule((cols["switch"], low - 0.06), "as $s_1$")
    rule((0.01, mid - 0.12), "branches add:\n$H_x$ = (a) + (b)", ha="left")
    ax.text(cols["switch"], top + 0.1,
            "switch $y = s\\,z$:  collects  "
            r"$\partial^2 L/\partial s^2 \approx \sum z^2 H_y$" "\n"
            r"passes on  $H_z = s^2 H_y$",
            color=_SWEEP, fontsize=9.5, ha="center", va="bottom", linespacing=1.5)
    _arrow(ax, (cols["switch"], top + 0.095), (cols["switch"], top + h / 2 + 0.005),
           color=_SWEEP)

    # legend
    ax.text(0.0, 0.985, "forward: left to right", color=_FORWARD, fontsize=10, va="top")
    ax.text(0.0, 0.935, r"sweep of the diagonal curvature $H$: right to left", color=_SWEEP,
            fontsize=10, va="top")

    for xy, text in (((0.085, 0.63), "(a)"), ((0.19, 0.43), "(b)")):  # the branches
        ax.text(*xy, text, fontsize=9, color=_FORWARD, ha="center", va="center")

    # what the sweep drops, under where it arises
    ax.add_patch(FancyBboxPatch((0.0, 0.005), 1.0, 0.15, boxstyle="round,pad=0.005",
                                fc="0.95", ec="0.75", lw=0.8))
    ax.text(0.01, 0.145, r"dropped, where they arise: the cross terms "
            r"$J_{ji}\,J_{ki}\,G_{jk}$, $j \neq k$, between",
            fontsize=9.5, va="top", color=_DROPPED)
    for x, text in ((0.06, "branches"), (cols["conv"], "positions, channels"),
                    (cols["head"], "positions,\nchannels"),
                    (cols["ce"], "classes:\n$-p_c\\,p_{c'}/B$")):
        ax.text(x, 0.055, text, fontsize=9, ha="center", va="center", color=_DROPPED,
                style="italic")
    return figure
