"""Cells grown to a parameter budget: orders, the closest prefix, both cell types matched."""

from __future__ import annotations

import pytest
import torch

from bayesnas_book.matched_cells import grow_to_budget, magnitude_order, matched_genotype, random_order
from bayesnas_book.space.genotype import genotype_names, get_genotype
from bayesnas_book.space.graph import get_cell_graph

GRAPHS = {kind: get_cell_graph(f"bayesnas_{kind}") for kind in ("normal", "reduction")}


def in_edge_order(kind: str) -> list[tuple[int, int]]:
    """Every pair, edge by edge: each pair's source node already has an input, so each adds one pair."""
    graph = GRAPHS[kind]
    return [(e, k) for e in range(graph.num_edges) for k in range(graph.num_ops)]


def test_magnitude_order_is_by_effective_gate_then_index() -> None:
    switches = torch.tensor([[1.0, 0.2, 0.5], [-2.0, 0.1, 0.0], [0.5, 1.0, 0.4]])  # (E=3, 1+K=3)
    # gates |sbar s|: e0: 0.2, 0.5; e1: 0.2, 0.0; e2: 0.5, 0.2
    assert magnitude_order(switches) == [(0, 1), (2, 0), (0, 0), (1, 0), (2, 1), (1, 1)]
    with pytest.raises(ValueError, match=r"shape \(E, 1 \+ K\)"):
        magnitude_order(torch.zeros(3))


def test_random_order_is_a_permutation_fixed_by_its_generator() -> None:
    graph = GRAPHS["normal"]
    first = random_order(graph, torch.Generator().manual_seed(3))
    assert sorted(first) == in_edge_order("normal")
    assert first == random_order(graph, torch.Generator().manual_seed(3)) != random_order(
        graph, torch.Generator().manual_seed(4))


@pytest.mark.parametrize("target", [1, 7, 20, 10_000])
def test_grow_to_budget_takes_the_prefix_closest_to_the_target(target: int) -> None:
    graph, order = GRAPHS["normal"], random_order(GRAPHS["normal"], torch.Generator().manual_seed(0))

    def params(cell) -> int:  # any count that never falls as the prefix grows
        return 3 * len(cell.edges()) + len(cell.live_nodes)

    cell = grow_to_budget(graph, order, params, target)
    reachable = []  # brute force over every prefix that gives a cell
    for n in range(1, len(order) + 1):
        try:
            reachable.append((abs(params(grow_to_budget(graph, order[:n], params, 10**9)) - target), n))
        except ValueError:
            continue
    best = min(reachable)[0]
    assert abs(params(cell) - target) == best


def test_matched_genotype_matches_each_cell_type_in_turn() -> None:
    like = get_genotype(genotype_names()[0])
    pairs = lambda g: len(g.normal.edges()) + len(g.reduction.edges())  # noqa: E731
    matched = matched_genotype(like, GRAPHS, {k: in_edge_order(k) for k in GRAPHS}, pairs, "ordered")
    assert len(matched.normal.edges()) == len(like.normal.edges())
    assert len(matched.reduction.edges()) == len(like.reduction.edges())
    assert matched.metadata["rule"] == "ordered"
