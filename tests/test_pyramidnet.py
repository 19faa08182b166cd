"""The PyramidNet bottleneck backbone and TreeCell-A on it: widths, parameter counts, bad input."""

from __future__ import annotations

import pytest
import torch

from bayesnas_book.models.counting import count_parameters
from bayesnas_book.models.pyramidnet import PyramidNet, PyramidNetSpec, unit_widths
from bayesnas_book.space.tree_cell import TreeCell, get_tree
from bayesnas_book.space.tree_ops import PROXYLESS_OPS


def _treecell_a_net(alpha: float) -> PyramidNet:
    tree = get_tree("treecell_a")
    return PyramidNet(PyramidNetSpec(alpha=alpha), lambda k, c, s: TreeCell(tree, c, s))


def test_pyramidnet_164_widths_grow_linearly_to_400_output_channels() -> None:
    widths = unit_widths(PyramidNetSpec())
    # 3 stages x 18 units; c_k = round(16 + 84 k / 54) floored to even: 18, 18, 20, ..., 100
    assert len(widths) == 54 and widths[:3] == [18, 18, 20] and widths[-1] == 100
    assert all(w % 2 == 0 for w in widths) and widths == sorted(widths)
    assert 4 * widths[-1] == 400


def test_parameter_counts_at_alpha_84() -> None:
    # Plain PyramidNet-164 (alpha 84, bottleneck, BN-ReLU-3x3 group conv in 2 groups as each unit's
    # cell): stem 3x3 conv + BN, 54 units of BN-1x1 / cell / BN-ReLU-1x1 (c -> 4c) / BN, head BN +
    # linear.
    # The path-level paper's Table 2 lists this backbone at 2.7M parameters.
    assert count_parameters(PyramidNet(PyramidNetSpec())) == 2_740_368
    # TreeCell-A in every unit (15 edges; root: two 3x3 group convs each followed by a BN before the
    # add;
    # separable convs single BN-ReLU-depthwise-pointwise; pools parameter-free): 5.7M at alpha 84
    # and
    # 14.3M at alpha 150, the sizes the path-level paper reports for its TreeCell-A nets.
    assert count_parameters(_treecell_a_net(84)) == 5_736_930
    assert count_parameters(_treecell_a_net(150)) == 14_293_302


def test_all_op_supernet_size_at_alpha_84() -> None:
    # every one of the 15 edges of every one of the 54 cells carries the 7 ProxylessNAS CIFAR ops
    # (4 separable convs with parameters; identity and the two pools without): about 18M parameters
    tree = get_tree("treecell_a")
    net = PyramidNet(
        PyramidNetSpec(), lambda k, c, s: TreeCell(tree, c, s, [PROXYLESS_OPS] * 15, switched=True)
    )
    switches = sum(p.numel() for n, p in net.named_parameters() if n.endswith(".value"))
    assert switches == 54 * 15 * (1 + 7)
    assert count_parameters(net) - switches == 17_823_126  # weights; 17.8M, ~3.1x TreeCell-A's 5.7M


def test_forward_shapes_and_resolution() -> None:
    net = PyramidNet(
        PyramidNetSpec(depth=11, alpha=12, start_channels=8, in_channels=1, num_classes=10)
    )
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert [u.stride for u in net.units] == [1, 2, 2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": 100}, "must be 9U \\+ 2"),
        ({"alpha": -4.0}, "`alpha` must be a number >= 0"),
        ({"alpha": "84"}, "`alpha` must be a number >= 0"),
        ({"bottleneck": False}, "only the bottleneck PyramidNet"),
        ({"start_channels": 1, "alpha": 0.0}, "gives a unit width 0 < groups = 2"),
    ],
)
def test_bad_backbone_input_is_refused_clearly(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        PyramidNetSpec(**kwargs)


def test_odd_widths_are_refused_by_the_group_conv() -> None:
    tree = get_tree("treecell_a")
    with pytest.raises(ValueError, match="17 channels do not split into 2 groups"):
        TreeCell(tree, 17)
