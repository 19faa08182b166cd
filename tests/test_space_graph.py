"""Cell graphs: validation, the four registered graphs, connectivity helpers, the registry."""

from __future__ import annotations

import json

import pytest

from bayesnas_book.space import graph as graph_module
from bayesnas_book.space.graph import (
    BAYESNAS_OPS,
    CELL_INPUTS,
    CellGraph,
    Edge,
    cell_graph_names,
    get_cell_graph,
    register_cell_graph,
)

K1, K2 = "c_{k-1}", "c_{k-2}"

# The official code's graph (edges_as_named for normal), its defect fixed so that
# node 3 <- c_{k-2}, node_0.
BAYESNAS_NORMAL = [
    (K1, 0, 1),
    (K2, 0, 1),
    (K1, 1, 1),
    (K2, 1, 1),
    (K1, 2, 1),
    (K2, 2, 1),
    (K2, 3, 1),
    ("node_0", 3, 1),
]
BAYESNAS_REDUCTION = [
    (K1, 0, 2),
    (K2, 0, 2),
    (K2, 1, 2),
    ("node_0", 1, 1),
    (K2, 2, 2),
    ("node_0", 2, 1),
    (K2, 3, 2),
    ("node_0", 3, 1),
]


def _triples(g: CellGraph) -> list[tuple[str, int, int]]:
    return [(e.source, e.target, e.stride) for e in g.edges]


def _graph(edges, num_nodes=2, reduction=False, **kw) -> CellGraph:
    return CellGraph(
        inputs=CELL_INPUTS, num_nodes=num_nodes, edges=edges, reduction=reduction, **kw
    )


def test_registry_lists_the_four_graphs():
    assert {"bayesnas_normal", "bayesnas_reduction", "darts_normal", "darts_reduction"} <= set(
        cell_graph_names()
    )


def test_bayesnas_graphs_match_the_paper():
    normal, reduction = get_cell_graph("bayesnas_normal"), get_cell_graph("bayesnas_reduction")
    assert _triples(normal) == BAYESNAS_NORMAL
    assert _triples(reduction) == BAYESNAS_REDUCTION
    assert not normal.reduction and reduction.reduction
    # the official code's defect (c_{k-1} -> node_3) is not in our graph
    assert (K1, 3) not in [(e.source, e.target) for e in normal.edges]
    for g in (normal, reduction):
        assert g.ops == BAYESNAS_OPS and g.num_ops == 7
        assert g.num_edges == 8 and g.num_switches == 64  # 8 edges x (1 parent + 7 children)
        assert g.inputs == (K2, K1) and g.num_nodes == 4


@pytest.mark.parametrize("reduction", [False, True])
def test_darts_graphs_have_every_edge(reduction):
    g = get_cell_graph("darts_reduction" if reduction else "darts_normal")
    assert g.num_edges == 14 and g.num_switches == 14 * 8
    expected = {(s, j) for j in range(4) for s in (K2, K1, *[f"node_{i}" for i in range(j)])}
    assert {(e.source, e.target) for e in g.edges} == expected
    for e in g.edges:
        assert e.stride == (2 if reduction and e.source in CELL_INPUTS else 1)


def test_connectivity_helpers():
    g = get_cell_graph("bayesnas_normal")
    assert g.edges_into(3) == (6, 7)
    assert g.edges_out_of(0) == g.edges_out_of("node_0") == (7,)
    assert g.edges_out_of(K2) == (1, 3, 5, 6)
    assert g.edges_out_of(3) == ()
    assert g.edge_index("node_0", 3) == 7
    assert g.node_names == ("node_0", "node_1", "node_2", "node_3")
    assert g.edges[0].name == "c_{k-1} -> node_0"
    with pytest.raises(ValueError, match=r"`node` must be in 0\.\.3, got 4"):
        g.edges_into(4)
    with pytest.raises(ValueError, match=r"`source` must be one of .*got 'node_9'"):
        g.edges_out_of("node_9")
    with pytest.raises(KeyError, match=r"no edge c_\{k-1\} -> node_3"):
        g.edge_index(K1, 3)


@pytest.mark.parametrize(
    "name", ["bayesnas_normal", "bayesnas_reduction", "darts_normal", "darts_reduction"]
)
def test_json_round_trip(name):
    g = get_cell_graph(name)
    assert CellGraph.from_dict(json.loads(json.dumps(g.to_dict()))) == g


def test_edge_tuples_are_converted():
    g = _graph([(K1, 0), (K2, 1)])
    assert g.edges == (Edge(K1, 0, 1), Edge(K2, 1, 1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"source": "", "target": 0}, r"`source` must be a non-empty string, got ''"),
        ({"source": K1, "target": -1}, r"`target` must be a non-negative integer, got -1"),
        ({"source": K1, "target": True}, r"`target` must be a non-negative integer, got True"),
        ({"source": K1, "target": 0, "stride": 3}, r"`stride` must be 1 or 2, got 3"),
    ],
)
def test_edge_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Edge(**kwargs)


@pytest.mark.parametrize(
    ("edges", "kw", "match"),
    [
        ([(K1, 0), ("c_{k-3}", 1)], {}, r"edge 1 .*source must be a cell input .*got 'c_\{k-3\}'"),
        ([(K1, 0), ("node_1", 1)], {}, r"a node source must precede its target .*node_1 -> node_1"),
        ([(K1, 0), ("node_1", 0), (K1, 1)], {}, r"precede its target .*node_1 -> node_0"),
        ([(K1, 0), (K1, 0), (K1, 1)], {}, r"edge 1 .*duplicate edge c_\{k-1\} -> node_0"),
        ([(K1, 0), (K2, 0)], {}, r"node_1 has no incoming edge"),
        ([(K1, 0), (K1, 2)], {}, r"target must be a node in 0\.\.1, got 2"),
        ([(K1, 0, 2), (K1, 1)], {}, r"stride 2 is allowed only .*reduction=False"),
        ([(K1, 0, 2), ("node_0", 1, 2)], {"reduction": True}, r"edge 1 .*stride 2 is allowed only"),
        ([(K1, 0, 1), ("node_0", 1, 1)], {"reduction": True}, r"must have stride 2 .*got stride 1"),
    ],
)
def test_graph_validation(edges, kw, match):
    with pytest.raises(ValueError, match=match):
        _graph(edges, **kw)


def test_graph_argument_validation():
    edges = [(K1, 0)]
    with pytest.raises(ValueError, match=r"`num_nodes` must be an integer >= 1, got 0"):
        CellGraph(inputs=CELL_INPUTS, num_nodes=0, edges=edges)
    with pytest.raises(ValueError, match=r"`inputs` must be non-empty strings"):
        CellGraph(inputs=(), num_nodes=1, edges=edges)
    with pytest.raises(ValueError, match=r"`inputs` must be distinct"):
        CellGraph(inputs=(K1, K1), num_nodes=1, edges=edges)
    with pytest.raises(ValueError, match=r"must not look like a node"):
        CellGraph(inputs=(K1, "node_3"), num_nodes=1, edges=edges)
    with pytest.raises(ValueError, match=r"`ops` must be distinct non-empty strings"):
        CellGraph(inputs=CELL_INPUTS, num_nodes=1, edges=edges, ops=("a", "a"))
    with pytest.raises(ValueError, match=r"`ops` must be distinct non-empty strings"):
        CellGraph(inputs=CELL_INPUTS, num_nodes=1, edges=edges, ops=())
    with pytest.raises(ValueError, match=r"`reduction` must be a bool, got 1"):
        CellGraph(inputs=CELL_INPUTS, num_nodes=1, edges=edges, reduction=1)


def test_registry_refuses_duplicates_and_lists_names(monkeypatch):
    monkeypatch.setattr(graph_module, "_REGISTRY", dict(graph_module._REGISTRY))
    g = _graph([(K1, 0), (K2, 1)], name="tiny")
    assert register_cell_graph("tiny", g) is g
    assert get_cell_graph("tiny") is g
    with pytest.raises(ValueError, match=r"a cell graph named 'tiny' is already registered"):
        register_cell_graph("tiny", g)
    with pytest.raises(
        ValueError, match=r"a cell graph named 'bayesnas_normal' is already registered"
    ):
        register_cell_graph("bayesnas_normal", g)
    with pytest.raises(ValueError, match=r"`graph` must be a CellGraph, got dict"):
        register_cell_graph("other", {})
    with pytest.raises(
        KeyError, match=r"unknown cell graph 'nope'; valid names: .*bayesnas_normal"
    ):
        get_cell_graph("nope")
