"""The diagonal Gauss-Newton rules, one layer at a time, against autograd (float64).

For a layer ``y = f(x)`` with per-sample Jacobian ``J`` (``dy_j / dx_i``):

* every rule must equal its definition ``H_in[i] = sum_j J_ji^2 H_out[j]`` (``torch.func.jacrev``);
* for a full curvature ``A`` at the output, the exact ``diag(J^T A J)`` equals the rule applied to
  ``diag(A)`` for element-wise layers, and differs by exactly the cross terms
  ``sum_{j != k} J_ji J_ki A_jk`` for layers that mix positions, channels or units.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian, jacrev

from bayesnas_book.curvature.exact import batchnorm_stats_frozen, exact_ggn
from bayesnas_book.curvature.recursion import (
    active_tape,
    capture,
    curvature_dtype,
    gn_backward,
    register_gn_rule,
    softmax_cross_entropy_gn,
    supported_module_types,
)
from bayesnas_book.space.edge import SwitchedEdge
from bayesnas_book.space.ops import OPS
from bayesnas_book.space.switch import Switch

TOL = {"rtol": 1e-10, "atol": 1e-12}


def sweep(module: nn.Module, x: torch.Tensor, H_out: torch.Tensor, **kwargs):
    """Run the captured forward and the sweep; return ``(H_in, tape)``."""
    with capture(module, **kwargs) as tape:
        module(x)
    return tape.backward(H_out), tape


def jacobian(f: Callable, x: torch.Tensor) -> torch.Tensor:
    """``(B, D_out, B, D_in)``: the whole batch's Jacobian, flattened per sample."""
    y = f(x)
    J = jacrev(f)(x)
    return J.reshape(y.shape[0], -1, x.shape[0], x[0].numel())


def definition(f: Callable, x: torch.Tensor, H_out: torch.Tensor) -> torch.Tensor:
    """``H_in[b, i] = sum_{b', j} J[b', j, b, i]^2 H_out[b', j]``, shaped like ``x``."""
    J = jacobian(f, x)
    return torch.einsum("cjbi,cj->bi", J.square(), H_out.reshape(J.shape[0], -1)).reshape(x.shape)


def positive_like(y: torch.Tensor, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(y.shape, generator=g, dtype=y.dtype) + 0.1


def random_bn(bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(0.5, 2.0)
    return bn


# (id, factory, input shape, has cross terms: some input reaches several outputs)
LAYERS = [
    ("linear", lambda: nn.Linear(5, 4), (3, 5), True),
    ("linear_3d", lambda: nn.Linear(5, 4, bias=False), (3, 2, 5), True),
    ("conv_s1", lambda: nn.Conv2d(2, 3, 3, padding=1, bias=False), (2, 2, 6, 6), True),
    ("conv_s2_odd", lambda: nn.Conv2d(2, 3, 3, 2, 1), (2, 2, 7, 7), True),
    ("conv_s2_even", lambda: nn.Conv2d(2, 3, 3, 2, 1), (2, 2, 8, 8), True),
    ("conv_depthwise_s2", lambda: nn.Conv2d(4, 4, 3, 2, 0, groups=4), (2, 4, 8, 8), True),
    ("conv_grouped_5x5", lambda: nn.Conv2d(2, 4, 5, 2, 2, groups=2), (2, 2, 7, 7), True),
    ("conv_dilated", lambda: nn.Conv2d(2, 3, 3, 1, 2, dilation=2), (2, 2, 7, 7), True),
    ("conv_dilated_s2", lambda: nn.Conv2d(2, 3, 3, 2, 2, dilation=2), (2, 2, 8, 8), True),
    ("conv_dil5_s2", lambda: nn.Conv2d(2, 2, 5, 2, 4, dilation=2), (2, 2, 9, 9), True),
    ("conv_1x1_s2", lambda: nn.Conv2d(2, 3, 1, 2), (2, 2, 7, 7), True),
    ("conv_rect", lambda: nn.Conv2d(2, 3, (3, 2), (2, 1), (1, 0)), (2, 2, 7, 6), True),
    ("bn2d_eval", lambda: random_bn(nn.BatchNorm2d(3)).eval(), (2, 3, 4, 4), False),
    ("bn1d_eval", lambda: random_bn(nn.BatchNorm1d(5)).eval(), (3, 5), False),
    ("relu", lambda: nn.ReLU(), (2, 3, 4, 4), False),
    ("zeropad", lambda: nn.ZeroPad2d((1, 2, 0, 1)), (2, 2, 4, 5), False),
    ("maxpool_3_s1", lambda: nn.MaxPool2d(3, 1), (2, 2, 6, 6), True),
    ("maxpool_3_s2", lambda: nn.MaxPool2d(3, 2), (2, 2, 7, 7), True),
    ("maxpool_3_s2_pad", lambda: nn.MaxPool2d(3, 2, padding=1), (2, 2, 8, 8), True),
    # non-overlapping max pool: each input reaches at most one output, so no cross terms
    ("maxpool_2_s2", lambda: nn.MaxPool2d(2, 2), (2, 2, 6, 6), False),
    ("avgpool_3_s1", lambda: nn.AvgPool2d(3, 1), (2, 2, 6, 6), True),
    ("avgpool_3_s2", lambda: nn.AvgPool2d(3, 2), (2, 2, 7, 7), True),
    ("avgpool_3_s2_pad", lambda: nn.AvgPool2d(3, 2, padding=1), (2, 2, 8, 8), True),
    ("avgpool_2_s2", lambda: nn.AvgPool2d(2), (2, 2, 6, 6), False),  # non-overlapping too
    # each input reaches one output (its channel's mean): exact here; the positions' coupling
    # it creates shows up one layer later, in the non-diagonal curvature at the pool's input
    ("global_avgpool", lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 4, 5), False),
    ("flatten", lambda: nn.Flatten(), (2, 3, 2, 2), False),
    ("identity", lambda: nn.Identity(), (2, 3, 2, 2), False),
    ("dropout_eval", lambda: nn.Dropout(0.5).eval(), (2, 3), False),
    ("switch", lambda: Switch(0.7), (2, 3, 2, 2), False),
]


def _build(factory: Callable, shape: tuple[int, ...]) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    module = factory().double()
    x = torch.randn(shape, dtype=torch.float64)
    return module, x


@pytest.mark.parametrize(
    ("factory", "shape"), [(f, s) for _, f, s, _ in LAYERS], ids=[i for i, *_ in LAYERS]
)
def test_rule_equals_its_definition(factory: Callable, shape: tuple[int, ...]) -> None:
    module, x = _build(factory, shape)
    with torch.no_grad():
        y = module(x)
    H_out = positive_like(y)
    H_in, _ = sweep(module, x, H_out)
    assert H_in.shape == x.shape and H_in.dtype == torch.float64
    torch.testing.assert_close(H_in, definition(module, x, H_out), **TOL)


@pytest.mark.parametrize(
    ("factory", "shape", "mixes"), [(f, s, m) for _, f, s, m in LAYERS], ids=[i for i, *_ in LAYERS]
)
def test_exact_diagonal_and_dropped_cross_terms(factory, shape, mixes: bool) -> None:
    """diag(J^T A J) = rule(diag A) + cross terms; the cross terms vanish iff element-wise."""
    module, x = _build(factory, shape)
    J = jacobian(module, x)  # (B, D_out, B, D_in)
    B, D = J.shape[0], J.shape[1]
    g = torch.Generator().manual_seed(2)
    R = torch.randn(B, D, D, generator=g, dtype=torch.float64)
    A = R @ R.transpose(1, 2) / D + 0.1 * torch.eye(D, dtype=torch.float64)  # SPD per sample
    Jb = J[torch.arange(B), :, torch.arange(B), :]  # per-sample blocks (B, D_out, D_in)
    exact = torch.einsum("bji,bjk,bki->bi", Jb, A, Jb)  # diag(J_b^T A_b J_b)
    A_off = A - torch.diag_embed(torch.diagonal(A, dim1=1, dim2=2))
    cross = torch.einsum("bji,bjk,bki->bi", Jb, A_off, Jb)  # sum_{j != k} J_ji A_jk J_ki
    with torch.no_grad():
        y = module(x)
    H_out = torch.diagonal(A, dim1=1, dim2=2).reshape(y.shape)
    H_in, _ = sweep(module, x, H_out)
    torch.testing.assert_close(H_in.reshape(B, -1), exact - cross, **TOL)
    if mixes:  # the recursion is an approximation here: the cross terms are not negligible
        assert cross.abs().max() > 1e-3 * exact.abs().max()
    else:  # exact for element-wise layers
        torch.testing.assert_close(cross, torch.zeros_like(cross), rtol=0, atol=1e-14)
        torch.testing.assert_close(H_in.reshape(B, -1), exact, **TOL)


def test_batchnorm_train_mode_is_the_affine_view() -> None:
    """Train-mode BN: batch variance, statistics held fixed (the samples' coupling dropped)."""
    bn, x = _build(lambda: random_bn(nn.BatchNorm2d(3)).train(), (4, 3, 3, 3))
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)

    def affine_view(inp: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            inp, mean, var, bn.weight.detach(), bn.bias.detach(), False, 0.0, bn.eps
        )

    H_out = positive_like(x)
    running = bn.running_mean.clone()
    with batchnorm_stats_frozen(bn):
        torch.testing.assert_close(bn(x), affine_view(x), **TOL)  # same forward
        H_in, _ = sweep(bn, x, H_out)
        full = definition(bn, x, H_out)  # with the statistics' dependence on x
    torch.testing.assert_close(bn.running_mean, running, rtol=0, atol=0)
    torch.testing.assert_close(H_in, definition(affine_view, x, H_out), **TOL)
    assert (H_in - full).abs().max() > 1e-3 * H_in.abs().max()  # the dropped coupling is real


def test_switch_collects_sum_z2_H() -> None:
    """d2L/ds2 of the GN: sum_j (dy_j/ds)^2 H_j with dy/ds = z, by jacrev in s."""
    s, z = _build(lambda: Switch(0.6), (2, 3, 4, 4))
    H_out = positive_like(z)
    _, tape = sweep(s, z, H_out)
    dy_ds = jacrev(lambda v: functional_call(s, {"value": v}, (z,)))(s.value.detach())
    torch.testing.assert_close(tape.switch_curvature[s], (dy_ds.square() * H_out).sum(), **TOL)
    assert tape.switch_curvature[s].dtype == torch.float64


def test_softmax_cross_entropy_gn_is_the_hessian_diagonal_in_the_logits() -> None:
    torch.manual_seed(0)
    z = torch.randn(4, 5, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 1])
    Hz = hessian(lambda t: F.cross_entropy(t, y))(z)  # (4, 5, 4, 5)
    diag = torch.diagonal(Hz.reshape(20, 20)).reshape(4, 5)
    torch.testing.assert_close(softmax_cross_entropy_gn(z), diag, **TOL)
    torch.testing.assert_close(softmax_cross_entropy_gn(z, "sum"), 4 * diag, **TOL)


def test_linear_softmax_weight_curvature_equals_exact_ggn() -> None:
    """A linear softmax model: the recursion's weight and bias curvature IS the GGN diagonal."""
    torch.manual_seed(0)
    model = nn.Linear(6, 4).double()
    x = torch.randn(10, 6, dtype=torch.float64)
    with capture(model, parameter_curvature=True) as tape:
        logits = model(x)
    tape.backward(softmax_cross_entropy_gn(logits))
    got = tape.parameter_curvature[model]
    exact = exact_ggn(model, x, ["weight", "bias"])  # (24 + 4,)
    torch.testing.assert_close(got["weight"].reshape(-1), exact[:24], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got["bias"], exact[24:], rtol=1e-10, atol=1e-10)


def two_layer() -> nn.Sequential:
    """Linear -> Switch -> Linear, no biases."""
    return nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(5, 4, bias=False), switch=Switch(0.8), fc2=nn.Linear(4, 3, bias=False)
        )
    )


def test_two_layer_recursion_is_exact_ggn_minus_the_cross_terms() -> None:
    torch.manual_seed(0)
    net = two_layer().double()
    x = torch.randn(6, 5, dtype=torch.float64)
    B = x.shape[0]
    W1, W2, s = net.fc1.weight.detach(), net.fc2.weight.detach(), net.switch.value.detach()
    with capture(net) as tape:
        logits = net(x)
    H_logits = softmax_cross_entropy_gn(logits)
    H_h = tape.backward(H_logits, module=net.fc2)  # at the input of fc2 (after the switch)
    H_x = tape.backward(H_logits)  # the whole net, to its input
    p = torch.softmax(logits, 1)
    Lam = (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]) / B  # (B, c, c') mean loss
    off_class = Lam - torch.diag_embed(torch.diagonal(Lam, dim1=1, dim2=2))

    # at the hidden activation: exact = sum_{c,c'} W2_cj W2_c'j Lam_cc'; only classes cross
    exact_h = torch.einsum("cj,bcd,dj->bj", W2, Lam, W2)
    cross_h = torch.einsum("cj,bcd,dj->bj", W2, off_class, W2)
    torch.testing.assert_close(H_h, exact_h - cross_h, **TOL)
    assert cross_h.abs().max() > 1e-3 * exact_h.abs().max()

    # at the first-layer input: M = W2 s W1; classes (c != c') and hidden units (j != j') cross
    T = torch.einsum("cj,ji,bcd,dk,ki->bicjdk", s * W2, W1, Lam, s * W2, W1)  # all terms
    exact_x = T.sum(dim=(2, 3, 4, 5))
    same = torch.eye(3, dtype=torch.float64)[:, None, :, None] * torch.eye(4)[None, :, None, :]
    kept = (T * same.to(T.dtype)).sum(dim=(2, 3, 4, 5))  # c == c' and j == j'
    torch.testing.assert_close(H_x, kept, **TOL)
    M = s * W2 @ W1  # check the "all terms" sum against the plain GGN diagonal at x
    torch.testing.assert_close(exact_x, torch.einsum("ci,bcd,di->bi", M, Lam, M), **TOL)

    # at the switch: exact GGN minus the between-class and between-unit terms
    h = x @ W1.T  # the switch input z, (B, 4)
    U = torch.einsum("cj,bj,bcd,dk,bk->bcjdk", W2, h, Lam, W2, h)
    kept_s = (U * same.to(U.dtype)).sum()
    torch.testing.assert_close(tape.switch_curvature[net.switch], kept_s, **TOL)
    exact_s = exact_ggn(net, x, ["switch.value"])[0]
    torch.testing.assert_close(exact_s, U.sum(), **TOL)
    assert abs(exact_s - kept_s) > 1e-3 * abs(exact_s)


# --------------------------------------------------------------------------------------------
# composites: Sequential, SwitchedEdge, and the gn_backward protocol
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_every_op_sweeps_to_the_composed_layer_rules(name: str, stride: int) -> None:
    """An op's sweep is its layers' rules applied in reverse (checked layer by layer)."""
    torch.manual_seed(0)
    op = OPS[name](2, stride).double().eval()
    for m in op.modules():
        if isinstance(m, nn.BatchNorm2d):
            random_bn(m)
    x = torch.randn(2, 2, 7, 7, dtype=torch.float64)
    layers = [m for m in op.modules() if not isinstance(m, nn.Sequential)]
    acts = [x]
    with torch.no_grad():
        for m in layers:
            acts.append(m(acts[-1]))
    H = positive_like(acts[-1])
    H_in, _ = sweep(op, x, H)
    for m, a in zip(reversed(layers), reversed(acts[:-1]), strict=True):
        H = definition(m, a, H)
    torch.testing.assert_close(H_in, H, **TOL)
    assert torch.isfinite(H_in).all() and (H_in >= 0).all()


@pytest.mark.parametrize("stride", [1, 2])
def test_switched_edge_adds_its_branches(stride: int) -> None:
    torch.manual_seed(0)
    edge = SwitchedEdge(2, stride).double().eval()
    edge.load_switch_values(torch.linspace(0.5, 1.2, 8, dtype=torch.float64))
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        y = edge(x)
    H_out = positive_like(y)
    H_in, tape = sweep(edge, x, H_out)
    sbar = edge.parent.value.detach()
    u = sbar * x
    H_u = torch.zeros_like(x)
    for name in edge.op_names:
        s_k = edge.switches[name].value.detach()
        op = edge.ops[name]
        with torch.no_grad():
            z = op(u)
        torch.testing.assert_close(
            tape.switch_curvature[edge.switches[name]], (z.square() * H_out).sum(), **TOL
        )
        H_branch, _ = sweep(op, u, s_k**2 * H_out)
        H_u = H_u + H_branch
    torch.testing.assert_close(tape.switch_curvature[edge.parent], (x.square() * H_u).sum(), **TOL)
    torch.testing.assert_close(H_in, sbar**2 * H_u, **TOL)
    assert len(tape.switch_curvature) == 8


class Fork(nn.Module):
    """``y = a(x) + b(relu(x))`` with its own saved tensor: exercises the composite protocol."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3, bias=False)
        self.b = nn.Linear(4, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tape = active_tape()
        if tape is not None:
            tape.save(self, mask=x > 0)
        return self.a(x) + self.b(torch.relu(x))

    def gn_backward(self, H_out: torch.Tensor) -> torch.Tensor:
        mask = active_tape().saved_for(self)["mask"]
        return gn_backward(self.a, H_out) + gn_backward(self.b, H_out) * mask  # branches add


def test_composite_gn_backward_protocol() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(Fork(), nn.ReLU(), nn.Linear(3, 2)).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    with torch.no_grad():
        logits = net(x)
    H = softmax_cross_entropy_gn(logits)
    H_in, _ = sweep(net, x, H)
    fork = net[0]
    with torch.no_grad():
        h = fork(x)
    H_h = definition(net[1], h, definition(net[2], net[1](h), H))
    expected = definition(fork.a, x, H_h) + definition(fork.b, torch.relu(x), H_h) * (x > 0)
    torch.testing.assert_close(H_in, expected, **TOL)


# --------------------------------------------------------------------------------------------
# capture semantics
# --------------------------------------------------------------------------------------------


def test_capture_saves_only_inside_and_only_what_rules_need() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    x = torch.randn(2, 1, 6, 6)
    tape = capture(net)
    net(x)  # outside the block: nothing recorded
    assert tape._saved == {}
    with tape:
        net(x)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    assert net[3].return_indices is False
    saved = {type(m).__name__: set(v) for m, v in tape._saved.items()}
    assert saved == {
        "Conv2d": {"input_shape"},
        "BatchNorm2d": {"var"},
        "ReLU": {"mask"},
        "MaxPool2d": {"indices", "input_shape"},
        "Flatten": {"input_shape"},
    }  # no Linear input unless parameter_curvature; no tensors for Conv2d
    assert tape._saved[net[2]]["mask"].dtype == torch.bool
    net(x)
    assert len(tape._saved) == 5  # hooks are gone


def test_float32_and_bfloat16_forwards_sweep_in_float32() -> None:
    assert curvature_dtype(torch.float64) == torch.float64
    assert curvature_dtype(torch.float16) == torch.float32
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3), Switch())
    for dtype in (torch.float32, torch.bfloat16):
        model = net.to(dtype)
        with capture(model) as tape:
            logits = model(torch.randn(3, 4, dtype=dtype))
        H = tape.backward(softmax_cross_entropy_gn(logits))
        assert H.dtype == torch.float32
        assert tape.switch_curvature[model[3]].dtype == torch.float64


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_module_called_twice_is_refused() -> None:
    relu = nn.ReLU()
    net = nn.Sequential(relu, nn.Linear(2, 2), relu)
    with pytest.raises(RuntimeError, match=r"module '0' \(ReLU\) ran twice in one captured"):
        with capture(net):
            net(torch.randn(1, 2))


def test_unknown_module_type_names_the_protocol() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    with capture(net) as tape:
        logits = net(torch.randn(3, 2))
    with pytest.raises(RuntimeError, match=r"no Gauss-Newton rule for Tanh \(module '1'\)"):
        tape.backward(softmax_cross_entropy_gn(logits))
    assert "Conv2d" in supported_module_types()


def test_sweep_outside_a_tape_and_other_misuse() -> None:
    net = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="gn_backward must be called inside GNTape.backward"):
        gn_backward(net, torch.ones(1, 2))
    tape = capture(net)
    with pytest.raises(RuntimeError, match="finish the forward"):
        with tape:
            tape.backward(torch.ones(1, 2))
    with pytest.raises(RuntimeError, match="this GNTape is already recording"):
        with tape:
            tape.__enter__()
    with pytest.raises(TypeError, match="`H_out` must be a tensor, got list"):
        tape.backward([1.0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`model` must be an nn.Module, got int"):
        capture(3)  # type: ignore[arg-type]
    relu_net = nn.Sequential(nn.ReLU())
    empty = capture(relu_net)
    with pytest.raises(RuntimeError, match=r"module '0' \(ReLU\) saved nothing"):
        empty.backward(torch.ones(1, 2))


def test_register_gn_rule_refuses_duplicates() -> None:
    with pytest.raises(ValueError, match="Linear already has a Gauss-Newton rule"):
        register_gn_rule(nn.Linear, lambda m, h, t: h)
    with pytest.raises(TypeError, match="`module_type` must be an nn.Module subclass"):
        register_gn_rule(int, lambda m, h, t: h)


@pytest.mark.parametrize(
    ("module", "shape", "message"),
    [
        (nn.Dropout(0.5), (2, 3), r"Dropout '<model>' is active \(train mode, p > 0\)"),
        (nn.Conv2d(1, 1, 3, padding="same"), (1, 1, 4, 4), "string padding 'same'"),
        (nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), (1, 1, 4, 4), "padding_mode"),
        (nn.AvgPool2d(3, ceil_mode=True), (1, 1, 7, 7), "ceil_mode=True is not supported"),
        (
            nn.AvgPool2d(3, padding=1, count_include_pad=False),
            (1, 1, 7, 7),
            "count_include_pad=False with padding",
        ),
        (nn.AdaptiveAvgPool2d(2), (1, 1, 4, 4), "only output_size=1"),
    ],
)
def test_unsupported_layer_settings(module: nn.Module, shape, message: str) -> None:
    x = torch.randn(shape)
    with capture(module) as tape:
        y = module(x)
    with pytest.raises(RuntimeError, match=message):
        tape.backward(torch.ones_like(y))


def test_maxpool_returning_indices_is_refused_and_restored() -> None:
    pool = nn.MaxPool2d(2, return_indices=True)
    with pytest.raises(RuntimeError, match="already returns indices"):
        with capture(pool):
            pool(torch.randn(1, 1, 4, 4))
    assert pool.return_indices is True


@pytest.mark.parametrize(
    ("logits", "reduction", "message"),
    [
        (torch.zeros(3), "mean", r"`logits` must have shape \(B, classes\), got \(3,\)"),
        (torch.zeros(2, 3), "none", "`reduction` must be 'mean' or 'sum', got 'none'"),
    ],
)
def test_softmax_cross_entropy_gn_errors(logits, reduction: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        softmax_cross_entropy_gn(logits, reduction)
