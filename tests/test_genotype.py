"""Genotypes: validation, JSON round trip, the named official cells, derivation rules, drawing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from bayesnas_book.space.derive import derive_cell, magnitude_cell
from bayesnas_book.space.genotype import (
    CellGenotype,
    Genotype,
    GenotypeError,
    NodeInput,
    genotype_names,
    get_genotype,
    load_genotype,
    save_genotype,
)
from bayesnas_book.space.graph import get_cell_graph
from bayesnas_book.viz import draw_genotype

# The project's own record of the released cells, outside the repository: set the variable to
# its path to check the shipped genotypes against it.
RELEASED_FACTS = Path(os.environ.get("BAYESNAS_RELEASED_GENOTYPES", "/nonexistent"))


@pytest.mark.parametrize("name", genotype_names())
def test_released_genotypes_round_trip(name: str, tmp_path) -> None:
    genotype = get_genotype(name)
    path = save_genotype(genotype, tmp_path / "g.json")
    again = load_genotype(path)
    assert again == genotype
    assert load_genotype(name) == genotype
    assert genotype.metadata["official"]["params"] > 2_000_000


@pytest.mark.skipif(not RELEASED_FACTS.is_file(), reason="BAYESNAS_RELEASED_GENOTYPES names no file")
def test_released_genotypes_match_the_recorded_facts() -> None:
    facts = json.loads(RELEASED_FACTS.read_text())["released"]
    for key, name in [("cifar10_lambda_0.01", "bayesnas_cifar10_lambda0.01"), ("imagenet", "bayesnas_imagenet")]:
        genotype = get_genotype(name)
        for kind in ("normal", "reduction"):
            expected = [[(i["from"], tuple(i["ops"]), i["stride"]) for i in n["inputs"]] for n in facts[key][kind]]
            cell = getattr(genotype, kind)
            assert [[(i.source, i.ops, i.stride) for i in n] for n in cell.nodes] == expected
        assert genotype.metadata["official"]["macs"] == facts[key]["macs"]


def test_three_released_cifar_cells_and_imagenet() -> None:
    names = genotype_names()
    assert len(names) == 4 and "bayesnas_imagenet" in names
    with pytest.raises(GenotypeError, match="unknown genotype 'darts'; valid names: bayesnas_cifar10_lambda0.005"):
        get_genotype("darts")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("reduction"), "missing key 'reduction'"),
        (lambda d: d["normal"]["nodes"][0][0].update(ops=["conv_9x9"]), "unknown op 'conv_9x9'; valid ops: sep_conv_3x3"),
        (lambda d: d["normal"]["nodes"][0][0].update(source="node_2"), "a node input must come from an earlier node"),
        (lambda d: d["normal"].update(concat=[0, 0]), "concat must list distinct nodes"),
        (lambda d: d["normal"]["nodes"][0][0].pop("ops"), "normal cell: expected"),
        (lambda d: d.update(format_version=9), "format_version 9 is not supported"),
    ],
)
def test_malformed_genotype_files_are_named(tmp_path, mutate, message: str) -> None:
    data = get_genotype("bayesnas_cifar10_lambda0.01").to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GenotypeError, match=message):
        load_genotype(path)


def test_not_json_and_missing_file(tmp_path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(GenotypeError, match="is not valid JSON"):
        load_genotype(path)
    with pytest.raises(GenotypeError, match="is neither a genotype file nor a known name"):
        load_genotype(tmp_path / "nothing.json")


def test_cell_pruned_to_nothing_is_an_error() -> None:
    with pytest.raises(GenotypeError, match="pruned to nothing"):
        CellGenotype(((), (), (), ()), ())
    with pytest.raises(GenotypeError, match="node_1 has no input of its own"):
        CellGenotype(((NodeInput("c_{k-1}", ("skip_connect",)),), (), (NodeInput("node_1", ("skip_connect",)),)), (0, 2))


def test_derive_keeps_every_surviving_pair_and_drops_dead_nodes() -> None:
    graph = get_cell_graph("bayesnas_normal")
    keep = torch.zeros(graph.num_edges, 1 + graph.num_ops, dtype=torch.bool)
    e0 = graph.edge_index("c_{k-1}", 0)
    keep[e0, [0, 1, 7]] = True  # parent + sep_conv_3x3 + skip_connect
    e3 = graph.edge_index("node_0", 3)
    keep[e3, [0, 5]] = True  # max_pool_3x3
    e1 = graph.edge_index("c_{k-2}", 1)
    keep[e1, 1:] = True  # ops kept but the parent switch is off: the edge is gone
    cell = derive_cell(graph, keep)
    assert cell.nodes[0] == (NodeInput("c_{k-1}", ("sep_conv_3x3", "skip_connect")),)
    assert cell.nodes[1] == () and cell.nodes[2] == ()
    assert cell.nodes[3] == (NodeInput("node_0", ("max_pool_3x3",)),)
    assert cell.concat == (0, 3)
    with pytest.raises(GenotypeError, match="bayesnas_normal cell was pruned to nothing"):
        derive_cell(graph, torch.zeros_like(keep))
    with pytest.raises(ValueError, match=r"`keep` must have shape \(E, 1 \+ K\) = \(8, 8\)"):
        derive_cell(graph, keep[:3])


def test_derive_drops_inputs_from_dead_nodes() -> None:
    graph = get_cell_graph("bayesnas_reduction")
    keep = torch.zeros(graph.num_edges, 1 + graph.num_ops, dtype=torch.bool)
    keep[graph.edge_index("node_0", 1), [0, 7]] = True  # node_0 itself has no input
    keep[graph.edge_index("c_{k-2}", 2), [0, 2]] = True
    cell = derive_cell(graph, keep)
    assert cell.live_nodes == (2,) and cell.nodes[2] == (NodeInput("c_{k-2}", ("sep_conv_5x5",), 2),)


def test_magnitude_rule_keeps_two_edges_and_one_op() -> None:
    graph = get_cell_graph("darts_normal")
    generator = torch.Generator().manual_seed(0)
    switches = torch.rand(graph.num_edges, 1 + graph.num_ops, generator=generator)
    cell = magnitude_cell(graph, switches)
    gate = switches[:, :1] * switches[:, 1:]
    for j, inputs in enumerate(cell.nodes):
        incoming = graph.edges_into(j)
        assert len(inputs) == min(2, len(incoming))
        strongest = sorted(incoming, key=lambda e: -float(gate[e].max()))[:2]
        assert {graph.edges[e].source for e in strongest} == {i.source for i in inputs}
        for item in inputs:
            e = graph.edge_index(item.source, j)
            assert item.ops == (graph.ops[int(gate[e].argmax())],)


def test_describe_and_draw() -> None:
    genotype = get_genotype("bayesnas_cifar10_lambda0.01")
    text = genotype.describe()
    assert "node_3 = avg_pool_3x3(node_0)" in text
    figure = draw_genotype(genotype, "official")
    assert len(figure.axes) == 2
    assert Genotype.from_dict(genotype.to_dict()) == genotype


@pytest.mark.parametrize(
    ("kind", "node", "index", "stride", "message"),
    [
        ("normal", 0, 0, 2, r"bad\.json, normal cell: node_0 input 'c_\{k-1\}' \(op sep_conv_5x5\) has stride 2; "
                            r"a normal cell keeps the resolution.*set \"stride\": 1"),
        ("reduction", 1, 0, 1, r"bad\.json, reduction cell: node_1 input 'c_\{k-2\}' \(ops max_pool_3x3, avg_pool_3x3\) has stride 1; "
                               r"an edge from a cell input in a reduction cell halves the resolution.*set \"stride\": 2"),
        ("reduction", 3, 0, 2, r"bad\.json, reduction cell: node_3 input 'node_0' \(op sep_conv_5x5\) has stride 2; "
                               r"an edge between nodes keeps the resolution.*set \"stride\": 1"),
    ],
)
def test_strides_that_break_the_space_are_refused_with_the_file_cell_and_op(tmp_path, kind, node, index, stride,
                                                                             message) -> None:
    data = get_genotype("bayesnas_cifar10_lambda0.01").to_dict()
    data[kind]["nodes"][node][index]["stride"] = stride
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GenotypeError, match=message):
        load_genotype(path)


def test_strides_are_checked_when_a_genotype_is_built_in_code() -> None:
    official = get_genotype("bayesnas_cifar10_lambda0.01")
    with pytest.raises(GenotypeError, match=r"^normal cell: node_0 input 'c_\{k-1\}' \(op skip_connect\) has stride 2"):
        Genotype(official.reduction, official.reduction)
    with pytest.raises(GenotypeError, match=r"^reduction cell: node_0 input 'c_\{k-1\}' \(op sep_conv_5x5\) has stride 1"):
        Genotype(official.normal, official.normal)
