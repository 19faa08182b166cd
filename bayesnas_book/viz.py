"""Matplotlib figures used by the chapters and the commands (fixed sizes, no global state)."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bayesnas_book.space.genotype import CellGenotype, Genotype
from bayesnas_book.space.graph import CELL_INPUTS, node_name
from bayesnas_book.viz_graph import _point_on_arc

__all__ = ["draw_cell", "draw_genotype", "edge_label", "search_progress_figure"]

_OP_SHORT = {
    "sep_conv_3x3": "sep3",
    "sep_conv_5x5": "sep5",
    "dil_conv_3x3": "dil3",
    "dil_conv_5x5": "dil5",
    "max_pool_3x3": "max",
    "avg_pool_3x3": "avg",
    "skip_connect": "skip",
}
_ARC = 0.15  # arc3 bend of every edge
_LABEL_FONT = 7.0  # points
_NODE_SIZE = 700  # scatter marker area, points^2
# where along an arc a label may sit, most preferred first
_LABEL_T = (0.5, 0.4, 0.6, 0.3, 0.7, 0.25, 0.75, 0.2, 0.8, 0.15, 0.85)


def edge_label(ops: tuple[str, ...] | list[str], per_line: int = 3) -> str:
    """Short op names joined by ``+``, ``per_line`` a line: ``"sep3+sep5+dil3\\n+max"``."""
    short = [_OP_SHORT.get(op, op) for op in ops]
    lines = ["+".join(short[i : i + per_line]) for i in range(0, len(short), per_line)]
    return "\n+".join(lines)


def _box(
    center: tuple[float, float], text: str, per_unit: tuple[float, float], dpi: float
) -> tuple[float, ...]:
    """Estimated ``(x0, y0, x1, y1)`` of a text label in data units (font metrics approximated)."""
    lines = text.split("\n")
    width_pt = max(len(line) for line in lines) * 0.62 * _LABEL_FONT + 4
    height_pt = len(lines) * 1.25 * _LABEL_FONT + 3
    w, h = width_pt * dpi / 72 / per_unit[0], height_pt * dpi / 72 / per_unit[1]
    return center[0] - w / 2, center[1] - h / 2, center[0] + w / 2, center[1] + h / 2


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Area of the intersection of two boxes ``(x0, y0, x1, y1)``."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _bend(
    start: tuple[float, float],
    end: tuple[float, float],
    between: list[tuple[float, float]],
    per_unit: tuple[float, float],
) -> float:
    """The ``arc3`` bend of an edge: ``_ARC``, or for an edge that passes nodes, the larger bend
    to the side (of ``+-(_ARC + 0.05 * (span - 1))``) that keeps its arc farthest from them."""
    if not between:
        return _ARC
    size = _ARC + 0.05 * (end[0] - start[0] - 1)

    def clearance(rad: float) -> float:  # in display pixels
        points = [_point_on_arc(start, end, rad, t / 20, per_unit) for t in range(1, 20)]
        return min(
            ((px - x) * per_unit[0]) ** 2 + ((py - y) * per_unit[1]) ** 2
            for px, py in points
            for x, y in between
        )

    return max((size, -size), key=clearance)


def draw_cell(cell: CellGenotype, ax: Axes, title: str = "") -> None:
    """Draw one derived cell on ``ax``: inputs left, nodes in the middle, the concat right.

    Each arrow is one surviving input of a node, labelled with the ops summed on it (at most
    three a line). Each label sits on its own arrow, at the point along it where it overlaps the
    labels placed before it and the nodes least (estimated from the font size). Pruned nodes are
    drawn hollow and grey.
    """
    positions = {CELL_INPUTS[0]: (0.0, 0.25), CELL_INPUTS[1]: (0.0, 0.75)}
    for j in range(len(cell.nodes)):
        positions[node_name(j)] = (1.0 + j, (0.12, 0.88, 0.5, 0.12, 0.88)[j % 5])
    output = (len(cell.nodes) + 1.2, 0.5)
    xlim, ylim = (-0.5, output[0] + 0.5), (-0.05, 1.05)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    # display pixels per data unit (before any layout engine resizes the axes: an estimate)
    per_unit = (ax.bbox.width / (xlim[1] - xlim[0]), ax.bbox.height / (ylim[1] - ylim[0]))
    dpi = ax.figure.dpi
    node_half = (_NODE_SIZE**0.5 / 2) * dpi / 72
    placed = [
        (
            x - node_half / per_unit[0],
            y - node_half / per_unit[1],
            x + node_half / per_unit[0],
            y + node_half / per_unit[1],
        )
        for x, y in [*positions.values(), output]
    ]
    for j, inputs in enumerate(cell.nodes):
        for item in inputs:
            start, end = positions[item.source], positions[node_name(j)]
            between = [p for name, p in positions.items() if start[0] < p[0] < end[0]]
            rad = _bend(start, end, between, per_unit)
            ax.annotate(
                "",
                xy=end,
                xytext=start,
                arrowprops={
                    "arrowstyle": "->",
                    "color": "tab:blue",
                    "shrinkA": 12,
                    "shrinkB": 12,
                    "connectionstyle": f"arc3,rad={rad:.3f}",
                },
            )
            label = edge_label(item.ops)
            options = []
            for t in _LABEL_T:
                box = _box(_point_on_arc(start, end, rad, t, per_unit), label, per_unit, dpi)
                options.append((sum(_overlap(box, other) for other in placed), t, box))
            _, t, box = min(options, key=lambda option: (option[0], _LABEL_T.index(option[1])))
            placed.append(box)
            ax.text(
                (box[0] + box[2]) / 2,
                (box[1] + box[3]) / 2,
                label,
                fontsize=_LABEL_FONT,
                ha="center",
                va="center",
                linespacing=1.0,
                zorder=5,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            )
    for j in cell.concat:
        x0, y0 = positions[node_name(j)]
        ax.annotate(
            "",
            xy=output,
            xytext=(x0, y0),
            arrowprops={
                "arrowstyle": "->",
                "color": "0.6",
                "ls": ":",
                "shrinkA": 12,
                "shrinkB": 12,
            },
        )
    for name, (x, y) in positions.items():
        live = name in CELL_INPUTS or int(name.split("_")[1]) in cell.live_nodes
        ax.scatter(
            [x],
            [y],
            s=_NODE_SIZE,
            c="tab:orange" if name in CELL_INPUTS else ("tab:green" if live else "white"),
            edgecolors="0.3" if live else "0.7",
            zorder=3,
        )
        ax.text(
            x,
            y,
            name.replace("node_", "").replace("c_{", "c").replace("}", ""),
            ha="center",
            va="center",
            fontsize=8,
            zorder=4,
        )
    ax.scatter([output[0]], [output[1]], s=_NODE_SIZE, c="tab:purple", zorder=3)
    ax.text(*output, "out", ha="center", va="center", fontsize=8, color="white", zorder=4)
    ax.set_title(title)
    ax.axis("off")


def draw_genotype(genotype: Genotype, title: str = "") -> Figure:
    """A ``(10, 7.5)`` inch figure: the normal (top) and reduction (bottom) cell of ``genotype``."""
    figure = Figure(figsize=(10, 7.5), layout="constrained")
    top, bottom = figure.subplots(2, 1)
    draw_cell(genotype.normal, top, "normal cell")
    draw_cell(genotype.reduction, bottom, "reduction cell")
    if title:
        figure.suptitle(title)
    return figure


def search_progress_figure(trace: list[dict], title: str = "") -> Figure:
    """Pruning and accuracy over the rounds of a search, from ``search.pruning_trace``.

    Left: the (edge, op) pairs each cell type keeps after every round (round 0: before the first
    update, all of them). Right: the supernet's validation accuracy at the end of every round
    (round 0: after the warm-up).

    Args:
        trace: the rows of ``pruning_trace(history, metrics)``, rounds ``0..T``.
        title: a figure title.

    Returns:
        A ``(9, 3.4)`` inch figure with two axes.

    Raises:
        ValueError: if ``trace`` is empty or its rows have no ``{kind}_pairs`` column.
    """
    kinds = [key[: -len("_pairs")] for key in (trace[0] if trace else {}) if key.endswith("_pairs")]
    if not kinds:
        raise ValueError("`trace` must be the non-empty rows of pruning_trace(history, metrics)")
    rounds = [row["round"] for row in trace]
    figure = Figure(figsize=(9, 3.4), layout="constrained")
    pairs_ax, accuracy_ax = figure.subplots(1, 2)
    for kind, marker in zip(kinds, "os^v", strict=False):
        pairs = [row[f"{kind}_pairs"] for row in trace]
        pairs_ax.plot(rounds, pairs, marker=marker, label=f"{kind} cell")
    pairs_ax.axhline(trace[0][f"{kinds[0]}_pairs"], color="0.6", ls=":", lw=0.8)
    pairs_ax.set_ylim(0, trace[0][f"{kinds[0]}_pairs"] * 1.08)
    pairs_ax.set_xlabel("round (0: before the first update)")
    pairs_ax.set_ylabel("(edge, op) pairs kept")
    pairs_ax.set_xticks(rounds)
    pairs_ax.legend(fontsize=8)
    measured = [row for row in trace if row["validation_accuracy"] is not None]
    accuracy = [row["validation_accuracy"] for row in measured]
    accuracy_ax.plot([row["round"] for row in measured], accuracy, marker="o", color="tab:green")
    accuracy_ax.set_ylim(0, 1)
    accuracy_ax.axhline(0.1, color="0.6", ls=":", lw=0.8)
    accuracy_ax.text(rounds[0], 0.12, "chance (10 classes)", fontsize=7, color="0.4")
    accuracy_ax.set_xlabel("round (0: after the warm-up)")
    accuracy_ax.set_ylabel("supernet validation accuracy")
    accuracy_ax.set_xticks(rounds)
    if title:
        figure.suptitle(title)
    return figure
