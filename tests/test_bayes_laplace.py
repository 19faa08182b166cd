"""The Laplace update of gamma and omega, its full-matrix form, floors, errors and the penalty."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from bayesnas_book.bayes.hard import SwitchGroups, hard_coupling
from bayesnas_book.bayes.laplace import (
    INITIAL_GAMMA,
    INITIAL_OMEGA,
    initial_state,
    laplace_update,
    laplace_update_all,
    penalty_weights,
    switch_penalty,
)
from bayesnas_book.space.graph import get_cell_graph

F64 = torch.float64
NORMAL = get_cell_graph("bayesnas_normal")


def _random(N=3, E=4, C1=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(N, E, C1, dtype=F64, generator=gen)
    H = torch.rand(N, E, C1, dtype=F64, generator=gen) * 5  # PSD diagonal
    gamma = torch.rand(E, C1, dtype=F64, generator=gen) * 2 + 0.05
    return s, H, gamma


def test_diagonal_update_matches_the_scalar_closed_form():
    s, H, gamma = _random()
    lo, lc = 0.01, 0.003
    res = laplace_update(s, H, gamma, lo, lc)
    N, E, C1 = s.shape
    for e in range(E):
        for c in range(C1):
            lam = lo if c == 0 else lc
            g = float(gamma[e, c])
            omega2, norm2 = 0.0, 0.0
            for n in range(N):
                h = float(H[n, e, c]) / lam
                C = 1.0 / (1.0 / g + h)  # C = (1/gamma + H)^-1
                assert math.isclose(float(res.posterior_variance[n, e, c]), C, rel_tol=1e-12)
                omega2 += abs(1.0 / g - C / g**2)
                norm2 += float(s[n, e, c]) ** 2
            omega = math.sqrt(omega2)
            assert math.isclose(float(res.omega[e, c]), omega, rel_tol=1e-10)
            assert math.isclose(
                float(res.uncoupled_variance[e, c]), math.sqrt(norm2) / omega, rel_tol=1e-10
            )
    assert_close(res.gamma, hard_coupling(res.uncoupled_variance), rtol=1e-14, atol=0)
    assert_close(res.norms, s.norm(dim=0), rtol=1e-14, atol=0)
    assert res.gamma is res.prior_variance and res.C is res.posterior_variance
    uncoupled = laplace_update(s, H, gamma, lo, lc, couple=False)
    assert_close(uncoupled.gamma, res.uncoupled_variance, rtol=0, atol=0)


def test_full_matrix_equals_diagonal_when_the_matrix_is_diagonal():
    s, H, gamma = _random(N=2, E=3, C1=4, seed=1)
    full = torch.diag_embed(H.reshape(2, 12))  # (N, S, S), switch i = e*(1+K) + c
    a = laplace_update(s, H, gamma, 0.02, 0.005)
    b = laplace_update(s, full, gamma, 0.02, 0.005)
    for field in ("gamma", "uncoupled_variance", "omega", "posterior_variance"):
        assert_close(getattr(b, field), getattr(a, field), rtol=1e-10, atol=1e-14)


def test_full_matrix_omega_is_the_matrix_inversion_lemma_weight():
    # H = Phi^T Phi and lambda = sigma^2 (H is divided by lambda), so
    # omega_i^2 = phi_i^T (sigma^2 I + Phi G Phi^T)^-1 phi_i
    gen = torch.Generator().manual_seed(2)
    E, C1, M = 3, 3, 7
    S = E * C1
    Phi = torch.randn(M, S, dtype=F64, generator=gen)
    sigma2 = 0.3
    gamma = torch.rand(E, C1, dtype=F64, generator=gen) + 0.1
    s = torch.randn(1, E, C1, dtype=F64, generator=gen)
    res = laplace_update(s, (Phi.T @ Phi)[None], gamma, sigma2, sigma2)
    G = torch.diag(gamma.reshape(S))
    Ginv = torch.diag(1.0 / gamma.reshape(S))
    Sigma = torch.linalg.inv(Ginv + Phi.T @ Phi / sigma2)
    naive = torch.diagonal(Ginv - Ginv @ Sigma @ Ginv)  # [G^-1 - G^-1 Sigma G^-1]_ii
    lemma = torch.einsum(
        "mi,mn,ni->i",
        Phi,
        torch.linalg.inv(sigma2 * torch.eye(M, dtype=F64) + Phi @ G @ Phi.T),
        Phi,
    )
    assert_close(naive, lemma, rtol=0, atol=1e-8)
    assert_close((res.omega**2).reshape(S), lemma, rtol=0, atol=1e-8)
    assert_close(res.posterior_variance.reshape(S), torch.diagonal(Sigma), rtol=1e-10, atol=1e-12)


def test_full_matrix_sums_over_cells_and_scales_by_two_lambdas():
    gen = torch.Generator().manual_seed(3)
    N, E, C1 = 2, 2, 3
    S = E * C1
    A = torch.randn(N, 5, S, dtype=F64, generator=gen)
    H = A.transpose(1, 2) @ A  # (N, S, S) PSD
    s, _, gamma = _random(N, E, C1, seed=4)
    lo, lc = 0.5, 0.2
    res = laplace_update(s, H, gamma, lo, lc)
    lam = torch.tensor([lo, lc, lc] * E, dtype=F64)
    Hs = H / torch.sqrt(lam[:, None] * lam[None, :])
    Ginv = torch.diag(1.0 / gamma.reshape(S))
    omega2 = torch.zeros(S, dtype=F64)
    for n in range(N):
        Sigma = torch.linalg.inv(Ginv + Hs[n])
        omega2 += torch.diagonal(Ginv - Ginv @ Sigma @ Ginv).abs()
    assert_close((res.omega**2).reshape(S), omega2, rtol=1e-9, atol=1e-10)


def test_initial_state_and_first_update_bound():
    gamma0, omega0 = initial_state(NORMAL, dtype=F64)
    assert gamma0.shape == omega0.shape == (8, 8)
    assert (gamma0 == INITIAL_GAMMA).all() and (omega0 == INITIAL_OMEGA).all()
    gen = torch.Generator().manual_seed(5)
    H = torch.rand(6, 8, 8, dtype=F64, generator=gen) * 100
    res = laplace_update(torch.ones(6, 8, 8, dtype=F64), H, gamma0, 1.0, 1.0, graph=NORMAL)
    assert (res.omega < math.sqrt(6)).all()  # omega_1^2 = sum_n H/(1+H) < N


def test_floors_keep_everything_finite():
    s = torch.zeros(2, 2, 3, dtype=F64)
    s[:, 1] = 1.0
    H = torch.zeros(2, 2, 3, dtype=F64)  # no curvature: omega = 0
    res = laplace_update(
        s, H, torch.zeros(2, 3, dtype=F64), 0.1, 0.1, min_variance=1e-8, max_variance=1e6
    )
    assert (res.omega == 0).all()
    assert (res.uncoupled_variance[0] == 1e-8).all()  # s = 0: gamma = 0 -> floor
    assert (res.uncoupled_variance[1] == 1e6).all()  # s != 0, omega = 0: gamma = inf -> ceiling
    for t in (res.gamma, res.posterior_variance):
        assert torch.isfinite(t).all() and (t >= 1e-8).all()


def test_parent_switch_near_zero_drives_children_to_zero():
    s = torch.ones(6, 8, 8, dtype=F64)
    s[:, 2, 0] = 1e-6  # parent switch of edge 2 collapsed in every cell
    H = torch.ones(6, 8, 8, dtype=F64)
    res = laplace_update(s, H, torch.ones(8, 8, dtype=F64), 1.0, 1.0, graph=NORMAL)
    assert (res.gamma[2] < 1e-4).all()
    assert (res.gamma[3, 1:] > 0.1).all()


def test_stable_in_float32_when_gamma_times_H_is_tiny():
    s, H, gamma = _random(seed=6)
    H = H * 1e-9
    ref = laplace_update(s, H, gamma, 1.0, 1.0)
    f32 = laplace_update(s.float(), H.float(), gamma.float(), 1.0, 1.0)
    assert_close(f32.omega.double(), ref.omega, rtol=1e-5, atol=0)


def test_non_finite_curvature_names_the_group():
    s, H, gamma = torch.ones(6, 8, 8), torch.ones(6, 8, 8), torch.ones(8, 8)
    H[2, 6, 1] = float("nan")
    with pytest.raises(
        ValueError,
        match=r"`curvature` is nan .*normal cell, edge 6 \(c_\{k-2\} -> node_3\), "
        r"op sep_conv_3x3, cell 2",
    ):
        laplace_update(s, H, gamma, 0.01, 0.01, graph=NORMAL)
    H[2, 6, 1] = 1.0
    H[0, 7, 0] = float("inf")
    with pytest.raises(
        ValueError,
        match=r"`curvature` is inf .*reduction cell, edge 7 \(node_0 -> node_3\), "
        r"parent switch, cell 0",
    ):
        laplace_update(
            s,
            H,
            gamma,
            0.01,
            0.01,
            cell_type="reduction",
            graph=get_cell_graph("bayesnas_reduction"),
        )
    full = torch.eye(64).repeat(6, 1, 1)
    full[1, 9, 16] = full[1, 16, 9] = float("nan")
    with pytest.raises(
        ValueError,
        match=r"entry \(9, 16\) of cell 1: normal cell, edge 1 .*op sep_conv_3x3 x "
        r"normal cell, edge 2 .*parent switch",
    ):
        laplace_update(s, full, gamma, 0.01, 0.01, graph=NORMAL)


def test_input_errors():
    s, H, gamma = torch.ones(6, 8, 8), torch.ones(6, 8, 8), torch.ones(8, 8)
    with pytest.raises(ValueError, match=r"`lambda_o` must be > 0, got -0.01"):
        laplace_update(s, H, gamma, -0.01, 0.01)
    with pytest.raises(ValueError, match=r"`lambda_c` must be > 0, got 0"):
        laplace_update(s, H, gamma, 0.01, 0)
    with pytest.raises(ValueError, match=r"`lambda_c` must be a finite number > 0, got nan"):
        laplace_update(s, H, gamma, 0.01, float("nan"))
    with pytest.raises(ValueError, match=r"`lambda_o` must be a finite number > 0, got True"):
        laplace_update(s, H, gamma, True, 0.01)
    with pytest.raises(
        ValueError, match=r"empty group: `switches` of the normal cell has N = 0 cells"
    ):
        laplace_update(s[:0], H[:0], gamma, 0.01, 0.01)
    with pytest.raises(
        ValueError, match=r"`switches` must have shape \(N, E, 1 \+ K\), got \(8, 8\)"
    ):
        laplace_update(s[0], H, gamma, 0.01, 0.01)
    with pytest.raises(ValueError, match=r"`switches` must have E >= 1 and 1 \+ K >= 2"):
        laplace_update(s[:, :, :1], H[:, :, :1], gamma[:, :1], 0.01, 0.01)
    with pytest.raises(
        ValueError, match=r"`switches` must have shape \(N, 14, 8\) for darts_normal"
    ):
        laplace_update(s, H, gamma, 0.01, 0.01, graph=get_cell_graph("darts_normal"))
    with pytest.raises(
        ValueError, match=r"`prior_variance` must have shape \(8, 8\), got \(8, 7\)"
    ):
        laplace_update(s, H, gamma[:, :7], 0.01, 0.01)
    with pytest.raises(
        ValueError, match=r"`curvature` must have shape .* \(6, 64, 64\) \(full\), got \(6, 8\)"
    ):
        laplace_update(s, H[:, 0], gamma, 0.01, 0.01)
    bad = gamma.clone()
    bad[3, 4] = -1.0
    with pytest.raises(
        ValueError,
        match=r"`prior_variance` must be >= 0 and not NaN, got -1.0 in normal cell, "
        r"edge 3 \(c_\{k-2\} -> node_1\), op dil_conv_5x5",
    ):
        laplace_update(s, H, bad, 0.01, 0.01, graph=NORMAL)
    bad_s = s.clone()
    bad_s[5, 0, 0] = float("nan")
    with pytest.raises(
        ValueError,
        match=r"`switches` has a non-finite value in normal cell, edge 0, parent switch, cell 5",
    ):
        laplace_update(bad_s, H, gamma, 0.01, 0.01)
    with pytest.raises(ValueError, match=r"0 < min < max < inf, got 0.0 and 1.0"):
        laplace_update(s, H, gamma, 0.01, 0.01, min_variance=0.0, max_variance=1.0)
    asym = torch.eye(64).repeat(6, 1, 1)
    asym[0, 0, 1] = 0.5
    with pytest.raises(ValueError, match=r"a full `curvature` must be symmetric"):
        laplace_update(s, asym, gamma, 0.01, 0.01)


def test_negative_curvature_is_rejected_when_precision_is_not_positive():
    s, H, gamma = torch.ones(6, 8, 8), torch.ones(6, 8, 8), torch.ones(8, 8)
    H[4, 1, 2] = -2.0  # 1/gamma + H/lambda = 1 - 2 < 0
    with pytest.raises(
        ValueError,
        match=r"not positive definite \(normal cell, edge 1 .*op sep_conv_5x5, cell 4\)"
        r".*Gauss-Newton",
    ):
        laplace_update(s, H, gamma, 1.0, 1.0, graph=NORMAL)
    full = torch.diag_embed(H.reshape(6, 64))
    with pytest.raises(ValueError, match=r"not positive definite \(normal cell 4, full matrix\)"):
        laplace_update(s, full, gamma, 1.0, 1.0)
    H[4, 1, 2] = -0.5  # mildly negative: allowed, C > gamma, omega from |.|
    res = laplace_update(s, H, gamma, 1.0, 1.0)
    assert res.posterior_variance[4, 1, 2] > 1.0 and torch.isfinite(res.omega).all()


def test_update_all_cell_types():
    groups = SwitchGroups.for_space("bayesnas", {"normal": 2, "reduction": 1})
    gen = torch.Generator().manual_seed(7)
    s = {t: torch.randn(*groups.shape(t), dtype=F64, generator=gen) for t in groups.cell_types}
    H = {t: torch.rand(*groups.shape(t), dtype=F64, generator=gen) for t in groups.cell_types}
    g0 = {t: initial_state(groups.graphs[t], dtype=F64)[0] for t in groups.cell_types}
    out = laplace_update_all(groups, s, H, g0, 0.01, 0.02)
    for t in groups.cell_types:
        assert_close(
            out[t].gamma, laplace_update(s[t], H[t], g0[t], 0.01, 0.02).gamma, rtol=0, atol=0
        )
    with pytest.raises(ValueError, match=r"`curvature` is missing cell type 'reduction'"):
        laplace_update_all(groups, s, {"normal": H["normal"]}, g0, 0.01, 0.02)
    with pytest.raises(
        ValueError, match=r"`switches\['normal'\]` must have shape \(2, 8, 8\), got \(1, 8, 8\)"
    ):
        laplace_update_all(groups, {**s, "normal": s["normal"][:1]}, H, g0, 0.01, 0.02)
    H["reduction"][0, 3, 5] = float("nan")
    with pytest.raises(
        ValueError, match=r"reduction cell, edge 3 \(node_0 -> node_1\), op max_pool_3x3, cell 0"
    ):
        laplace_update_all(groups, s, H, g0, 0.01, 0.02)


def test_penalty_weights_and_value_and_gradient():
    gen = torch.Generator().manual_seed(8)
    omega = torch.rand(8, 8, dtype=F64, generator=gen)
    w = penalty_weights(omega, 0.01, 0.002)
    assert_close(w[:, 0], 0.01 * omega[:, 0], rtol=1e-15, atol=0)
    assert_close(w[:, 1:], 0.002 * omega[:, 1:], rtol=1e-15, atol=0)
    s = torch.randn(6, 8, 8, dtype=F64, generator=gen)
    s[:, 4, 2] = 0.0  # a collapsed group: finite (zero) subgradient
    s.requires_grad_(True)
    value = switch_penalty(s, w)
    expected = sum(
        float(w[e, c]) * math.sqrt(float((s.detach()[:, e, c] ** 2).sum()))
        for e in range(8)
        for c in range(8)
    )
    assert math.isclose(float(value.detach()), expected, rel_tol=1e-12)
    (grad,) = torch.autograd.grad(value, s)
    norms = s.detach().norm(dim=0)
    manual = (
        w * s.detach() / torch.where(norms > 0, norms, torch.ones_like(norms))
    )  # d/ds w||s|| = w s/||s||
    assert_close(grad, manual, rtol=1e-12, atol=1e-15)
    assert (grad[:, 4, 2] == 0).all()
    with pytest.raises(ValueError, match=r"`lambda_o` must be > 0, got -0.01"):
        penalty_weights(omega, -0.01, 0.01)
    with pytest.raises(
        ValueError, match=r"`reweighting` must have shape \(E, 1 \+ K\), got \(8,\)"
    ):
        penalty_weights(omega[0], 0.01, 0.01)
    with pytest.raises(ValueError, match=r"`reweighting` \(omega\) must be finite and >= 0"):
        penalty_weights(-omega, 0.01, 0.01)
    with pytest.raises(
        ValueError, match=r"`weights` must have shape \(E, 1 \+ K\) matching `switches`"
    ):
        switch_penalty(s, w[:, :7])
