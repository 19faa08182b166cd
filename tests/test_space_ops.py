"""Candidate ops, switches and switched edges: shapes, structure, semantics and errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bayesnas_book.space.edge import SwitchedEdge
from bayesnas_book.space.ops import CANDIDATE_OPS, OPS, OpRegistry, build_op, register_op
from bayesnas_book.space.switch import Switch, switch

# --------------------------------------------------------------------------------------------
# ops: every registered op, both strides
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("size", [7, 8])
def test_op_forward_backward_shape_no_nan(name: str, stride: int, size: int) -> None:
    torch.manual_seed(0)
    op = build_op(name, 3, stride)
    x = torch.randn(2, 3, size, size, requires_grad=True)
    y = op(x)
    expected = math.ceil(size / stride)
    assert y.shape == (2, 3, expected, expected)
    assert torch.isfinite(y).all()
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for p in op.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_registry_holds_the_seven_bayesnas_ops_in_official_order() -> None:
    assert CANDIDATE_OPS == (
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
    )
    assert set(CANDIDATE_OPS) <= set(OPS)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", list(OPS))
def test_no_conv_bias_and_affine_batchnorm(name: str, stride: int) -> None:
    op = build_op(name, 4, stride)
    for m in op.modules():
        if isinstance(m, nn.Conv2d):
            assert m.bias is None
        if isinstance(m, nn.BatchNorm2d):
            assert m.affine


@pytest.mark.parametrize("kernel", [3, 5])
def test_sep_conv_structure(kernel: int) -> None:
    op = build_op(f"sep_conv_{kernel}x{kernel}", 4, 2)
    convs = [m for m in op.modules() if isinstance(m, nn.Conv2d)]
    # two blocks of depthwise kxk + pointwise 1x1; only the first depthwise strides
    assert [c.kernel_size for c in convs] == [(kernel, kernel), (1, 1)] * 2
    assert [c.groups for c in convs] == [4, 1, 4, 1]
    assert [c.stride for c in convs] == [(2, 2), (1, 1), (1, 1), (1, 1)]
    kinds = [type(m) for m in op[0]]
    assert kinds == [nn.BatchNorm2d, nn.ReLU, nn.ZeroPad2d, nn.Conv2d, nn.Conv2d]


@pytest.mark.parametrize("kernel", [3, 5])
def test_dil_conv_is_full_and_dilated(kernel: int) -> None:
    op = build_op(f"dil_conv_{kernel}x{kernel}", 4, 2)
    kinds = [type(m) for m in op]
    assert kinds == [nn.BatchNorm2d, nn.ReLU, nn.ZeroPad2d, nn.Conv2d, nn.Conv2d]
    assert op[3].groups == 1 and op[3].dilation == (2, 2) and op[3].stride == (2, 2)
    assert op[4].kernel_size == (1, 1)


def test_skip_connect_identity_and_stride_two_form() -> None:
    assert isinstance(build_op("skip_connect", 4, 1), nn.Identity)
    op = build_op("skip_connect", 4, 2)
    assert [type(m) for m in op] == [nn.BatchNorm2d, nn.Conv2d]  # no ReLU
    assert op[1].kernel_size == (1, 1) and op[1].stride == (2, 2)


def test_max_pool_pads_with_zeros_as_official() -> None:
    x = -torch.ones(1, 1, 4, 4)  # all negative: a border window sees a padded 0
    y = build_op("max_pool_3x3", 1, 1)(x)
    assert y[0, 0, 0, 0] == 0.0  # -inf padding would give -1
    assert y[0, 0, 1, 1] == -1.0  # interior windows see no padding


def test_avg_pool_counts_the_padded_zeros() -> None:
    y = build_op("avg_pool_3x3", 1, 1)(torch.ones(1, 1, 4, 4))
    torch.testing.assert_close(y[0, 0, 0, 0], torch.tensor(4.0 / 9.0))  # corner: 4 ones of 9
    torch.testing.assert_close(y[0, 0, 1, 1], torch.tensor(1.0))


def test_unknown_op_lists_the_valid_names() -> None:
    with pytest.raises(KeyError, match="unknown op 'conv_7x7'; valid ops: sep_conv_3x3"):
        build_op("conv_7x7", 4, 1)


def test_registry_refuses_duplicates_and_bad_entries() -> None:
    with pytest.raises(ValueError, match="op 'sep_conv_3x3' is already registered"):
        register_op("sep_conv_3x3")(lambda c, s: nn.Identity())
    registry = OpRegistry()
    with pytest.raises(ValueError, match="op `name` must be a non-empty string, got ''"):
        registry.register("", lambda c, s: nn.Identity())
    with pytest.raises(ValueError, match="`builder` for op 'x' must be callable, got 3"):
        registry.register("x", 3)  # type: ignore[arg-type]
    registry.register("x", lambda c, s: nn.Identity())
    assert list(registry) == ["x"] and len(registry) == 1 and "y" not in registry


@pytest.mark.parametrize(
    ("channels", "stride", "message"),
    [
        (0, 1, "`channels` must be a positive integer, got 0"),
        (2.0, 1, "`channels` must be a positive integer, got 2.0"),
        (4, 3, "`stride` must be 1 or 2, got 3"),
        (4, True, "`stride` must be 1 or 2, got True"),
    ],
)
@pytest.mark.parametrize("name", list(OPS))
def test_bad_channels_or_stride(name: str, channels, stride, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_op(name, channels, stride)


# --------------------------------------------------------------------------------------------
# switch
# --------------------------------------------------------------------------------------------


def test_switch_scales_and_has_the_right_gradient() -> None:
    torch.manual_seed(0)
    s = Switch().double()
    assert s.value.shape == () and s.value.item() == 1.0
    z = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        s.value.fill_(0.5)
    torch.testing.assert_close(s(z), 0.5 * z, rtol=0, atol=0)
    torch.testing.assert_close(switch(z, 2.0), 2.0 * z, rtol=0, atol=0)
    g = torch.randn_like(z)
    (s(z) * g).sum().backward()  # dL/ds = sum(z * g)
    torch.testing.assert_close(s.value.grad, (z * g).sum(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("init", [float("nan"), float("inf"), "1", True])
def test_switch_init_must_be_finite(init) -> None:
    with pytest.raises(ValueError, match="`init` must be a finite real number"):
        Switch(init)


# --------------------------------------------------------------------------------------------
# switched edge
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 2])
def test_edge_is_the_switched_sum_of_its_ops(stride: int) -> None:
    torch.manual_seed(0)
    edge = SwitchedEdge(3, stride).double().eval()
    values = torch.linspace(0.3, 1.7, 8, dtype=torch.float64)
    edge.load_switch_values(values)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    expected = sum(
        values[k + 1] * edge.ops[name](values[0] * x) for k, name in enumerate(edge.op_names)
    )
    torch.testing.assert_close(edge(x), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(edge.switch_values().detach(), values, rtol=0, atol=0)


def test_switch_layout_matches_named_modules_order() -> None:
    edge = SwitchedEdge(2, 1, op_names=("avg_pool_3x3", "skip_connect", "sep_conv_3x3"))
    names = [n for n, m in edge.named_modules() if isinstance(m, Switch)]
    assert names == [
        "parent",
        "switches.avg_pool_3x3",
        "switches.skip_connect",
        "switches.sep_conv_3x3",
    ]
    assert edge.switch_names == ("parent", "avg_pool_3x3", "skip_connect", "sep_conv_3x3")
    values = edge.switch_values()
    assert values.shape == (4,) and values.requires_grad  # differentiable for the penalty


@pytest.mark.parametrize("train", [True, False])
def test_parent_switch_zero_is_the_zero_op(train: bool) -> None:
    torch.manual_seed(0)
    edge = SwitchedEdge(3, 2).train(train)
    edge.load_switch_values(torch.tensor([0.0] + [1.0] * 7))
    y = edge(torch.randn(2, 3, 8, 8))
    assert torch.count_nonzero(y) == 0


@pytest.mark.parametrize(
    ("op_names", "error", "message"),
    [
        ((), ValueError, "`op_names` must be a non-empty sequence of op names, got \\(\\)"),
        ("skip_connect", ValueError, "`op_names` must be a non-empty sequence"),
        (("skip_connect", "skip_connect"), ValueError, "duplicates \\['skip_connect'\\]"),
        (("none",), KeyError, "unknown op 'none'; valid ops"),
    ],
)
def test_edge_op_names_are_checked(op_names, error, message: str) -> None:
    with pytest.raises(error, match=message):
        SwitchedEdge(2, 1, op_names=op_names)


def test_load_switch_values_checks_shape_and_finiteness() -> None:
    edge = SwitchedEdge(2, 1)
    with pytest.raises(ValueError, match=r"`values` must have shape \(8,\), got \(7,\)"):
        edge.load_switch_values(torch.ones(7))
    with pytest.raises(ValueError, match="`values` must be finite"):
        edge.load_switch_values(torch.tensor([float("nan")] + [1.0] * 7))
