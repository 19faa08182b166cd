"""The fused edge computes what the plain edge computes: outputs, gradients, BN statistics, curvature."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bayesnas_book.bench import count_compute_ops
from bayesnas_book.curvature.api import switch_curvature
from bayesnas_book.curvature.exact import batchnorm_stats_frozen
from bayesnas_book.curvature.recursion import capture, softmax_cross_entropy_gn
from bayesnas_book.search import run_search
from bayesnas_book.space.edge import SwitchedEdge
from bayesnas_book.space.fused_edge import FusedSwitchedEdge
from bayesnas_book.space.supernet import Supernet, SupernetSpec
from tests.test_search import tiny


def _pair(stride: int = 1, op_names: tuple[str, ...] | None = None, channels: int = 3) -> tuple[SwitchedEdge, FusedSwitchedEdge]:
    """A plain and a fused edge with the same random (non-initial) parameters, float64."""
    torch.manual_seed(0)
    kwargs = {} if op_names is None else {"op_names": op_names}
    plain = SwitchedEdge(channels, stride, **kwargs).double()
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.3 * torch.randn_like(p))
    fused = FusedSwitchedEdge(channels, stride, **kwargs).double()
    fused.load_state_dict(plain.state_dict())
    return plain, fused


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("stride", [1, 2])
def test_fused_edge_equals_the_plain_edge_in_train_mode(stride: int) -> None:
    plain, fused = _pair(stride)
    x = torch.randn(4, 3, 7, 7, dtype=torch.float64)
    y_plain, y_fused = plain(x), fused(x)
    assert y_fused.shape == y_plain.shape == (4, 3, 7 // stride + 7 % stride, 7 // stride + 7 % stride)
    torch.testing.assert_close(y_fused, y_plain, rtol=1e-12, atol=1e-12)
    grads_plain = torch.autograd.grad(y_plain.square().sum(), list(plain.parameters()))
    grads_fused = torch.autograd.grad(y_fused.square().sum(), list(fused.parameters()))
    assert _max_diff(list(grads_fused), list(grads_plain)) < 1e-10
    # every BN's running statistics moved exactly as the plain edge's did
    assert _max_diff(list(fused.buffers()), list(plain.buffers())) < 1e-14
    assert all(int(b) == 1 for n, b in fused.named_buffers() if n.endswith("num_batches_tracked"))


def test_fused_edge_equals_the_plain_edge_in_eval_mode_and_with_frozen_statistics() -> None:
    plain, fused = _pair()
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    plain(x), fused(x)  # move the running statistics off their initial values
    torch.testing.assert_close(fused.eval()(x), plain.eval()(x), rtol=1e-12, atol=1e-12)
    fused.train(), plain.train()
    before = [b.clone() for b in fused.buffers()]
    with batchnorm_stats_frozen(fused), batchnorm_stats_frozen(plain):
        torch.testing.assert_close(fused(x), plain(x), rtol=1e-12, atol=1e-12)
    assert _max_diff(list(fused.buffers()), before) == 0.0  # nothing updated


def test_the_state_dicts_are_interchangeable() -> None:
    plain = Supernet(SupernetSpec(in_channels=1, channels=2, layout="NR"))
    fused = Supernet(SupernetSpec(in_channels=1, channels=2, layout="NR", fused_edges=True))
    assert list(plain.state_dict()) == list(fused.state_dict())
    fused.load_state_dict(plain.state_dict())
    assert all(isinstance(e, FusedSwitchedEdge) for cell in fused.cells for e in cell.edges)


@pytest.mark.parametrize("op_names", [("sep_conv_5x5", "max_pool_3x3", "dil_conv_3x3"),
                                      ("dil_conv_3x3", "dil_conv_5x5", "skip_connect"),
                                      ("sep_conv_3x3", "avg_pool_3x3")])  # one conv op: the plain path
def test_op_subsets_stack_what_they_can(op_names: tuple[str, ...]) -> None:
    plain, fused = _pair(2, op_names)
    x = torch.randn(3, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(fused(x), plain(x), rtol=1e-12, atol=1e-12)


def test_mixed_batchnorm_modes_fall_back_to_the_plain_forward() -> None:
    plain, fused = _pair()
    fused.ops["sep_conv_3x3"][0][0].eval()
    plain.ops["sep_conv_3x3"][0][0].eval()
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(fused(x), plain(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
def test_fused_recursion_equals_the_plain_recursion(stride: int) -> None:
    plain, fused = _pair(stride)
    x = torch.randn(5, 3, 6, 6, dtype=torch.float64)
    torch.manual_seed(1)
    head = nn.Sequential(nn.Flatten(), nn.LazyLinear(4)).double()
    head(plain(x))  # materialise the lazy layer once, shared by both
    results = []
    for edge in (plain, fused):
        model = nn.Sequential(edge, head)
        with capture(model) as tape:
            logits = model(x)
        H_in = tape.backward(softmax_cross_entropy_gn(logits))
        switches = [edge.parent] + [edge.switches[n] for n in edge.op_names]
        results.append((torch.stack([tape.switch_curvature[s] for s in switches]), H_in))
    (curv_plain, H_plain), (curv_fused, H_fused) = results
    assert (curv_plain > 0).all()
    torch.testing.assert_close(curv_fused, curv_plain, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(H_fused, H_plain, rtol=1e-12, atol=1e-18)


@pytest.mark.parametrize("method", ["recursion", "exact_ggn"])
def test_supernet_curvature_is_the_same_with_fused_edges(method: str) -> None:
    torch.manual_seed(0)
    plain = Supernet(SupernetSpec(in_channels=1, num_classes=4, channels=2, layout="NR")).double().train()
    fused = Supernet(SupernetSpec(in_channels=1, num_classes=4, channels=2, layout="NR", fused_edges=True)).double().train()
    fused.load_state_dict(plain.state_dict())
    batch = (torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.randint(0, 4, (4,)))
    a = switch_curvature(plain, [batch], method=method).diagonal
    b = switch_curvature(fused, [batch], method=method).diagonal
    torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-14)


def test_channels_last_bf16_fused_edge_agrees_with_the_plain_one() -> None:
    plain, fused = _pair(channels=8)
    plain, fused = plain.float(), fused.float()
    x = torch.randn(4, 8, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y_plain, y_fused = plain(x), fused(x)
    assert y_fused.dtype == y_plain.dtype
    error = float((y_fused.float() - y_plain.float()).norm() / y_plain.float().norm())
    assert error < 0.02, error


def test_fused_edges_dispatch_fewer_compute_ops() -> None:
    plain, fused = _pair(channels=4)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    counts = [count_compute_ops(lambda edge=edge: edge(x).square().sum().backward()) for edge in (plain, fused)]
    assert counts[1] < counts[0], counts


def test_a_search_with_fused_edges_matches_the_plain_search(tmp_path) -> None:
    plain = run_search(tiny(), out=tmp_path / "plain")
    fused = run_search(tiny("search.fused_edges=true"), out=tmp_path / "fused")
    for a, b in zip(plain.metrics, fused.metrics, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    for a, b in zip(plain.history, fused.history, strict=True):
        for kind in ("normal", "reduction"):
            torch.testing.assert_close(torch.tensor(b[kind]["curvature"]), torch.tensor(a[kind]["curvature"]),
                                       rtol=1e-3, atol=1e-9)
    assert fused.genotype == plain.genotype
