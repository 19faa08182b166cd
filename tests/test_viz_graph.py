"""Drawings of candidate cell graphs with keep masks (bayesnas_book.viz_graph)."""

from __future__ import annotations

import matplotlib.colors as mcolors
import pytest
import torch
from matplotlib.figure import Figure

from bayesnas_book.space.graph import cell_graph_names, get_cell_graph
from bayesnas_book.viz_graph import EDGE_STYLES, NODE_COLOURS, draw_cell_graph, node_rule_figure


def _axes():
    return Figure(figsize=(4, 3)).subplots()


def _node_faces(ax) -> list[tuple[float, ...]]:
    return [tuple(c.get_facecolors()[0]) for c in ax.collections]


@pytest.mark.parametrize("name", cell_graph_names())
def test_every_registered_graph_draws_all_edges_and_nodes(name):
    graph = get_cell_graph(name)
    ax = _axes()
    draw_cell_graph(graph, ax, title=name, legend=True)
    arrows = [t for t in ax.texts if getattr(t, "arrow_patch", None) is not None]
    # one arrow per candidate edge, one per live node into the output
    assert len(arrows) == graph.num_edges + graph.num_nodes
    labels = {t.get_text() for t in ax.texts}
    assert {f"e{e}" for e in range(graph.num_edges)} <= labels
    # inputs, nodes and the output are drawn as one scatter each
    assert len(ax.collections) == len(graph.inputs) + graph.num_nodes + 1
    assert ax.get_title() == name and ax.get_legend() is not None


def test_dangling_node_and_removed_edges_are_coloured():
    graph = get_cell_graph("bayesnas_normal")
    on = torch.ones(graph.num_edges, dtype=torch.bool)
    on[list(graph.edges_into(0))] = False  # node_0 loses both inputs, keeps node_0 -> node_3
    ax = _axes()
    draw_cell_graph(graph, ax, on)
    faces = _node_faces(ax)
    red = mcolors.to_rgba(NODE_COLOURS["dangling"])
    # collections: 2 inputs, nodes 0..3, output
    assert faces[2] == pytest.approx(red)
    assert all(f != pytest.approx(red) for i, f in enumerate(faces) if i != 2)
    removed = torch.zeros_like(on)
    removed[graph.edge_index("node_0", 3)] = True
    ax = _axes()
    draw_cell_graph(graph, ax, on & ~removed, removed=removed)
    colours = [
        mcolors.to_rgba(a.arrow_patch.get_edgecolor()) for a in ax.texts[: 2 * graph.num_edges : 2]
    ]
    red_edges = [
        e for e, c in enumerate(colours) if c == mcolors.to_rgba(EDGE_STYLES["removed"][0])
    ]
    assert red_edges == [graph.edge_index("node_0", 3)]
    # node_0 is now pruned (hollow), not dangling
    assert _node_faces(ax)[2] == pytest.approx(mcolors.to_rgba(NODE_COLOURS["pruned"]))


def test_keep_mask_is_reduced_to_edges():
    graph = get_cell_graph("darts_normal")
    keep = torch.ones(graph.num_edges, 1 + graph.num_ops, dtype=torch.bool)
    keep[3, 1:] = False  # every op of edge 3 pruned: the edge is off
    ax = _axes()
    draw_cell_graph(graph, ax, keep)
    styles = [a.arrow_patch.get_linestyle() for a in ax.texts[: 2 * graph.num_edges : 2]]
    off = [i for i, s in enumerate(styles) if s != "-"]
    assert off == [3]


def test_node_rule_figure_panels():
    graph = get_cell_graph("darts_normal")
    on = torch.ones(graph.num_edges, dtype=torch.bool)
    on[list(graph.edges_into(0))] = False
    figure = node_rule_figure(graph, on, title="cascade")
    left, right = figure.axes
    assert "1 dangling" in left.get_title()
    removed = len(graph.edges_out_of(0))  # node_0's outgoing edges: nothing else dies here
    assert f"{removed} edge(s) removed" in right.get_title()
    assert figure.get_size_inches().tolist() == [8.0, 3.2]


def test_errors_name_the_argument():
    graph = get_cell_graph("bayesnas_normal")
    ax = _axes()
    with pytest.raises(
        ValueError, match=r"`edge_on` must be None or a bool tensor of shape \(8,\)"
    ):
        draw_cell_graph(graph, ax, torch.ones(7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"`edge_on` must be None or a bool tensor"):
        draw_cell_graph(graph, ax, torch.ones(8))  # float, not bool
    with pytest.raises(ValueError, match=r"`removed` must be None or a bool tensor"):
        draw_cell_graph(graph, ax, removed=torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"`edge_labels` must have one label per edge \(8\)"):
        draw_cell_graph(graph, ax, edge_labels=["a", "b"])
    with pytest.raises(ValueError, match=r"`edge_on` must be None or a bool tensor"):
        node_rule_figure(graph, [True] * 8)


def _rendered_edge_labels(figure: Figure):
    """Per axes, (text, window extent) of every edge label of ``draw_cell`` (rendered by Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    node_names = {"ck-1", "ck-2", "out", "0", "1", "2", "3"}
    return [
        [
            (t.get_text(), t.get_window_extent(renderer))
            for t in ax.texts
            if t.get_text() and t.get_text() not in node_names
        ]
        for ax in figure.axes
    ]


@pytest.mark.parametrize("seed", [0, 1])
def test_derived_cell_labels_do_not_pile_up(seed):
    """A dense derived cell (most ops on every edge): every edge label drawn, none overlapping."""
    import itertools

    from bayesnas_book.space.derive import derive_cell
    from bayesnas_book.space.genotype import Genotype
    from bayesnas_book.viz import draw_genotype, edge_label

    gen = torch.Generator().manual_seed(seed)
    cells = {}
    for kind in ("normal", "reduction"):
        graph = get_cell_graph(f"bayesnas_{kind}")
        keep = torch.rand(graph.num_edges, 1 + graph.num_ops, generator=gen) < 0.8
        keep[:, 0] = True
        keep[:, 1] = True  # every edge keeps an op: eight labels per cell
        cells[kind] = derive_cell(graph, keep)
    genotype = Genotype(cells["normal"], cells["reduction"], "bayesnas", {})
    figure = draw_genotype(genotype, "dense")
    for cell, labels in zip(
        (genotype.normal, genotype.reduction), _rendered_edge_labels(figure), strict=True
    ):
        expected = sorted(edge_label(item.ops) for inputs in cell.nodes for item in inputs)
        assert sorted(text for text, _ in labels) == expected
        assert max(text.count("\n") for text, _ in labels) >= 1  # long labels wrap
        piled = [
            (a, b)
            for (a, box_a), (b, box_b) in itertools.combinations(labels, 2)
            if box_a.overlaps(box_b)
        ]
        assert piled == []


def test_edge_label_wraps_three_ops_a_line():
    from bayesnas_book.viz import edge_label

    ops = ["sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "max_pool_3x3", "skip_connect"]
    assert edge_label(ops) == "sep3+sep5+dil3\n+max+skip"
    assert edge_label(["none_op"]) == "none_op"


def test_a_long_edge_bends_around_the_nodes_it_passes():
    """c_{k-2} -> node_3 passes node_0 (same height as node_3): its arc keeps clear of node_0."""
    from bayesnas_book.viz import _ARC, _bend
    from bayesnas_book.viz_graph import _point_on_arc

    start, end, passed = (0.0, 0.25), (4.0, 0.12), (1.0, 0.12)  # draw_cell's positions
    per_unit = (100.0, 300.0)  # pixels per data unit
    rad = _bend(start, end, [passed], per_unit)
    assert abs(rad) > _ARC  # a longer edge bends more

    def clearance(r: float) -> float:
        points = [_point_on_arc(start, end, r, t / 50, per_unit) for t in range(1, 50)]
        squared = [((x - passed[0]) * 100) ** 2 + ((y - passed[1]) * 300) ** 2 for x, y in points]
        return min(squared) ** 0.5

    assert clearance(rad) >= clearance(-rad)
    assert clearance(rad) > 13  # a node marker's radius is 13 points (size 700)
    assert _bend((0.0, 0.25), (1.0, 0.12), [], per_unit) == _ARC  # a short edge keeps the default
