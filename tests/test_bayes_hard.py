"""HARD groups, the child-parent coupling and the node rule."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from bayesnas_book.bayes.hard import (
    PAPER_NUM_CELLS,
    SwitchGroups,
    apply_hard_rules,
    apply_node_rule,
    dangling_nodes,
    describe_switch,
    edge_alive,
    group_norms,
    hard_coupling,
    live_nodes,
)
from bayesnas_book.space.graph import get_cell_graph

GRAPHS = ["bayesnas_normal", "bayesnas_reduction", "darts_normal", "darts_reduction"]


# -- groups ---------------------------------------------------------------------------------------
def test_paper_supernet_groups():
    groups = SwitchGroups.for_space("bayesnas", PAPER_NUM_CELLS)
    assert len(groups) == 2 * 8 * 8
    assert groups.num_switches == 512  # 8 cells x 64 switches
    assert groups.shape("normal") == (6, 8, 8) and groups.shape("reduction") == (2, 8, 8)
    g = groups.group("reduction", 3, 0)
    assert g.index == 64 + 3 * 8 and g.is_parent and g.op is None and g.num_cells == 2
    assert g.label == "reduction cell, edge 3 (node_0 -> node_1), parent switch"
    assert groups.members(g.index) == (("reduction", 0, 3, 0), ("reduction", 1, 3, 0))
    child = groups.group("normal", 6, 1)
    assert child.op == "sep_conv_3x3" and not child.is_parent
    assert len(groups.members(child.index)) == 6
    assert groups.children(groups.index("normal", 2, 0)) == tuple(range(17, 24))
    assert all(groups.parent(i) == 16 for i in range(17, 24))
    assert [x.index for x in groups.groups] == list(range(len(groups)))
    assert groups.edges_into("reduction", 1) == (2, 3)
    assert groups.edges_out_of("reduction", "node_0") == (3, 5, 7)
    darts = SwitchGroups.for_space("darts", {"normal": 1, "reduction": 1})
    assert len(darts) == 2 * 14 * 8 and darts.num_switches == 224


def test_group_index_round_trip_and_flatten():
    groups = SwitchGroups.for_space("bayesnas", {"normal": 2, "reduction": 1})
    for g in groups.groups:
        assert groups.index(g.cell_type, g.edge, g.column) == g.index
    values = {
        t: torch.randn(8, 8, generator=torch.Generator().manual_seed(i))
        for i, t in enumerate(groups.cell_types)
    }
    flat = groups.flatten(values)
    assert flat.shape == (128,)
    assert flat[groups.index("reduction", 5, 3)] == values["reduction"][5, 3]
    back = groups.unflatten(flat)
    for t in groups.cell_types:
        assert_close(back[t], values[t])
    with pytest.raises(ValueError, match=r"`values` is missing cell type 'reduction'"):
        groups.flatten({"normal": values["normal"]})
    with pytest.raises(
        ValueError, match=r"`values\['normal'\]` must have shape \(8, 8\), got \(8, 7\)"
    ):
        groups.flatten({"normal": values["normal"][:, :7], "reduction": values["reduction"]})
    with pytest.raises(ValueError, match=r"`flat` must have shape \(128,\), got \(3,\)"):
        groups.unflatten(torch.zeros(3))


def test_group_errors():
    g = get_cell_graph("bayesnas_normal")
    with pytest.raises(ValueError, match=r"must name the same non-empty set of cell types"):
        SwitchGroups({"normal": g}, {"normal": 1, "reduction": 1})
    with pytest.raises(
        ValueError, match=r"`num_cells\['normal'\]` must be an integer >= 1 .*got 0"
    ):
        SwitchGroups({"normal": g}, {"normal": 0})
    with pytest.raises(ValueError, match=r"`graphs\['normal'\]` must be a CellGraph, got str"):
        SwitchGroups({"normal": "bayesnas_normal"}, {"normal": 1})
    with pytest.raises(KeyError, match=r"unknown cell graph 'nas_normal'"):
        SwitchGroups.for_space("nas")
    groups = SwitchGroups({"normal": g}, {"normal": 3})
    with pytest.raises(ValueError, match=r"unknown cell type 'reduction'; valid: normal"):
        groups.shape("reduction")
    with pytest.raises(ValueError, match=r"`edge` must be in 0\.\.7, got 8"):
        groups.index("normal", 8, 0)
    with pytest.raises(ValueError, match=r"`column` must be in 0\.\.7, got 8"):
        groups.index("normal", 0, 8)
    with pytest.raises(ValueError, match=r"group 1 \(.*op sep_conv_3x3\) is a child switch"):
        groups.children(1)
    with pytest.raises(ValueError, match=r"group 0 \(.*\) is a parent switch and has no parent"):
        groups.parent(0)


def test_describe_switch():
    g = get_cell_graph("bayesnas_normal")
    assert (
        describe_switch("normal", g, 7, 7)
        == "normal cell, edge 7 (node_0 -> node_3), op skip_connect"
    )
    assert describe_switch("normal", None, 7, 0) == "normal cell, edge 7, parent switch"
    assert describe_switch("normal", None, 7, 2) == "normal cell, edge 7, op column 2"


# -- norms and coupling ---------------------------------------------------------------------------
def test_group_norms():
    s = torch.randn(6, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert_close(group_norms(s), (s**2).sum(0).sqrt(), rtol=1e-12, atol=1e-12)
    with pytest.raises(
        ValueError, match=r"`switches` must have shape \(N, E, 1 \+ K\) with N >= 1"
    ):
        group_norms(s[0])
    with pytest.raises(ValueError, match=r"got \(0, 8, 8\)"):
        group_norms(s[:0])


def test_hard_coupling_formula():
    gen = torch.Generator().manual_seed(1)
    gamma = torch.rand(8, 8, dtype=torch.float64, generator=gen) * 3 + 1e-3
    out = hard_coupling(gamma)
    assert_close(out[:, 0], gamma[:, 0], rtol=0, atol=0)  # parents unchanged
    expected = 1.0 / (1.0 / gamma[:, 1:] + 1.0 / gamma[:, :1])
    assert_close(out[:, 1:], expected, rtol=1e-12, atol=0)
    assert (out[:, 1:] < torch.minimum(gamma[:, 1:], gamma[:, :1])).all()


def test_parent_to_zero_drives_children_to_zero_and_inf_leaves_them():
    child = torch.tensor([0.3, 2.0, 50.0], dtype=torch.float64)
    for p in [1e-2, 1e-4, 1e-8]:
        out = hard_coupling(torch.cat([torch.tensor([p], dtype=torch.float64), child])[None])
        assert (out[0, 1:] <= p).all()  # child <= parent -> 0
    out = hard_coupling(torch.cat([torch.tensor([0.0], dtype=torch.float64), child])[None])
    assert (out[0, 1:] == 0).all()
    for p in [1e6, 1e12]:
        out = hard_coupling(torch.cat([torch.tensor([p], dtype=torch.float64), child])[None])
        assert_close(out[0, 1:], child, rtol=1e-4, atol=0)
    out = hard_coupling(torch.cat([torch.tensor([float("inf")], dtype=torch.float64), child])[None])
    assert_close(out[0, 1:], child, rtol=0, atol=0)


def test_hard_coupling_errors():
    with pytest.raises(
        ValueError, match=r"`gamma` must have shape \(E, 1 \+ K\) with K >= 1, got \(8,\)"
    ):
        hard_coupling(torch.ones(8))
    with pytest.raises(ValueError, match=r"`gamma` must be >= 0 and not NaN, got min -1.0"):
        hard_coupling(torch.tensor([[1.0, -1.0]]))
    with pytest.raises(ValueError, match=r"`gamma` must be >= 0 and not NaN"):
        hard_coupling(torch.tensor([[1.0, float("nan")]]))


# -- node rule ------------------------------------------------------------------------------------
def test_node_rule_bayesnas_examples():
    normal = get_cell_graph("bayesnas_normal")
    on = torch.ones(8, dtype=torch.bool)
    on[[0, 1]] = False  # both inputs of node 0 off
    assert dangling_nodes(normal, on) == (0,)
    ruled = apply_node_rule(normal, on)
    assert ruled.tolist() == [False, False, True, True, True, True, True, False]
    assert live_nodes(normal, ruled).tolist() == [False, True, True, True]
    reduction = get_cell_graph("bayesnas_reduction")
    ruled = apply_node_rule(reduction, on)  # node_0 feeds edges 3, 5, 7
    assert ruled.tolist() == [False, False, True, False, True, False, True, False]
    assert dangling_nodes(reduction, ruled) == ()


def test_node_rule_propagates_to_a_fixed_point():
    g = get_cell_graph("darts_normal")
    chain = [g.edge_index("node_0", 1), g.edge_index("node_1", 2), g.edge_index("node_2", 3)]
    on = torch.zeros(14, dtype=torch.bool)
    on[chain] = True  # node_0 has no input: the whole chain must go
    ruled = apply_node_rule(g, on)
    assert not ruled.any()
    on[g.edge_index("c_{k-2}", 0)] = True  # now the chain is fed
    assert apply_node_rule(g, on).tolist() == on.tolist()


def test_edge_alive_and_hard_rules():
    keep = torch.ones(8, 8, dtype=torch.bool)
    keep[0, 0] = False  # parent of edge 0 pruned
    keep[1, 1:] = False  # every op of edge 1 pruned
    assert edge_alive(keep).tolist() == [False, False] + [True] * 6
    out = apply_hard_rules(get_cell_graph("bayesnas_normal"), keep)
    assert not out[:2].any() and not out[7].any() and out[2:7].all()
    out = apply_hard_rules(get_cell_graph("bayesnas_normal"), keep, node_rule=False)
    assert not out[:2].any() and out[2:].all()


@pytest.mark.parametrize("name", GRAPHS)
def test_random_masks_node_rule_leaves_no_dangling_node(name):
    g = get_cell_graph(name)
    gen = torch.Generator().manual_seed(123)
    dangling_without_rule = 0
    for _ in range(200):
        p = float(torch.rand((), generator=gen)) * 0.8 + 0.1
        keep = torch.rand(g.num_edges, 1 + g.num_ops, generator=gen) < p  # (E, 1+K)
        ruled = apply_hard_rules(g, keep)
        on = ruled[:, 0]
        assert dangling_nodes(g, on) == ()
        assert not (ruled & ~keep).any()  # only removes
        assert torch.equal(apply_hard_rules(g, ruled), ruled)  # a fixed point
        for j in range(g.num_nodes):  # the definition, spelled out
            if on[list(g.edges_out_of(j))].any():
                assert on[list(g.edges_into(j))].any()
        raw = apply_hard_rules(g, keep, node_rule=False)[:, 0]
        dangling_without_rule += len(dangling_nodes(g, raw)) > 0
    assert dangling_without_rule > 0  # the rule is needed


def test_mask_errors():
    g = get_cell_graph("bayesnas_normal")
    with pytest.raises(
        ValueError, match=r"`edge_on` must be a bool tensor of shape \(8,\) for bayesnas_normal"
    ):
        apply_node_rule(g, torch.ones(8))
    with pytest.raises(ValueError, match=r"`edge_on` must be a bool tensor of shape \(8,\)"):
        live_nodes(g, torch.ones(7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"`keep` must be a bool tensor of shape \(8, 8\)"):
        apply_hard_rules(g, torch.ones(8, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"`keep` must be a bool tensor of shape \(E, 1 \+ K\)"):
        edge_alive(torch.ones(8, 8))
