"""Matplotlib figures used by the chapters and the commands (fixed sizes, no global state)."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bayesnas_book.space.genotype import CellGenotype, Genotype
from bayesnas_book.space.graph import CELL_INPUTS, node_name

__all__ = ["draw_cell", "draw_genotype"]

_OP_SHORT = {
    "sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5", "dil_conv_3x3": "dil3", "dil_conv_5x5": "dil5",
    "max_pool_3x3": "max", "avg_pool_3x3": "avg", "skip_connect": "skip",
}


def draw_cell(cell: CellGenotype, ax: Axes, title: str = "") -> None:
    """Draw one derived cell on ``ax``: inputs left, nodes in the middle, the concat right.

    Each arrow is one surviving input of a node, labelled with the ops summed on it; pruned
    nodes are drawn hollow and grey.
    """
    positions = {CELL_INPUTS[0]: (0.0, 0.25), CELL_INPUTS[1]: (0.0, 0.75)}
    for j in range(len(cell.nodes)):
        positions[node_name(j)] = (1.0 + j, (0.12, 0.88, 0.5, 0.12, 0.88)[j % 5])
    output = (len(cell.nodes) + 1.2, 0.5)
    for j, inputs in enumerate(cell.nodes):
        for item in inputs:
            (x0, y0), (x1, y1) = positions[item.source], positions[node_name(j)]
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops={"arrowstyle": "->", "color": "tab:blue", "shrinkA": 12, "shrinkB": 12,
                                    "connectionstyle": "arc3,rad=0.15"})
            label = "+".join(_OP_SHORT.get(op, op) for op in item.ops)
            # label at 35% of the chord, pushed sideways like the arc
            lx, ly = x0 + 0.35 * (x1 - x0), y0 + 0.35 * (y1 - y0)
            lx, ly = lx + 0.08 * (y1 - y0), ly - 0.08 * (x1 - x0) / max(1.0, abs(x1 - x0))
            ax.text(lx, ly, label, fontsize=7, ha="center", va="center",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
    for j in cell.concat:
        x0, y0 = positions[node_name(j)]
        ax.annotate("", xy=output, xytext=(x0, y0),
                    arrowprops={"arrowstyle": "->", "color": "0.6", "ls": ":", "shrinkA": 12, "shrinkB": 12})
    for name, (x, y) in positions.items():
        live = name in CELL_INPUTS or int(name.split("_")[1]) in cell.live_nodes
        ax.scatter([x], [y], s=700, c="tab:orange" if name in CELL_INPUTS else ("tab:green" if live else "white"),
                   edgecolors="0.3" if live else "0.7", zorder=3)
        ax.text(x, y, name.replace("node_", "").replace("c_{", "c").replace("}", ""), ha="center", va="center",
                fontsize=8, zorder=4)
    ax.scatter([output[0]], [output[1]], s=700, c="tab:purple", zorder=3)
    ax.text(*output, "out", ha="center", va="center", fontsize=8, color="white", zorder=4)
    ax.set_xlim(-0.5, output[0] + 0.5)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title)
    ax.axis("off")


def draw_genotype(genotype: Genotype, title: str = "") -> Figure:
    """A figure with the normal (top) and reduction (bottom) cell of ``genotype``."""
    figure = Figure(figsize=(8, 6), layout="constrained")
    top, bottom = figure.subplots(2, 1)
    draw_cell(genotype.normal, top, "normal cell")
    draw_cell(genotype.reduction, bottom, "reduction cell")
    if title:
        figure.suptitle(title)
    return figure
