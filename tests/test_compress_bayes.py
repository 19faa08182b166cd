"""The gates' Bayesian update: curvature by three methods, Laplace update, prox steps, baselines."""

from __future__ import annotations

import math

import pytest
import torch

from bayesnas_book.bayes.pruning import DEFAULT_THRESHOLD
from bayesnas_book.compress import (
    CompressionError,
    build_model,
    entropy_prune_gates,
    gate_curvature,
    gate_groups,
    gate_laplace_update,
    gate_modules,
    group_lasso_prox,
    group_norms,
    initial_gate_state,
    magnitude_masks,
    prox_gates,
)
from bayesnas_book.curvature.exact import exact_ggn


def _net_and_batch(name: str, shape, width: float):
    torch.manual_seed(0)
    model = build_model(name, shape, width=width).double()
    x = torch.randn(8, *shape, dtype=torch.float64)
    return model, [(x, torch.randint(0, 10, (8,)))]


@pytest.mark.parametrize("name,shape,width,bound,correlation",
                         [("lenet300", (1, 4, 4), 0.05, 0.2, 0.97), ("lenet5", (1, 8, 8), 0.2, 0.65, 0.75)])
def test_gate_curvature_methods_against_exact_ggn(name: str, shape, width: float, bound: float, correlation: float) -> None:
    model, batches = _net_and_batch(name, shape, width)
    exact = gate_curvature(model, batches, "exact_ggn")
    # the exact GGN diagonal in the gates, straight from torch.func, one layer at a time
    for gate_name, _ in gate_modules(model):
        torch.testing.assert_close(exact[gate_name], exact_ggn(model, batches[0][0], [f"{gate_name}.value"]))
    e = torch.cat(list(exact.values()))
    fast = torch.cat(list(gate_curvature(model, batches, "recursion").values()))
    mc = torch.cat(list(gate_curvature(model, batches, "mc_ggn", num_samples=4000,
                                       generator=torch.Generator().manual_seed(1)).values()))
    assert bool((fast >= 0).all()) and bool((mc >= 0).all())
    # measured relative error: recursion 0.13 (lenet300) and 0.51 (lenet5; cross terms dropped across
    # positions and channels), correlation 0.99 / 0.85; MC with 4000 draws 0.003 / 0.019
    assert float((fast - e).norm() / e.norm()) < bound
    assert float((mc - e).norm() / e.norm()) < 0.04
    assert float(torch.corrcoef(torch.stack([fast, e]))[0, 1]) > correlation


def test_gate_curvature_bad_inputs() -> None:
    model, batches = _net_and_batch("lenet300", (1, 4, 4), 0.05)
    with pytest.raises(ValueError, match="unknown curvature method 'hessian'; valid methods: recursion, exact_ggn, mc_ggn"):
        gate_curvature(model, batches, "hessian")
    with pytest.raises(ValueError, match="`batches` is empty"):
        gate_curvature(model, [], "recursion")
    with pytest.raises(ValueError, match="has no prunable layer"):
        gate_curvature(torch.nn.Linear(3, 2), batches)


def test_gate_laplace_update_is_the_scalar_rule() -> None:
    s = torch.tensor([1.0, 0.01, -0.3, 0.0], dtype=torch.float64)
    H = torch.tensor([0.5, 0.5, 2e-3, 0.1], dtype=torch.float64)
    gamma = torch.tensor([1.0, 0.5, 2.0, 1.0], dtype=torch.float64)
    lam = 0.1
    result = gate_laplace_update(s, H, gamma, lam)
    C = 1.0 / (1.0 / gamma + H / lam)  # Laplace posterior variance
    omega = torch.sqrt((1.0 / gamma - C / gamma**2).abs())
    torch.testing.assert_close(result.posterior_variance, C)
    torch.testing.assert_close(result.omega, omega)
    expected = (s.abs() / omega).clamp(1e-10, 1e10)
    torch.testing.assert_close(result.gamma, expected)
    with pytest.raises(ValueError, match=r"must all have shape \(C,\)"):
        gate_laplace_update(s, H[:2], gamma, lam)
    with pytest.raises(ValueError, match="`lambda_o` must be > 0, got -1"):
        gate_laplace_update(s, H, gamma, -1.0)


def test_entropy_rule_and_whole_layer_error() -> None:
    pruned = entropy_prune_gates({"g": torch.tensor([1.0, DEFAULT_THRESHOLD, 0.01])})
    assert pruned["g"].tolist() == [False, True, True]
    with pytest.raises(CompressionError, match=r"would prune every unit of gate layer 'g' \(lambda_gate=0.5\)"):
        entropy_prune_gates({"g": torch.tensor([0.01, 0.02])}, lambda_gate=0.5)


def test_prox_gates_soft_thresholds() -> None:
    model = build_model("lenet300", (1, 2, 2), width=0.02)
    gamma, omega = initial_gate_state(model)
    assert all(bool((g == 1).all()) for g in gamma.values())
    gates = dict(gate_modules(model))
    with torch.no_grad():
        gates["gate0"].value.copy_(torch.tensor([0.5, -0.5, 0.02, -0.02]))
    omega["gate0"] = torch.tensor([1.0, 2.0, 1.0, 1.0], dtype=torch.float64)
    prox_gates(model, omega, lambda_gate=0.1, step_size=0.5)  # thresholds 0.05, 0.1, 0.05, 0.05
    torch.testing.assert_close(gates["gate0"].value.detach(), torch.tensor([0.45, -0.4, 0.0, 0.0]))
    with pytest.raises(ValueError, match="`lambda_gate` must be > 0, got 0"):
        prox_gates(model, omega, lambda_gate=0.0, step_size=0.5)


def test_group_norms_and_magnitude_masks() -> None:
    torch.manual_seed(0)
    model = build_model("lenet300", (1, 2, 2), width=0.02)  # 4 inputs -> 6 -> 2 -> 10
    norms = group_norms(model)
    fc1, fc2 = model.fc1.requires_grad_(False), model.fc2.requires_grad_(False)
    j = 1
    by_hand = math.sqrt(float(fc1.weight[j].square().sum() + fc1.bias[j] ** 2 + fc2.weight[:, j].square().sum()))
    assert norms["gate1"][j].item() == pytest.approx(by_hand)
    assert norms["gate0"][2].item() == pytest.approx(float(fc1.weight[:, 2].norm()))  # a feature: outgoing only
    pruned = magnitude_masks(model, {"gate0": 2, "gate1": 3, "gate2": 1})
    assert int((~pruned["gate1"]).sum()) == 3
    assert set(torch.nonzero(~pruned["gate1"]).flatten().tolist()) == set(torch.topk(norms["gate1"], 3).indices.tolist())
    with pytest.raises(ValueError, match=r"`keep\['gate1'\]` must be an integer in 1..6, got 0"):
        magnitude_masks(model, {"gate0": 2, "gate1": 0, "gate2": 1})


def test_group_lasso_prox_shrinks_each_group() -> None:
    torch.manual_seed(0)
    model = build_model("lenet300", (1, 2, 2), width=0.02)
    before = group_norms(model)
    group_lasso_prox(model, strength=1e-3, step_size=0.1, groups=gate_groups(model))
    after = group_norms(model)
    for name in before:
        assert bool((after[name] < before[name]).all())
    group_lasso_prox(model, strength=1e3, step_size=1.0)  # a huge step zeroes every group
    assert all(float(v.max()) == 0.0 for v in group_norms(model).values())
