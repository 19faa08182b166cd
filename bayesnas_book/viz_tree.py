"""Drawings of tree cells: the tree laid out top-down, each edge labelled with its kept ops.

A kept edge is a solid line labelled with its ops; a pruned edge (no op kept) a dashed grey line.
"""

from __future__ import annotations

from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bayesnas_book.space.tree_cell import flatten_tree, get_tree

__all__ = ["draw_tree_cell", "draw_tree_genotype"]

_SHORT = {
    "identity": "id",
    "sep_conv_3x3": "sep3",
    "sep_conv_5x5": "sep5",
    "sep_conv_7x7": "sep7",
    "dil_sep_conv_3x3": "dil3",
    "max_pool_3x3": "max3",
    "avg_pool_3x3": "avg3",
    "conv_1x1": "1x1",
    "group_conv_3x3": "gconv3",
}


def _layout(
    shape: str,
) -> tuple[Any, dict[int, tuple[float, float]], dict[int, tuple[float, float]]]:
    """Positions: tree nodes by index, and each edge's end point (leaf ends get their own point)."""
    flat = flatten_tree(get_tree(shape))
    ends: dict[int, tuple[float, float]] = {}
    nodes: dict[int, tuple[float, float]] = {}
    counter = [0]

    def place(index: int, depth: int) -> float:
        xs = []
        for edge, child in flat.nodes[index][2]:
            if child >= 0:
                x = place(child, depth + 1)
            else:
                x = float(counter[0])
                counter[0] += 1
            ends[edge] = (x, -(depth + 1))
            xs.append(x)
        nodes[index] = (sum(xs) / len(xs), -depth)
        return nodes[index][0]

    place(0, 0)
    return flat, nodes, ends


def draw_tree_cell(shape: str, cell: list[list[str]], ax: Axes, title: str = "") -> None:
    """Draw one cell of tree ``shape`` whose edge ``e`` keeps the ops ``cell[e]``."""
    flat, nodes, ends = _layout(shape)
    for index, (_, merge, branches) in enumerate(flat.nodes):
        x0, y0 = nodes[index]
        for edge, _ in branches:
            x1, y1 = ends[edge]
            ops = cell[edge]
            style = {"color": "black", "ls": "-"} if ops else {"color": "0.7", "ls": "--"}
            ax.plot([x0, x1], [y0, y1], lw=1.2, **style)
            label = "+".join(_SHORT.get(op, op) for op in ops) if ops else "pruned"
            ax.text(
                (x0 + x1) / 2,
                (y0 + y1) / 2,
                label,
                fontsize=6,
                ha="center",
                va="center",
                bbox={"fc": "white", "ec": "none", "pad": 0.5},
                color=style["color"],
            )
        ax.plot([x0], [y0], "o", ms=9, color="tab:blue")
        ax.text(
            x0,
            y0,
            "+" if merge == "add" else "c",
            fontsize=7,
            ha="center",
            va="center",
            color="white",
        )
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)


def draw_tree_genotype(genotype: Any, title: str = "", max_cells: int = 12) -> Figure:
    """A grid of the first ``max_cells`` cells of a :class:`~bayesnas_book.space.tree_supernet.TreeGenotype`."""
    cells = genotype.cells[:max_cells]
    cols = min(3, len(cells))
    rows = (len(cells) + cols - 1) // cols
    figure = Figure(figsize=(4 * cols, 2.6 * rows), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < len(cells):
            draw_tree_cell(genotype.shape, cells[k], ax, f"unit {k}")
        else:
            ax.set_axis_off()
    if title:
        figure.suptitle(title)
    return figure
