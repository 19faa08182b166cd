"""The switch-gated supernet: sizes of the paper's search net, shapes, switch tensors, curvature sweep."""

from __future__ import annotations

import pytest
import torch

from bayesnas_book.curvature.recursion import capture, softmax_cross_entropy_gn
from bayesnas_book.space.cell import SearchCell
from bayesnas_book.space.graph import CellGraph, Edge
from bayesnas_book.space.supernet import Supernet, SupernetSpec


def test_paper_supernet_matches_the_official_search_net() -> None:
    """The official search net: 512 switches and 26,910,838 other parameters (C = 36, 8 cells N N R N N R N N)."""
    with torch.device("meta"):  # counts only: no memory, no initialisation
        net = Supernet(SupernetSpec())
    assert sum(p.numel() for p in net.switch_parameters()) == 512
    assert sum(p.numel() for p in net.weight_parameters()) == 26_910_838
    assert net.switch_values("normal").shape == (6, 8, 8)
    assert net.switch_values("reduction").shape == (2, 8, 8)


def test_darts_space_has_14_edges_per_cell() -> None:
    net = Supernet(SupernetSpec(in_channels=1, channels=2, layout="NR", space="darts"))
    assert net.switch_values("normal").shape == (1, 14, 8)


@pytest.mark.parametrize("space", ["bayesnas", "darts"])
def test_forward_backward_shapes(space: str) -> None:
    torch.manual_seed(0)
    net = Supernet(SupernetSpec(in_channels=1, channels=4, layout="NRN", space=space))
    logits = net(torch.randn(3, 1, 8, 8))
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in net.switch_parameters())


def test_switch_tensor_round_trip_and_zeroing_silences_a_cell() -> None:
    net = Supernet(SupernetSpec(in_channels=1, channels=4, layout="NRN"))
    values = net.switch_values("normal").detach().clone()
    values[0, :, 0] = 0.0  # every parent switch of the first normal cell off
    net.load_switch_values("normal", values)
    torch.testing.assert_close(net.switch_values("normal").detach(), values)
    cell = net.cells[0]
    out = cell(torch.randn(2, 12, 8, 8), torch.randn(2, 12, 8, 8))
    assert torch.count_nonzero(out) == 0
    with pytest.raises(ValueError, match=r"`values` must have shape \(2, E, 1 \+ K\) for the normal cells"):
        net.load_switch_values("normal", values[:1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": "NXN"}, "`layout` must be a non-empty string of N"),
        ({"channels": 0}, "`channels` must be a positive integer, got 0"),
        ({"space": "nasnet"}, "`space` must be bayesnas or darts"),
    ],
)
def test_bad_specs(kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SupernetSpec(**kwargs)


def test_a_cell_must_read_both_inputs() -> None:
    graph = CellGraph(inputs=("c_{k-2}", "c_{k-1}"), num_nodes=1, edges=(Edge("c_{k-1}", 0),), name="lonely")
    with pytest.raises(ValueError, match="never reads input 'c_{k-2}'"):
        SearchCell(graph, 4, 4, 4)


def test_curvature_sweep_reaches_every_switch() -> None:
    torch.manual_seed(0)
    net = Supernet(SupernetSpec(in_channels=1, channels=4, layout="NRN")).double()
    with capture(net) as tape:
        logits = net(torch.randn(8, 1, 8, 8, dtype=torch.float64))
    tape.backward(softmax_cross_entropy_gn(logits))
    switches = [m for m in net.modules() if type(m).__name__ == "Switch"]
    assert len(tape.switch_curvature) == len(switches) == 3 * 64
    assert all(float(v) >= 0 for v in tape.switch_curvature.values())
