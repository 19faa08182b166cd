"""Entropy pruning, the reasons it reports, the node rule on random gammas, the prune-all error."""

from __future__ import annotations

import math

import pytest
import torch

from bayesnas_book.bayes.hard import dangling_nodes
from bayesnas_book.bayes.pruning import (
    ALL_OPS_PRUNED,
    DEFAULT_THRESHOLD,
    ENTROPY,
    KEPT,
    NODE_DISCONNECTED,
    PARENT_PRUNED,
    PruningError,
    entropy,
    entropy_prune_mask,
    prune,
)
from bayesnas_book.space.graph import get_cell_graph

F64 = torch.float64
GRAPHS = ["bayesnas_normal", "bayesnas_reduction", "darts_normal", "darts_reduction"]


def test_threshold_is_where_the_entropy_changes_sign():
    assert math.isclose(DEFAULT_THRESHOLD, 0.05855, rel_tol=1e-3)
    gamma = torch.logspace(-6, 3, 2001, dtype=F64)
    h = entropy(gamma)
    assert torch.allclose(h, 0.5 * torch.log(2 * math.pi * math.e * gamma), rtol=1e-15, atol=0)
    away = (gamma / DEFAULT_THRESHOLD - 1).abs() > 1e-12  # ties are decided by `<=` below
    mask = entropy_prune_mask(gamma)
    assert torch.equal(mask[away], (h <= 0)[away])
    assert mask.any() and not mask.all()
    assert bool(
        entropy_prune_mask(torch.tensor([DEFAULT_THRESHOLD], dtype=F64))
    )  # <= prunes the tie
    assert abs(float(entropy(torch.tensor(DEFAULT_THRESHOLD, dtype=F64)))) < 1e-15
    assert torch.equal(entropy_prune_mask(gamma, threshold=0.5), gamma <= 0.5)


@pytest.mark.parametrize(
    ("threshold", "match"),
    [
        (0.0, r"`threshold` must be in \(0, inf\), got 0.0"),
        (-1.0, r"`threshold` must be in \(0, inf\), got -1.0"),
        (math.inf, r"`threshold` must be in \(0, inf\), got inf"),
        (math.nan, r"`threshold` must be in \(0, inf\), got nan"),
        ("0.1", r"`threshold` must be a number in \(0, inf\), got '0.1'"),
    ],
)
def test_threshold_validation(threshold, match):
    with pytest.raises(ValueError, match=match):
        entropy_prune_mask(torch.ones(3), threshold)
    with pytest.raises(ValueError, match=match):
        prune(get_cell_graph("bayesnas_normal"), torch.ones(8, 8), threshold=threshold)


def test_reasons_on_a_hand_made_normal_cell():
    g = get_cell_graph("bayesnas_normal")
    gamma = torch.ones(8, 8, dtype=F64)
    gamma[0, 0] = 0.01  # edge 0 (c_{k-1} -> node_0): parent pruned
    gamma[1, 1:] = 0.02  # edge 1 (c_{k-2} -> node_0): every op pruned -> node_0 disconnected
    gamma[2, [1, 3]] = 0.05  # edge 2: two ops pruned by entropy, five kept
    gamma[0, 5] = 0.01  # an op of a pruned edge whose own entropy is also <= 0
    res = prune(g, gamma)
    assert res.edge_reasons == (
        ENTROPY,
        ALL_OPS_PRUNED,
        KEPT,
        KEPT,
        KEPT,
        KEPT,
        KEPT,
        NODE_DISCONNECTED,
    )
    assert res.op_reasons[0][4] == ENTROPY and res.op_reasons[0][0] == PARENT_PRUNED
    assert set(res.op_reasons[1]) == {ENTROPY}
    assert res.op_reasons[2] == (ENTROPY, KEPT, ENTROPY, KEPT, KEPT, KEPT, KEPT)
    assert set(res.op_reasons[7]) == {NODE_DISCONNECTED}
    assert res.kept_edges.tolist() == [False, False, True, True, True, True, True, False]
    assert res.kept_ops[2].tolist() == [False, True, False, True, True, True, True]
    assert res.live_nodes.tolist() == [False, True, True, True] and res.concat == (1, 2, 3)
    counts = res.counts()
    assert sum(counts.values()) == 8 * 7
    assert counts == {KEPT: 4 * 7 + 5, ENTROPY: 1 + 7 + 2, PARENT_PRUNED: 6, NODE_DISCONNECTED: 7}
    assert ("c_{k-1}", 1, "sep_conv_5x5") in res.kept_pairs() and len(res.kept_pairs()) == counts[
        KEPT
    ]
    text = res.summary()
    assert (
        "node_0 -> node_3: pruned (node disconnected)" in text
        and "concat: node_1, node_2, node_3" in text
    )
    assert res.entropy.shape == (8, 8) and float(res.entropy[0, 0]) < 0 < float(res.entropy[3, 3])
    # without the node rule, node_0 -> node_3 survives though node_0 has no input
    loose = prune(g, gamma, node_rule=False)
    assert loose.edge_reasons[7] == KEPT and dangling_nodes(g, loose.kept_edges) == (0,)


@pytest.mark.parametrize("name", GRAPHS)
def test_random_gammas_node_rule_never_leaves_a_dangling_node(name):
    g = get_cell_graph(name)
    gen = torch.Generator().manual_seed(11)
    with_rule_checked, dangling_without_rule = 0, 0
    for _ in range(150):
        p = float(torch.rand((), generator=gen)) * 0.7 + 0.1  # fraction of groups pruned
        gamma = torch.where(
            torch.rand(g.num_edges, 1 + g.num_ops, generator=gen) < p,
            torch.full((), 0.01, dtype=F64),
            torch.full((), 1.0, dtype=F64),
        )
        try:
            res = prune(g, gamma)
        except PruningError:
            continue
        with_rule_checked += 1
        on = res.kept_edges
        for j in range(g.num_nodes):
            if on[list(g.edges_out_of(j))].any():
                assert on[list(g.edges_into(j))].any(), f"node_{j} feeds an edge but has no input"
        assert torch.equal(res.keep[:, 0], res.keep[:, 1:].any(dim=1))  # edge kept iff an op kept
        for j in res.concat:
            assert on[list(g.edges_into(j))].any()
        loose = prune(g, gamma, node_rule=False)
        dangling_without_rule += len(dangling_nodes(g, loose.kept_edges)) > 0
    assert with_rule_checked > 50
    assert dangling_without_rule > 0


def test_pruning_everything_raises_with_advice():
    g = get_cell_graph("bayesnas_normal")
    with pytest.raises(
        PruningError,
        match=r"threshold=0.05855, lambda_o=0.01, lambda_c=0.002\) would prune every edge of the "
        r"normal cell .*lower the penalty strength lambda .*or lower `threshold`",
    ):
        prune(g, torch.full((8, 8), 0.01), lambda_o=0.01, lambda_c=0.002, cell_type="normal")
    # only the node rule empties this reduction cell: every edge from an input is pruned
    r = get_cell_graph("bayesnas_reduction")
    gamma = torch.ones(8, 8)
    gamma[[0, 1, 2, 4, 6], 0] = 0.01
    with pytest.raises(PruningError, match=r"every edge of the bayesnas_reduction cell"):
        prune(r, gamma)
    assert prune(r, gamma, node_rule=False).kept_edges.tolist() == [
        False,
        False,
        False,
        True,
        False,
        True,
        False,
        True,
    ]


def test_prune_input_errors():
    g = get_cell_graph("bayesnas_normal")
    with pytest.raises(
        ValueError,
        match=r"`prior_variance` must have shape \(8, 8\) for bayesnas_normal, got \(8, 7\)",
    ):
        prune(g, torch.ones(8, 7))
    bad = torch.ones(8, 8)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"`prior_variance` \(gamma\) must be >= 0 and not NaN"):
        prune(g, bad)
    with pytest.raises(ValueError, match=r"must be >= 0 and not NaN, got min -1.0"):
        entropy_prune_mask(torch.tensor([-1.0, 1.0]))
