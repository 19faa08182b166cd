"""The fast curvature recursion on the tree (proxyless) space, against the exact GGN (float64).

The recursion (:mod:`bayesnas_book.curvature.recursion`) keeps the diagonal of the curvature at
every activation: it is exact where each input reaches each output along one path through
element-wise layers, and drops the cross terms where paths meet (branches that add, several ops
on one edge, convolutions and pools that mix positions, the global pool, the classes). Checked
here: the tree space's own rule (the border-aware average pool), every tree op, networks of tree
cells on which the recursion must equal the exact GGN switch by switch, the residual unit's
shortcut, the whole supernet against measured bounds, checkpointing, and a search step.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import jacrev

from bayesnas_book.curvature.api import switch_curvature
from bayesnas_book.curvature.recursion import capture, softmax_cross_entropy_gn
from bayesnas_book.models.pyramidnet import PyramidNetSpec, PyramidUnit
from bayesnas_book.space.switch import Switch
from bayesnas_book.space.tree_cell import TreeBranch, TreeCell, TreeNode, _FixedEdge
from bayesnas_book.space.tree_curvature import inside_avg_pool_gn_backward
from bayesnas_book.space.tree_ops import TREE_OPS
from bayesnas_book.space.tree_supernet import TreeSupernet

F64 = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-14}


def sweep(module: nn.Module, x: torch.Tensor, H_out: torch.Tensor) -> torch.Tensor:
    """The captured forward and the sweep: ``H`` at ``module``'s input."""
    with torch.no_grad(), capture(module) as tape:
        module(x)
    return tape.backward(H_out)


def definition(f, x: torch.Tensor, H_out: torch.Tensor) -> torch.Tensor:
    """``H_in[b, i] = sum_{b', j} J[b', j, b, i]^2 H_out[b', j]`` (autograd), shaped like ``x``."""
    J = jacrev(f)(x).reshape(H_out.numel(), x.numel())
    return (J.square().T @ H_out.reshape(-1)).reshape(x.shape)


def positive_like(y: torch.Tensor, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(y.shape, generator=g, dtype=y.dtype) + 0.1


def randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and affine maps, switches in [0.5, 1.5]: nothing at its init value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 1.5 + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 2 - 1)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
            elif isinstance(m, Switch):
                m.value.copy_(torch.rand(m.value.shape, generator=g) + 0.5)
    return net


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# --------------------------------------------------------------------------------------------
# leaves: the border-aware average pool and every tree op
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stride", "size"), [(1, 5), (1, 6), (2, 7), (2, 8)])
def test_border_aware_avg_pool_rule_equals_its_definition(stride: int, size: int) -> None:
    """The tree's avg_pool_3x3 divides a border window by the pixels inside (not by 9)."""
    edge = _FixedEdge(3, stride, ("avg_pool_3x3",))  # the op on its own, as a derived edge
    pool = edge.ops["avg_pool_3x3"]
    x = torch.randn(2, 3, size, size, dtype=F64)
    H_out = positive_like(pool(x))
    expected = definition(pool, x, H_out)
    torch.testing.assert_close(sweep(edge, x, H_out), expected, **TOL)
    torch.testing.assert_close(inside_avg_pool_gn_backward(pool, H_out, x.shape), expected, **TOL)
    # the generic AvgPool2d rule (every window divided by k^2) would be wrong at the border
    generic = nn.Sequential(nn.ZeroPad2d(1), nn.AvgPool2d(3, stride))
    assert not torch.allclose(sweep(generic, x, H_out), expected)
    with pytest.raises(RuntimeError, match="ceil_mode"):
        inside_avg_pool_gn_backward(nn.AvgPool2d(3, 1, 1, True, False), H_out, x.shape)


@pytest.mark.parametrize("name", list(TREE_OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_every_tree_op_sweeps_to_its_composed_layer_definitions(name: str, stride: int) -> None:
    torch.manual_seed(0)
    edge = randomise(_FixedEdge(4, stride, (name,)).double().eval())
    layers = [m for m in edge.ops[name].modules() if not isinstance(m, nn.Sequential)]
    x = torch.randn(2, 4, 7, 7, dtype=F64)
    acts = [x]
    with torch.no_grad():
        for m in layers:
            acts.append(m(acts[-1]))
    H = positive_like(acts[-1])
    H_in = sweep(edge, x, H)
    for m, a in zip(reversed(layers), reversed(acts[:-1]), strict=True):
        H = definition(m, a, H)
    torch.testing.assert_close(H_in, H, **TOL)


# --------------------------------------------------------------------------------------------
# tree cells on which the recursion is exact, switch by switch
# --------------------------------------------------------------------------------------------

# On a 1x1 image with one channel per path every op is a scalar map (the kxk convolutions see
# their centre tap, the pools their one pixel), so the recursion's only approximations are
# where paths meet: a copy node's branches, a root branch's BN and skip, several ops on an edge.
# Each chain starts with a parameter-free op, so the next op's ReLU sees inputs of both signs.
CHAINS = (
    ("avg_pool_3x3", "sep_conv_5x5", "identity"),
    ("max_pool_3x3", "dil_sep_conv_3x3", "avg_pool_3x3"),
    ("identity", "conv_1x1"),
)


def _chain(ops: tuple[str, ...]) -> TreeBranch:
    """Edges in a row: each edge's child is a one-branch node (an add of one: no meeting)."""
    branch = TreeBranch(ops[-1])
    for op in reversed(ops[:-1]):
        branch = TreeBranch(op, TreeNode("copy", "add", (branch,)))
    return branch


def _chains(split: str) -> TreeNode:
    return TreeNode(
        split,
        "add" if split == "copy" else "concat",
        tuple(_chain(ops) for ops in CHAINS),
    )


def _edge_of_each_switch(cell: TreeCell) -> list[int]:
    return [e for e, edge in enumerate(cell.edges) for _ in range(1 + len(edge.op_names))]


def chain_cell_net(split: str, root_bn: bool) -> tuple[nn.Module, TreeCell]:
    """A switched cell of three chains of edges (one op each) on 1x1 images, then the logits.

    ``split``: the split root hands each chain one channel and concatenates them into the three
    logits; the copy root averages the chains into one unit, whose logit is class 0 of two (the
    Linear's class 1 row is zero: no class couples to it).
    """
    torch.manual_seed(0)
    tree = _chains(split)
    cell = TreeCell(tree, 3 if split == "split" else 1, 1, None, True, root_bn)
    layers: list[nn.Module] = [cell, nn.Flatten()]
    if split == "copy":
        head = nn.Linear(1, 2)
        with torch.no_grad():
            head.weight[1] = 0.0
        layers.append(head)
    return randomise(nn.Sequential(*layers).double().eval()), cell


def _curvatures(net: nn.Module, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn(16, net[0].channels, 1, 1, dtype=F64, generator=g)  # both ReLU signs
    y = torch.zeros(16, dtype=torch.long)
    rec = switch_curvature(net, [(x, y)], "recursion").diagonal
    exact = switch_curvature(net, [(x, y)], "exact_ggn").diagonal
    return rec, exact


def test_recursion_equals_exact_ggn_on_a_tree_of_single_paths() -> None:
    """Split root, no root BN: every switch reaches one logit along one path of scalar maps."""
    net, cell = chain_cell_net("split", root_bn=False)
    rec, exact = _curvatures(net)
    assert rec.shape == (2 * len(cell.edges),) and (exact > 1e-6).sum() >= len(cell.edges)
    torch.testing.assert_close(rec, exact, **TOL)


def test_recursion_drops_exactly_where_branches_meet() -> None:
    """Copy root with root BNs: the chains' own switches stay exact; the root edges' switches
    (their output reaches the root twice, by the BN and by the skip) and the cell input do not."""
    net, cell = chain_cell_net("copy", root_bn=True)
    rec, exact = _curvatures(net)
    root_edges = {e for e, _ in cell.flat.nodes[0][2]}
    at_root = torch.tensor([e in root_edges for e in _edge_of_each_switch(cell)])
    torch.testing.assert_close(rec[~at_root], exact[~at_root], **TOL)
    gap = (rec[at_root] - exact[at_root]).abs() / exact[at_root]
    assert gap.min() > 1e-3, gap  # the BN-and-skip cross term is not negligible
    # the same cell with the root BN's scale at zero: one path again, exact everywhere
    with torch.no_grad():
        for bn in cell.root_bns:
            bn.weight.zero_()
    rec, exact = _curvatures(net)
    torch.testing.assert_close(rec, exact, **TOL)


def test_pruned_edges_and_subtrees_are_skipped() -> None:
    """A derived cell (no switches) with pruned edges: the sweep matches the definition."""
    torch.manual_seed(0)
    tree = _chains("split")
    ops = [(op,) for op in ("avg_pool_3x3", "max_pool_3x3", "identity")] + [
        (),  # a pruned edge under the first chain: its whole subtree drops out
        ("dil_sep_conv_3x3",),
        ("conv_1x1",),
        ("identity",),
        ("avg_pool_3x3",),
    ]
    cell = randomise(TreeCell(tree, 3, 1, ops, False, False).double().eval())
    x = 3 * torch.randn(4, 3, 1, 1, dtype=F64)
    H_out = positive_like(cell(x))
    H_in = sweep(cell, x, H_out)
    torch.testing.assert_close(H_in, definition(cell, x, H_out), **TOL)
    assert (H_in[:, 0] == 0).all() and (H_in[:, 1:].sum(dim=(0, 2, 3)) > 0).all()
    every_root_edge_pruned = TreeCell(tree, 3, 1, [()] * 3 + ops[3:], False, False).double()
    assert (sweep(every_root_edge_pruned, x, H_out) == 0).all()


# --------------------------------------------------------------------------------------------
# the residual unit
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stride", "size"), [(1, 5), (2, 6)])
def test_unit_shortcut_crops_the_zero_channels_and_pools(stride: int, size: int) -> None:
    """With the residual branch's last BN scale at zero the unit is its shortcut (a 2x2 pool, or
    the identity, each input reaching one output), padded with zero channels: the sweep is exact.
    """
    torch.manual_seed(0)
    cell = TREE_OPS["group_conv_3x3"](4, stride)
    unit = randomise(PyramidUnit(6, 4, stride, cell).double().eval())
    x = torch.randn(2, 6, size, size, dtype=F64)
    H_out = positive_like(unit(x))
    with torch.no_grad():
        unit.out_bottle[-1].weight.zero_()
    torch.testing.assert_close(sweep(unit, x, H_out), definition(unit, x, H_out), **TOL)
    with torch.no_grad():
        unit.out_bottle[-1].weight.fill_(1.0)
        u = unit.in_bottle(x)
        h = unit.cell(u)
    # with the branch on, its curvature and the shortcut's add at the unit input
    H_branch = sweep(unit.in_bottle, x, sweep(unit.cell, u, sweep(unit.out_bottle, h, H_out)))
    H_short = sweep(unit.shortcut, x, H_out[:, :6])
    torch.testing.assert_close(sweep(unit, x, H_out), H_branch + H_short, **TOL)


# --------------------------------------------------------------------------------------------
# the whole tree supernet
# --------------------------------------------------------------------------------------------

TOY = PyramidNetSpec(depth=11, alpha=4, start_channels=4, in_channels=1, num_classes=4)


def toy_supernet(seed: int = 0, checkpoint: bool = False) -> TreeSupernet:
    torch.manual_seed(seed)
    return TreeSupernet(TOY, checkpoint=checkpoint).double()


def toy_batch(seed: int = 100, n: int = 4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, dtype=F64, generator=g)  # digits-shaped
    return x, torch.randint(0, TOY.num_classes, (n,), generator=g)


def test_recursion_reaches_every_switch_of_the_supernet() -> None:
    net = toy_supernet().train()
    x, _ = toy_batch()
    with torch.no_grad(), capture(net) as tape:
        logits = net(x)
    H_image = tape.backward(softmax_cross_entropy_gn(logits))
    switches = [m for m in net.modules() if isinstance(m, Switch)]
    assert set(tape.switch_curvature) == set(switches) and len(switches) == 3 * 15 * 8
    values = torch.stack(list(tape.switch_curvature.values()))
    assert torch.isfinite(values).all() and (values > 0).all()
    assert H_image.shape == x.shape and (H_image >= 0).all()


@pytest.mark.parametrize(
    ("train", "max_rel_err", "min_spearman", "min_cell_spearman"),
    [
        # measured (seeds 0-3 of this net and batch): rel err 0.97-1.36, Spearman 0.55-0.67
        # over the 360 switches, 0.63-0.75 within a cell; the median ratio to the exact value
        # is 1.1-2.5: the affine BN view misses the batch-statistics coupling (overestimates),
        # the global pool's and the branches' cross terms are dropped (underestimates)
        (True, 1.5, 0.45, 0.55),
        # measured: rel err 0.97-1.00 (the recursion is 40-500x smaller: median ratio
        # 0.002-0.025), Spearman over all switches 0.02-0.57 but 0.46-0.86 within a cell:
        # without batch statistics the dropped cross terms (seven parallel ops on every edge,
        # summed in each copy node and over the 8x8 positions by the global pool) compound
        # from cell to cell
        (False, 1.01, None, 0.4),
    ],
    ids=["train", "eval"],
)
def test_recursion_vs_exact_ggn_on_the_tree_supernet(
    train: bool, max_rel_err: float, min_spearman: float | None, min_cell_spearman: float
) -> None:
    net = toy_supernet().train(train)
    data = [toy_batch()]
    rec = switch_curvature(net, data, "recursion").diagonal
    exact = switch_curvature(net, data, "exact_ggn").diagonal
    assert rec.shape == exact.shape == (360,)
    assert rel_err(rec, exact) < max_rel_err
    if min_spearman is not None:
        assert spearman(rec, exact) > min_spearman
        assert pearson(rec, exact) > 0.1
    per_cell = [spearman(r, e) for r, e in zip(rec.split(120), exact.split(120), strict=True)]
    assert min(per_cell) > min_cell_spearman, per_cell


def test_checkpointing_gives_the_same_recursion() -> None:
    plain, ckpt = toy_supernet(), toy_supernet(checkpoint=True)
    data = [toy_batch()]
    a = switch_curvature(plain, data, "recursion").diagonal
    b = switch_curvature(ckpt, data, "recursion").diagonal
    assert torch.equal(a, b)
    # a capture with gradients on: the checkpointed forward runs each unit once, and the
    # backward's recomputation after the capture records nothing
    x, y = data[0]
    with capture(ckpt) as tape:
        logits = ckpt(x)
    nn.functional.cross_entropy(logits, y).backward()
    tape.backward(softmax_cross_entropy_gn(logits))
    c = torch.stack([tape.switch_curvature[m] for m in ckpt.modules() if isinstance(m, Switch)])
    torch.testing.assert_close(c, a, rtol=1e-12, atol=0)


def test_tree_search_runs_with_the_recursion() -> None:
    from bayesnas_book.search import run_search
    from tests.test_tree_search import tiny_tree

    config = tiny_tree(
        'search.curvature_method="recursion"',
        "search.rounds=1",
        "search.max_batches_per_epoch=1",
        "data.batch_size=16",
        "search.reference_batch_size=16",
    )
    result = run_search(config)
    assert config.search.curvature_method == "recursion"
    assert set(result.pruning) == {"cell_00", "cell_01", "cell_02"}
    H = torch.tensor(result.history[-1]["cell_00"]["curvature"])
    assert H.shape == (1, 15, 8) and torch.isfinite(H).all() and (H > 0).all()


def test_a_fresh_process_building_a_tree_supernet_has_the_rules() -> None:
    # what the CLI does: nothing imports tree_curvature by name, the tree supernet's module does
    import subprocess
    import sys

    code = (
        "from bayesnas_book.curvature.recursion import supported_module_types\n"
        "import bayesnas_book.space.tree_supernet\n"
        "assert 'TreeSupernet' in supported_module_types(), supported_module_types()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
