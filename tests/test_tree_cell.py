"""Tree cells: the TreeCell-A tree, its graph for the Bayesian machinery, switches, pruning, checkpointing."""

from __future__ import annotations

import pytest
import torch

from bayesnas_book.bayes.pruning import prune
from bayesnas_book.curvature.api import switch_curvature
from bayesnas_book.models.pyramidnet import PyramidNetSpec
from bayesnas_book.space.tree_cell import (
    TreeCell,
    TreeNode,
    flatten_tree,
    get_tree,
    split_widths,
    treecell_a_graph,
)
from bayesnas_book.space.tree_ops import PROXYLESS_OPS, build_tree_op
from bayesnas_book.space.tree_supernet import TreeSupernet, build_tree_network


def test_treecell_a_has_7_nodes_15_edges_9_leaves() -> None:
    flat = flatten_tree(get_tree("treecell_a"))
    assert len(flat.nodes) == 7 and flat.num_edges == 15
    leaves = [e for _, _, branches in flat.nodes for e, child in branches if child < 0]
    assert len(leaves) == 9
    assert flat.ops[:2] == ("group_conv_3x3", "group_conv_3x3")


def test_tree_graph_puts_subtrees_under_their_edges() -> None:
    graph = treecell_a_graph()
    assert graph.num_edges == 15 and graph.num_ops == 7 and graph.inputs == ("x",)
    assert graph.edges_out_of("x") == (0, 1)
    assert graph.edges_out_of(0) == (2, 3) and graph.edges_out_of(2) == (6, 7)
    # pruning the root edge 0 (parent switch gamma tiny) prunes every edge of its subtree by the
    # node rule
    gamma = torch.ones(15, 8, dtype=torch.float64)
    gamma[0, 0] = 1e-6
    keep = prune(graph, gamma).keep
    assert not keep[[0, 2, 3, 6, 7, 8, 9]].any() and keep[[1, 4, 5]].all()


def test_split_widths_share_channels() -> None:
    assert split_widths(9, 2) == [5, 4] and sum(split_widths(18, 3)) == 18


def test_unknown_tree_shape_and_bad_nodes_are_refused() -> None:
    with pytest.raises(KeyError, match="unknown tree shape 'treecell_z'; valid shapes: treecell_a"):
        get_tree("treecell_z")
    with pytest.raises(ValueError, match="must merge by 'concat'"):
        TreeNode("split", "add", ())
    with pytest.raises(KeyError, match="unknown op 'conv_9x9'"):
        TreeCell(get_tree("treecell_a"), 8, edge_ops=[("conv_9x9",)] * 15)
    with pytest.raises(ValueError, match="list the ops of all 15 edges"):
        TreeCell(get_tree("treecell_a"), 8, edge_ops=[("identity",)])


def test_switched_cell_shapes_and_switch_layout() -> None:
    cell = TreeCell(
        get_tree("treecell_a"), 8, stride=2, edge_ops=[PROXYLESS_OPS] * 15, switched=True
    )
    assert cell(torch.randn(2, 8, 8, 8)).shape == (2, 8, 4, 4)
    assert cell.switch_values().shape == (15, 8)
    values = torch.rand(15, 8)
    cell.load_switch_values(values)
    assert torch.equal(cell.switch_values().detach(), values)


def test_identity_at_stride_two_keeps_every_other_pixel() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(build_tree_op("identity", 1, 2)(x), x[:, :, ::2, ::2])


def test_all_switches_one_equals_the_cell_with_every_op_kept() -> None:
    torch.manual_seed(0)
    tree = get_tree("treecell_a")
    switched = TreeCell(tree, 8, edge_ops=[PROXYLESS_OPS] * 15, switched=True).double()
    fixed = TreeCell(tree, 8, edge_ops=[PROXYLESS_OPS] * 15).double()
    state = {
        k.replace(".parent", "").replace(".switches", ""): v
        for k, v in switched.state_dict().items()
        if not k.endswith(".value")
    }
    fixed.load_state_dict(state)
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(switched(x), fixed(x))


def _tiny_supernet(checkpoint: bool) -> TreeSupernet:
    torch.manual_seed(0)
    spec = PyramidNetSpec(depth=11, alpha=4, start_channels=4, in_channels=1, num_classes=3)
    return TreeSupernet(spec, checkpoint=checkpoint).double()


def test_checkpointing_changes_no_gradient_and_no_curvature() -> None:
    plain, ckpt = _tiny_supernet(False), _tiny_supernet(True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    grads = []
    for net in (plain, ckpt):
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for a, b in zip(*grads, strict=False):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    estimates = []
    for net in (plain, ckpt):
        switches = [m for kind in net.cell_types for m in net.switch_modules(kind)]
        generator = torch.Generator().manual_seed(3)
        estimates.append(
            switch_curvature(
                net, [(x, y)], method="mc_ggn", switches=switches, generator=generator
            ).diagonal
        )
    torch.testing.assert_close(estimates[0], estimates[1], rtol=0, atol=1e-12)
    assert estimates[0].shape == (3 * 15 * 8,) and bool((estimates[0] >= 0).all())


def test_derived_network_drops_pruned_subtrees() -> None:
    net = _tiny_supernet(False)
    keep_all = [[["sep_conv_3x3"]] * 15 for _ in range(3)]
    from bayesnas_book.space.tree_supernet import TreeGenotype

    pruned = [
        [[] if e in (0, 2, 3, 6, 7, 8, 9) else ["sep_conv_3x3"] for e in range(15)]
        for _ in range(3)
    ]
    full = build_tree_network(TreeGenotype("treecell_a", net.spec, keep_all))
    small = build_tree_network(TreeGenotype("treecell_a", net.spec, pruned))
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in full.parameters())
    assert small(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="must list 3 cells of 15 edges"):
        build_tree_network(TreeGenotype("treecell_a", net.spec, keep_all[:2]))
