"""Drawings of candidate cell graphs with keep masks: which edges are on, which nodes dangle.

:func:`bayesnas_book.viz.draw_cell` draws a *derived* cell (a genotype). The functions here draw
the *candidate* graph of a :class:`~bayesnas_book.space.graph.CellGraph` instead, every edge of
the search space, coloured by a keep mask, so that a reader sees what pruning removed and what the
node rule of :mod:`bayesnas_book.bayes.hard` would still have to remove:

* an edge that is on (parent switch kept and at least one op kept) is a solid blue arrow, an edge
  that is off a thin dotted grey one, and an edge marked ``removed`` (e.g. switched off by the
  node rule) a dashed red one;
* a cell input is orange; a node with an incoming edge on is green (*live*: it is concatenated
  into the cell output); a node with no incoming edge on but an outgoing edge on is red
  (*dangling*, what the node rule forbids); any other node is hollow (pruned away).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from bayesnas_book.bayes.hard import apply_node_rule, dangling_nodes, edge_alive, live_nodes
from bayesnas_book.space.graph import CellGraph, node_name

__all__ = ["EDGE_STYLES", "NODE_COLOURS", "draw_cell_graph", "node_rule_figure"]

#: Arrow styles by edge state: colour, line style, line width.
EDGE_STYLES: dict[str, tuple[str, str, float]] = {
    "on": ("tab:blue", "-", 1.4),
    "off": ("0.78", ":", 0.9),
    "removed": ("tab:red", "--", 1.4),
}

#: Face colours by node state.
NODE_COLOURS: dict[str, str] = {
    "input": "tab:orange",
    "live": "tab:green",
    "dangling": "tab:red",
    "pruned": "white",
    "output": "tab:purple",
}

_NODE_Y = (0.1, 0.9)  # zig-zag, so that long edges do not cross the nodes


def _as_edge_mask(graph: CellGraph, mask: Tensor | None, name: str) -> Tensor:
    """``(E,)`` bool from ``None`` (all on), an ``(E,)`` mask or an ``(E, 1 + K)`` keep mask."""
    E, K = graph.num_edges, graph.num_ops
    if mask is None:
        return torch.ones(E, dtype=torch.bool)
    if isinstance(mask, Tensor) and mask.dtype == torch.bool:
        if tuple(mask.shape) == (E,):
            return mask
        if tuple(mask.shape) == (E, 1 + K):
            return edge_alive(mask)
    got = (tuple(mask.shape), mask.dtype) if isinstance(mask, Tensor) else type(mask).__name__
    raise ValueError(
        f"`{name}` must be None or a bool tensor of shape ({E},) or ({E}, {1 + K}) for "
        f"{graph.name}, got {got}"
    )


def _positions(graph: CellGraph) -> dict[str, tuple[float, float]]:
    """Layout: inputs at x = 0, node j at x = 1 + j (zig-zag in y), the output at the right."""
    count = len(graph.inputs)
    ys = [0.38, 0.62] if count == 2 else [(i + 1) / (count + 1) for i in range(count)]
    positions = {name: (0.0, y) for name, y in zip(graph.inputs, ys, strict=True)}
    for j in range(graph.num_nodes):
        positions[node_name(j)] = (1.0 + j, _NODE_Y[j % len(_NODE_Y)])
    positions["out"] = (graph.num_nodes + 1.0, 0.5)
    return positions


def _point_on_arc(
    start: tuple[float, float],
    end: tuple[float, float],
    rad: float,
    t: float,
    scale: tuple[float, float],
) -> tuple[float, float]:
    """Point at parameter ``t`` of matplotlib's ``arc3,rad=rad`` curve from ``start`` to ``end``.

    ``arc3`` is a quadratic Bezier curve whose control point is the chord's midpoint moved by
    ``rad`` times the chord, turned by 90 degrees, in display units; ``scale`` converts data to
    (approximate) display units.
    """
    sx, sy = scale
    x0, y0, x1, y1 = start[0] * sx, start[1] * sy, end[0] * sx, end[1] * sy
    cx, cy = (x0 + x1) / 2 + rad * (y1 - y0), (y0 + y1) / 2 - rad * (x1 - x0)
    bx = (1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t**2 * x1  # Bezier B(t)
    by = (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t**2 * y1
    return bx / sx, by / sy


def _short(name: str) -> str:
    """``"c_{k-1}" -> "k-1"``, ``"node_2" -> "2"``."""
    return name.replace("node_", "").replace("c_{", "").replace("}", "")


def _legend_handles() -> list[Line2D]:
    """Proxy artists for the edge and node styles."""
    edges = [
        Line2D([], [], color=c, linestyle=s, linewidth=w, label=f"edge {k}")
        for k, (c, s, w) in EDGE_STYLES.items()
    ]
    nodes = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markersize=7,
            markerfacecolor=NODE_COLOURS[k],
            markeredgecolor="0.3",
            label=f"{k} node",
        )
        for k in ("live", "dangling", "pruned")
    ]
    return edges + nodes


def draw_cell_graph(
    graph: CellGraph,
    ax: Axes,
    edge_on: Tensor | None = None,
    *,
    removed: Tensor | None = None,
    edge_labels: Sequence[str] | None = None,
    title: str = "",
    legend: bool = False,
) -> None:
    """Draw the candidate graph of ``graph`` on ``ax``, coloured by which edges are on.

    Node states come from :func:`~bayesnas_book.bayes.hard.live_nodes` and
    :func:`~bayesnas_book.bayes.hard.dangling_nodes` applied to ``edge_on``; the output node
    gets a dotted arrow from every live node (the cell's concatenation).

    Args:
        graph: the cell graph.
        ax: the axes to draw on (its limits are set and its frame switched off).
        edge_on: which edges are on: ``None`` (all of them), a bool ``(E,)`` mask, or a bool
            keep mask ``(E, 1 + K)`` (column 0 parent), reduced with
            :func:`~bayesnas_book.bayes.hard.edge_alive`.
        removed: bool ``(E,)`` or ``(E, 1 + K)``, edges to draw dashed red (e.g. the edges the node
            rule switched off); ``None`` for none. Takes precedence over ``edge_on``.
        edge_labels: one label per edge, drawn near its source; default ``"e0" .. "e{E-1}"``.
        title: the axes title.
        legend: add a legend of the edge and node styles below the drawing.

    Raises:
        ValueError: if a mask has the wrong shape or dtype, or ``edge_labels`` does not have one
            label per edge.
    """
    on = _as_edge_mask(graph, edge_on, "edge_on")  # (E,)
    gone = (
        torch.zeros_like(on) if removed is None else _as_edge_mask(graph, removed, "removed")
    )  # (E,)
    if edge_labels is None:
        edge_labels = [f"e{e}" for e in range(graph.num_edges)]
    if isinstance(edge_labels, str) or len(edge_labels) != graph.num_edges:
        raise ValueError(
            f"`edge_labels` must have one label per edge ({graph.num_edges}), got {edge_labels!r}"
        )
    alive = live_nodes(graph, on)  # (num_nodes,)
    dangling = set(dangling_nodes(graph, on))
    positions = _positions(graph)
    ax.set_xlim(-0.4, graph.num_nodes + 1.4)
    ax.set_ylim(-0.08, 1.08)
    # data units -> (roughly) display units, to put labels on the drawn arcs
    scale = (ax.bbox.width / (graph.num_nodes + 1.8), ax.bbox.height / 1.16)

    for e, edge in enumerate(graph.edges):
        state = "removed" if gone[e] else ("on" if on[e] else "off")
        colour, style, width = EDGE_STYLES[state]
        (x0, y0), (x1, y1) = positions[edge.source], positions[node_name(edge.target)]
        rad = 0.12 + 0.04 * (x1 - x0 - 1)  # longer edges bend more, around the nodes between
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={
                "arrowstyle": "-|>",
                "color": colour,
                "linestyle": style,
                "linewidth": width,
                "shrinkA": 11,
                "shrinkB": 11,
                "connectionstyle": f"arc3,rad={rad:.3f}",
            },
            zorder=2 if state != "off" else 1,
        )
        lx, ly = _point_on_arc((x0, y0), (x1, y1), rad, 0.3, scale)
        ax.text(
            lx,
            ly,
            edge_labels[e],
            fontsize=6,
            ha="center",
            va="center",
            color=colour if state != "off" else "0.55",
            bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
            zorder=5,
        )
    for j in range(graph.num_nodes):
        if alive[j]:
            ax.annotate(
                "",
                xy=positions["out"],
                xytext=positions[node_name(j)],
                arrowprops={
                    "arrowstyle": "->",
                    "color": "0.6",
                    "linestyle": ":",
                    "shrinkA": 11,
                    "shrinkB": 11,
                },
            )
    for name, (x, y) in positions.items():
        if name == "out":
            state = "output"
        elif name in graph.inputs:
            state = "input"
        else:
            j = int(name.split("_")[1])
            state = "dangling" if j in dangling else ("live" if alive[j] else "pruned")
        ax.scatter(
            [x],
            [y],
            s=420,
            c=NODE_COLOURS[state],
            edgecolors="0.3" if state != "pruned" else "0.65",
            zorder=3,
        )
        ax.text(
            x,
            y,
            _short(name),
            ha="center",
            va="center",
            fontsize=7,
            zorder=4,
            color="white" if state in ("output", "dangling") else "black",
        )
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    if legend:
        ax.legend(
            handles=_legend_handles(),
            loc="upper center",
            bbox_to_anchor=(0.5, -0.02),
            ncol=3,
            fontsize=6,
            frameon=False,
        )


def node_rule_figure(graph: CellGraph, edge_on: Tensor, *, title: str = "") -> Figure:
    """Two panels: ``edge_on`` before the node rule, and after it with the removed edges in red.

    Args:
        graph: the cell graph.
        edge_on: bool ``(E,)`` or keep mask ``(E, 1 + K)``: the edges on before the node rule.
        title: a figure title.

    Returns:
        A ``(8, 3.2)`` inch figure; the right panel shows
        :func:`~bayesnas_book.bayes.hard.apply_node_rule` applied to ``edge_on``.

    Raises:
        ValueError: if ``edge_on`` has the wrong shape or dtype.
    """
    before = _as_edge_mask(graph, edge_on, "edge_on")  # (E,)
    after = apply_node_rule(graph, before)  # (E,)
    figure = Figure(figsize=(8, 3.2), layout="constrained")
    left, right = figure.subplots(1, 2)
    n_dangling = len(dangling_nodes(graph, before))
    draw_cell_graph(
        graph, left, before, title=f"without the node rule: {n_dangling} dangling node(s)"
    )
    draw_cell_graph(
        graph,
        right,
        after,
        removed=before & ~after,
        legend=False,
        title=f"with the node rule: {int((before & ~after).sum())} edge(s) removed",
    )
    figure.legend(
        handles=_legend_handles(), loc="outside lower center", ncol=6, fontsize=7, frameon=False
    )
    if title:
        figure.suptitle(title, fontsize=10)
    return figure
