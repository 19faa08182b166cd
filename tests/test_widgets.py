"""The Laplace explorer: the quadratic switch epoch, one round, the figure and the widget."""

from __future__ import annotations

import math

import pytest
import torch
from matplotlib.figure import Figure
from torch.testing import assert_close

from bayesnas_book.bayes.laplace import laplace_update
from bayesnas_book.bayes.pruning import DEFAULT_THRESHOLD, KEPT, prune
from bayesnas_book.space.graph import get_cell_graph
from bayesnas_book.widgets import (
    LaplaceExplorer,
    explore_update,
    explorer_figure,
    figure_png,
    kept_pairs_sweep,
    quadratic_switch_epoch,
)

F64 = torch.float64
GRAPH = get_cell_graph("bayesnas_normal")


def _state(seed: int = 4, N: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """A switch optimum s* with a few strong ops, and a positive curvature, (N, 8, 8)."""
    gen = torch.Generator().manual_seed(seed)
    E, C1 = GRAPH.num_edges, 1 + GRAPH.num_ops
    strength = 0.03 + 0.12 * torch.rand(E, C1, dtype=F64, generator=gen)
    strong = torch.rand(E, C1, generator=gen) < 0.25
    strong_value = 0.6 + 0.6 * torch.rand(E, C1, dtype=F64, generator=gen)
    strength = torch.where(strong, strong_value, strength)
    strength[:, 0] = 1.0
    optimum = strength * (1 + 0.2 * torch.randn(N, E, C1, dtype=F64, generator=gen))
    curvature = 0.05 * torch.exp(0.5 * torch.randn(N, E, C1, dtype=F64, generator=gen))
    return optimum, curvature


# -- the switch epoch -----------------------------------------------------------------------------
def test_quadratic_switch_epoch_satisfies_the_optimality_conditions():
    optimum, H = _state(N=3)
    gen = torch.Generator().manual_seed(1)
    weights = 0.02 * torch.rand(optimum.shape[1:], dtype=F64, generator=gen)
    s = quadratic_switch_epoch(optimum, H, weights)
    norms = s.norm(dim=0)  # (E, 1+K)
    zero = norms == 0
    # a group is zero exactly when the pull of the quadratic at 0 is within the penalty
    assert_close(zero, (H * optimum).norm(dim=0) <= weights)
    assert 0 < int(zero.sum()) < zero.numel()  # both kinds occur in this test
    # nonzero groups: H (s - s*) + w s / ||s|| = 0
    residual = H * (s - optimum) + weights * s / norms.clamp_min(1e-300)
    assert float(residual[:, ~zero].abs().max()) < 1e-9


def test_quadratic_switch_epoch_without_penalty_returns_the_optimum():
    optimum, H = _state(N=2)
    s = quadratic_switch_epoch(optimum, H, torch.zeros(optimum.shape[1:], dtype=F64))
    assert_close(s, optimum, rtol=0, atol=1e-14)


def test_quadratic_switch_epoch_input_errors():
    optimum, H = _state(N=2)
    w = torch.ones(optimum.shape[1:], dtype=F64)
    with pytest.raises(ValueError, match=r"`optimum` must have shape \(N, E, 1 \+ K\)"):
        quadratic_switch_epoch(optimum[0], H, w)
    with pytest.raises(ValueError, match="`curvature` must have the shape of `optimum`"):
        quadratic_switch_epoch(optimum, H[:1], w)
    with pytest.raises(ValueError, match="`optimum` must be finite"):
        quadratic_switch_epoch(optimum * math.inf, H, w)
    with pytest.raises(ValueError, match=r"`curvature` must be finite and > 0 everywhere"):
        quadratic_switch_epoch(optimum, -H, w)
    with pytest.raises(ValueError, match=r"`weights` must have shape \(E, 1 \+ K\)"):
        quadratic_switch_epoch(optimum, H, w[0])
    with pytest.raises(ValueError, match="`weights` must be finite and >= 0"):
        quadratic_switch_epoch(optimum, H, -w)
    with pytest.raises(ValueError, match="`tol` must be > 0, got 0"):
        quadratic_switch_epoch(optimum, H, w, tol=0.0)
    with pytest.raises(ValueError, match="`max_iter` must be an integer >= 1, got 0"):
        quadratic_switch_epoch(optimum, H, w, max_iter=0)


# -- one round ------------------------------------------------------------------------------------
def test_explore_update_is_the_library_round():
    optimum, H = _state()
    lam, kappa = 0.01, 3.0
    state = explore_update(GRAPH, optimum, H, lambd=lam, curvature_scale=kappa)
    s = quadratic_switch_epoch(optimum, H, torch.full(optimum.shape[1:], lam, dtype=F64))
    assert_close(state.switches, s, rtol=0, atol=0)
    gamma0 = torch.ones(optimum.shape[1:], dtype=F64)
    update = laplace_update(s, kappa * H, gamma0, lam, lam, graph=GRAPH)
    assert_close(state.update.gamma, update.gamma, rtol=0, atol=0)
    assert_close(state.update.C, update.C, rtol=0, atol=0)
    pruning = prune(GRAPH, update.gamma)
    assert state.pruning is not None and state.message == ""
    assert_close(state.keep, pruning.keep)
    assert state.num_kept_pairs == pruning.counts()[KEPT]
    assert "lambda = 0.01, curvature scale = 3" in state.summary()


def test_a_larger_lambda_prunes_more_here_and_everything_at_the_end():
    optimum, H = _state()
    kept = kept_pairs_sweep(GRAPH, optimum, H, [1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert kept[0] > kept[2] > kept[3] > 0 and kept[-1] == 0
    state = explore_update(GRAPH, optimum, H, lambd=1.0)
    assert state.pruning is None and state.num_kept_pairs == 0
    assert not bool(state.keep.any())
    assert "would prune every edge" in state.message and state.message in state.summary()


def test_explore_update_input_errors():
    optimum, H = _state(N=2)
    with pytest.raises(ValueError, match="`lambd` must be > 0, got -0.01"):
        explore_update(GRAPH, optimum, H, lambd=-0.01)
    with pytest.raises(ValueError, match="`curvature_scale` must be a finite number > 0"):
        explore_update(GRAPH, optimum, H, lambd=0.01, curvature_scale=math.nan)
    with pytest.raises(ValueError, match=r"`optimum` must have shape \(N, 8, 8\) for"):
        explore_update(GRAPH, optimum[:, :4], H[:, :4], lambd=0.01)
    with pytest.raises(ValueError, match=r"`threshold` must be in \(0, inf\)"):
        explore_update(GRAPH, optimum, H, lambd=0.01, threshold=0.0)


def test_figure_and_png():
    optimum, H = _state(N=2)
    state = explore_update(GRAPH, optimum, H, lambd=0.01)
    figure = explorer_figure(state, [(1e-3, 30), (1e-2, 10)])
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 5  # three panels and two colour bars
    assert len(explorer_figure(state).axes) == 4
    png = figure_png(figure)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


# -- the widget -----------------------------------------------------------------------------------
def test_explorer_updates_when_the_sliders_move():
    optimum, H = _state()
    explorer = LaplaceExplorer(GRAPH, optimum, H, lambd=0.01, sweep_points=3)
    first_image, first_summary = explorer.image.value, explorer.summary.value
    assert explorer.state.lambd == pytest.approx(0.01)
    assert first_image[:4] == b"\x89PNG" and "lambda = 0.01" in first_summary
    kept_before = explorer.state.num_kept_pairs

    explorer.lambda_slider.value = 1e-4  # a weaker penalty keeps more here
    assert explorer.state.lambd == pytest.approx(1e-4)
    assert explorer.state.num_kept_pairs > kept_before
    assert explorer.summary.value != first_summary and explorer.image.value != first_image
    assert f"kept: {explorer.state.num_kept_pairs}" in explorer.summary.value

    kept_low_threshold = explorer.state.num_kept_pairs
    explorer.threshold_slider.value = 0.2  # a higher threshold prunes at least as much
    assert explorer.state.threshold == pytest.approx(0.2)
    assert explorer.state.num_kept_pairs <= kept_low_threshold
    assert_close(explorer.state.keep, prune(GRAPH, explorer.state.update.gamma, threshold=0.2).keep)

    explorer.scale_slider.value = 0.01  # the update's curvature estimate shrinks: C grows
    assert explorer.state.curvature_scale == pytest.approx(0.01)
    expected = laplace_update(
        explorer.state.switches, 0.01 * H, torch.ones(8, 8, dtype=F64), 1e-4, 1e-4, graph=GRAPH
    )
    assert_close(explorer.state.update.C, expected.C, rtol=1e-6, atol=0)
    assert explorer.sweep()[0][0] == pytest.approx(1e-4) and len(explorer.sweep()) == 3
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == ""  # a static page shows no VBox(children=...) repr


def test_explorer_input_errors():
    optimum, H = _state(N=2)
    with pytest.raises(ValueError, match=r"the range of `lambd` must satisfy 0 < low < high"):
        LaplaceExplorer(GRAPH, optimum, H, lambda_range=(1.0, 0.1))
    with pytest.raises(ValueError, match=r"`threshold` must lie in its range \(0.1, 1.0\)"):
        LaplaceExplorer(GRAPH, optimum, H, threshold_range=(0.1, 1.0))
    with pytest.raises(ValueError, match="`curvature_scale` must be > 0, got -1"):
        LaplaceExplorer(GRAPH, optimum, H, curvature_scale=-1.0)
    with pytest.raises(ValueError, match="`sweep_points` must be an integer >= 0, got -1"):
        LaplaceExplorer(GRAPH, optimum, H, sweep_points=-1)
    assert DEFAULT_THRESHOLD < 0.1  # the default threshold is outside (0.1, 1.0) above
