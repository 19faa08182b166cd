"""The supernet schematic is drawn from the library's cell graph."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from bayesnas_book.space.graph import get_cell_graph
from bayesnas_book.viz_schematic import curvature_sweep_schematic, supernet_schematic


def _texts(figure: Figure) -> list[str]:
    return [text.get_text() for ax in figure.axes for text in ax.texts]


@pytest.mark.parametrize("name", ["bayesnas_normal", "darts_normal"])
def test_the_schematic_shows_every_node_and_one_child_switch_per_op(name: str) -> None:
    graph = get_cell_graph(name)
    figure = supernet_schematic(graph, picked=graph.num_edges - 1)
    texts = _texts(figure)
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    assert sum(t.startswith("$x_") and t != "$x_i$" for t in texts) == graph.num_nodes
    assert [t for t in texts if t.startswith(r"$\times\,s_e^")] == [
        rf"$\times\,s_e^{{{k}}}$" for k in range(1, graph.num_ops + 1)]
    assert texts.count(r"$\times\,\bar s_e$") == 1
    from matplotlib.colors import to_rgba

    red = [p for p in figure.axes[0].patches if p.get_edgecolor() == to_rgba("tab:red")]
    assert len(red) == 1  # exactly the picked edge


def test_a_missing_edge_is_refused() -> None:
    with pytest.raises(ValueError, match=r"`picked` must be an edge index in \[0, 8\)"):
        supernet_schematic(get_cell_graph("bayesnas_normal"), picked=8)


def test_the_sweep_schematic_shows_the_switch_rule_the_start_and_the_dropped_terms() -> None:
    figure = curvature_sweep_schematic()
    texts = _texts(figure)
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    joined = "\n".join(texts)
    for layer in ("ReLU", "conv", "BN", "max pool", r"$\times\,s_1$", r"$\times\,s_2$",
                  r"$\Sigma$", "softmax\nCE"):
        assert layer in texts, layer
    assert r"$H_z = p\,(1-p)/B$" in joined  # the sweep starts at the logits
    switch = next(t for t in texts if t.startswith("switch $y = s\\,z$"))
    assert r"\approx \sum z^2 H_y$" in switch and "$H_z = s^2 H_y$" in switch
    assert "branches add" in joined and "$H_y$ to both\nbranches" in texts
    assert "cross terms" in joined and "classes:\n$-p_c\\,p_{c'}/B$" in texts


def test_the_sweep_schematic_labels_are_readable_and_do_not_overlap() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = curvature_sweep_schematic()
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)  # lays out the constrained axes
    texts = [t for ax in figure.axes for t in ax.texts]
    assert min(t.get_fontsize() for t in texts) >= 9
    boxes = [t.get_window_extent(renderer) for t in texts]
    page = figure.bbox
    for text, box in zip(texts, boxes, strict=True):
        assert page.x0 <= box.x0 and box.x1 <= page.x1, text.get_text()
        assert page.y0 <= box.y0 and box.y1 <= page.y1, text.get_text()
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())
