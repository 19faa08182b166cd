"""The supernet schematic is drawn from the library's cell graph."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from bayesnas_book.space.graph import get_cell_graph
from bayesnas_book.viz_schematic import supernet_schematic


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
