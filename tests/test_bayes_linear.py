"""Sparse Bayesian learning on linear models: posterior, evidence, ARD, reweighted l1, baselines."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from bayesnas_book.bayes.ard import ard
from bayesnas_book.bayes.linear import (
    group_index,
    log_evidence,
    log_evidence_gradient,
    marginal_covariance,
    posterior,
    reweighting_weights,
    reweighting_weights_from_posterior,
)
from bayesnas_book.bayes.reweighted import reweighted_l1, weighted_lasso
from bayesnas_book.bayes.sparse_regression import (
    ENTROPY_THRESHOLD,
    METHODS,
    compare_sparse_methods,
    lasso_cv,
    magnitude_threshold,
    planted_regression,
    summarize_records,
    support_metrics,
)

F64 = torch.float64
TIGHT = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The matrices here are tiny: intra-op threads only add overhead (10x on a busy 2-core box)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def random_problem(n: int = 12, d: int = 7, seed: int = 0):
    """A small dense problem with positive variances of mixed scales."""
    gen = torch.Generator().manual_seed(seed)
    Phi = torch.randn(n, d, generator=gen, dtype=F64)
    y = torch.randn(n, generator=gen, dtype=F64)
    gamma = torch.exp(torch.randn(d, generator=gen, dtype=F64))
    return Phi, y, gamma, 0.3


def direct_posterior(Phi, y, gamma, sigma2):
    """The textbook formulas with explicit inverses."""
    Sigma = torch.linalg.inv(Phi.T @ Phi / sigma2 + torch.diag(1.0 / gamma))
    return Sigma @ Phi.T @ y / sigma2, Sigma


def direct_log_evidence(Phi, y, gamma, sigma2):
    C = sigma2 * torch.eye(Phi.shape[0], dtype=F64) + Phi @ torch.diag(gamma) @ Phi.T
    return torch.distributions.MultivariateNormal(torch.zeros_like(y), C).log_prob(y)


# --------------------------------------------------------------------- posterior and evidence
def test_posterior_matches_textbook_formulas():
    Phi, y, gamma, sigma2 = random_problem()
    post = posterior(Phi, y, gamma, sigma2)
    mu, Sigma = direct_posterior(Phi, y, gamma, sigma2)
    assert_close(post.mean, mu, rtol=1e-9, atol=1e-10)
    assert_close(post.covariance, Sigma, rtol=1e-9, atol=1e-10)


def test_zero_variance_pins_the_coefficient_and_matches_the_reduced_model():
    Phi, y, gamma, sigma2 = random_problem()
    gamma = gamma.clone()
    gamma[[1, 4]] = 0.0
    keep = [0, 2, 3, 5, 6]
    post = posterior(Phi, y, gamma, sigma2)
    mu_r, Sigma_r = direct_posterior(Phi[:, keep], y, gamma[keep], sigma2)
    assert_close(post.mean[keep], mu_r, rtol=1e-9, atol=1e-10)
    assert_close(post.covariance[keep][:, keep], Sigma_r, rtol=1e-9, atol=1e-10)
    assert post.mean[[1, 4]].abs().max() == 0 and post.covariance[[1, 4]].abs().max() == 0
    assert_close(
        log_evidence(Phi, y, gamma, sigma2),
        direct_log_evidence(Phi[:, keep], y, gamma[keep], sigma2),
        **TIGHT,
    )


@pytest.mark.parametrize("n,d", [(12, 7), (6, 15)])
def test_log_evidence_matches_multivariate_normal(n, d):
    Phi, y, gamma, sigma2 = random_problem(n, d, seed=n + d)
    assert_close(
        log_evidence(Phi, y, gamma, sigma2), direct_log_evidence(Phi, y, gamma, sigma2), **TIGHT
    )
    C = marginal_covariance(Phi, gamma, sigma2)
    assert_close(C, sigma2 * torch.eye(n, dtype=F64) + Phi @ torch.diag(gamma) @ Phi.T, **TIGHT)


def test_log_evidence_gradient_matches_finite_differences_and_posterior_form():
    Phi, y, gamma, sigma2 = random_problem(seed=3)
    grad = log_evidence_gradient(Phi, y, gamma, sigma2)
    eps = 1e-6
    fd = torch.stack(
        [
            (
                log_evidence(Phi, y, gamma + eps * e, sigma2)
                - log_evidence(Phi, y, gamma - eps * e, sigma2)
            )
            / (2 * eps)
            for e in torch.eye(len(gamma), dtype=F64)
        ]
    )
    assert_close(grad, fd, rtol=1e-6, atol=1e-8)
    # posterior form: ((mu_i^2 + Sigma_ii) / gamma_i^2 - 1 / gamma_i) / 2
    post = posterior(Phi, y, gamma, sigma2)
    form = 0.5 * ((post.mean**2 + post.covariance.diagonal()) / gamma**2 - 1.0 / gamma)
    assert_close(grad, form, rtol=1e-8, atol=1e-10)


def test_grouped_gradient_matches_finite_differences():
    Phi, y, _, sigma2 = random_problem(seed=4)
    groups = [0, 0, 1, 2, 2, 2, 1]
    gamma = torch.tensor([0.7, 1.3, 0.2], dtype=F64)
    grad = log_evidence_gradient(Phi, y, gamma, sigma2, groups=groups)
    eps = 1e-6
    fd = torch.stack(
        [
            (
                log_evidence(Phi, y, gamma + eps * e, sigma2, groups=groups)
                - log_evidence(Phi, y, gamma - eps * e, sigma2, groups=groups)
            )
            / (2 * eps)
            for e in torch.eye(3, dtype=F64)
        ]
    )
    assert grad.shape == (3,)
    assert_close(grad, fd, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------ reweighting weights and the inversion lemma
def test_reweighting_weights_equal_bayesnas_form_by_matrix_inversion_lemma():
    Phi, y, gamma, sigma2 = random_problem(n=20, d=9, seed=5)
    omega = reweighting_weights(Phi, gamma, sigma2)
    # phi_i^T C^{-1} phi_i with an explicit inverse
    C = sigma2 * torch.eye(20, dtype=F64) + Phi @ torch.diag(gamma) @ Phi.T
    direct = torch.diagonal(Phi.T @ torch.linalg.inv(C) @ Phi).sqrt()
    assert_close(omega, direct, rtol=1e-10, atol=1e-12)
    # [Gamma^{-1} - Gamma^{-1} Sigma Gamma^{-1}]_ii with the exact posterior covariance
    Sigma = posterior(Phi, y, gamma, sigma2).covariance
    bayesnas = reweighting_weights_from_posterior(gamma, Sigma.diagonal())
    assert_close(omega, bayesnas, rtol=1e-8, atol=1e-8)
    full = torch.linalg.inv(torch.diag(gamma))
    lemma = full - full @ Sigma @ full
    assert_close(Phi.T @ torch.linalg.inv(C) @ Phi, lemma, rtol=1e-8, atol=1e-8)


def test_grouped_reweighting_weights_are_traces_of_group_blocks():
    Phi, y, _, sigma2 = random_problem(n=15, d=6, seed=6)
    groups = [[0, 3], [1], [2, 4, 5]]
    gamma = torch.tensor([0.5, 2.0, 0.1], dtype=F64)
    omega = reweighting_weights(Phi, gamma, sigma2, groups=groups)
    ids, _ = group_index(groups, 6)
    C = marginal_covariance(Phi, gamma, sigma2, groups=groups)
    M = Phi.T @ torch.linalg.inv(C) @ Phi
    direct = torch.stack([torch.diagonal(M[g][:, g]).sum() for g in groups]).sqrt()
    assert_close(omega, direct, rtol=1e-10, atol=1e-12)
    Sigma = posterior(Phi, y, gamma, sigma2, groups=groups).covariance
    assert_close(
        reweighting_weights_from_posterior(gamma, Sigma.diagonal(), groups=ids),
        omega,
        rtol=1e-8,
        atol=1e-8,
    )


def test_gradient_is_half_of_q_squared_minus_omega_squared_at_zero_variance():
    Phi, y, gamma, sigma2 = random_problem(seed=7)
    gamma = gamma.clone()
    gamma[2] = 0.0
    grad = log_evidence_gradient(Phi, y, gamma, sigma2)
    omega = reweighting_weights(Phi, gamma, sigma2)
    C_inv_y = torch.linalg.solve(marginal_covariance(Phi, gamma, sigma2), y)
    assert_close(grad, 0.5 * ((Phi.T @ C_inv_y) ** 2 - omega**2), **TIGHT)
    eps = 1e-7  # one-sided difference at the boundary
    e = torch.zeros_like(gamma)
    e[2] = eps
    fd = (log_evidence(Phi, y, gamma + e, sigma2) - log_evidence(Phi, y, gamma, sigma2)) / eps
    assert_close(grad[2], fd, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------- ARD
@pytest.mark.parametrize("learn_noise", [False, True])
def test_em_never_decreases_the_evidence(learn_noise):
    problem = planted_regression(40, 30, 4, 0.3, seed=1)
    result = ard(
        problem.design,
        problem.targets,
        0.3**2 * (2.0 if learn_noise else 1.0),
        update="em",
        learn_noise=learn_noise,
        prune_below=0.0,
        max_iter=100,
    )
    trace = result.log_evidence
    assert trace.shape == (result.n_iter + 1,)
    assert result.n_iter > 20  # EM took many steps, so the check below has something to check
    tolerance = 1e-10 * trace.abs().max()
    assert bool((trace.diff() >= -tolerance).all()), trace.diff().min()
    assert trace[-1] > trace[0] + 1.0
    # the trace holds the evidence of the returned variances
    assert_close(
        trace[-1],
        log_evidence(problem.design, problem.targets, result.prior_variance, result.noise_variance),
        **TIGHT,
    )


def test_em_fixed_point_has_zero_evidence_gradient():
    problem = planted_regression(40, 12, 3, 0.2, seed=2)
    # the floor removes the slowly vanishing variances so that EM converges in few steps
    result = ard(problem.design, problem.targets, 0.04, prune_below=1e-3, max_iter=2000, tol=1e-12)
    assert result.converged
    active = result.prior_variance > 0
    grad = log_evidence_gradient(problem.design, problem.targets, result.prior_variance, 0.04)
    # relative to the size of each term 1/(2 gamma_i) of the gradient
    scaled = grad[active] * result.prior_variance[active]
    assert_close(scaled, torch.zeros_like(scaled), rtol=0, atol=1e-6)


def test_em_and_mackay_agree_and_recover_a_planted_support():
    problem = planted_regression(60, 40, 5, 0.1, seed=3)
    args = (problem.design, problem.targets, 0.01)
    em = ard(*args, update="em", prune_below=ENTROPY_THRESHOLD)
    mackay = ard(*args, update="mackay", prune_below=ENTROPY_THRESHOLD)
    assert em.converged and mackay.converged
    truth = torch.zeros(40, dtype=torch.bool)
    truth[problem.support] = True
    assert torch.equal(em.support, truth)
    assert torch.equal(mackay.support, truth)
    assert_close(em.log_evidence[-1], mackay.log_evidence[-1], rtol=1e-6, atol=1e-6)
    assert_close(em.prior_variance, mackay.prior_variance, rtol=1e-4, atol=1e-6)


def test_em_and_mackay_reach_the_same_planted_variances_without_a_large_floor():
    # Without a large floor, a few noise-only coefficients keep tiny variances at the ARD
    # optimum (where q_i^2 > s_i); the two updates may keep slightly different sets of them
    # (different local optima: measured evidences 36.388 vs 36.364, large variances within
    # 0.3%), but they agree on the planted coefficients.
    problem = planted_regression(60, 40, 5, 0.1, seed=3)
    args = (problem.design, problem.targets, 0.01)
    em = ard(*args, update="em", max_iter=3000)
    mackay = ard(*args, update="mackay", max_iter=3000)
    assert em.converged and mackay.converged
    assert mackay.n_iter < em.n_iter  # MacKay's updates need fewer steps
    big = em.prior_variance > 0.5
    assert torch.equal(big, mackay.prior_variance > 0.5)
    assert torch.nonzero(big).flatten().tolist() == problem.support.tolist()
    assert_close(em.prior_variance[big], mackay.prior_variance[big], rtol=1e-2, atol=0)
    assert abs(float(em.log_evidence[-1] - mackay.log_evidence[-1])) < 0.1
    # the surviving small ones are orders of magnitude below the planted ones
    assert float(em.prior_variance[~big].max()) < 1e-3
    assert float(mackay.prior_variance[~big].max()) < 1e-3


def test_learned_noise_is_close_to_the_truth():
    problem = planted_regression(200, 20, 4, 0.5, seed=4)
    for update in ("em", "mackay"):
        result = ard(problem.design, problem.targets, 1.0, update=update, learn_noise=True)
        assert 0.5**2 * 0.7 < result.noise_variance < 0.5**2 * 1.3, (update, result.noise_variance)


# ------------------------------------------------------------------------- reweighted l1
def test_weighted_lasso_matches_scikit_learn_by_rescaling_columns():
    from sklearn.linear_model import Lasso

    Phi, y, _, _ = random_problem(n=30, d=10, seed=8)
    omega = torch.linspace(0.5, 2.0, 10, dtype=F64)
    lam = 2.0
    ours = weighted_lasso(Phi, y, lam, omega, tol=1e-12)
    assert ours.converged
    # w = u / omega with u the plain lasso on Phi / omega; sklearn scales the loss by 1/(2N)
    sk = Lasso(alpha=lam / 30, fit_intercept=False, tol=1e-10, max_iter=100_000)
    sk.fit((Phi / omega).numpy(), y.numpy())
    assert_close(ours.coefficients, torch.as_tensor(sk.coef_) / omega, rtol=1e-7, atol=1e-9)


def test_weighted_group_lasso_satisfies_its_optimality_conditions():
    Phi, y, _, _ = random_problem(n=30, d=9, seed=9)
    groups = [0, 0, 0, 1, 1, 2, 2, 2, 3]
    omega = torch.tensor([1.0, 3.0, 0.5, 20.0], dtype=F64)
    lam = 1.5
    sol = weighted_lasso(Phi, y, lam, omega, groups=groups, tol=1e-12)
    assert sol.converged
    w = sol.coefficients
    corr = Phi.T @ (y - Phi @ w)  # minus the gradient of the data term
    ids = torch.tensor(groups)
    n_active = 0
    for g in range(4):
        wg, cg = w[ids == g], corr[ids == g]
        if wg.norm() > 0:  # stationarity: Phi_g^T r = lam omega_g w_g / ||w_g||
            n_active += 1
            assert_close(cg, lam * omega[g] * wg / wg.norm(), rtol=1e-6, atol=1e-7)
        else:  # subgradient condition: ||Phi_g^T r|| <= lam omega_g
            assert cg.norm() <= lam * omega[g] * (1 + 1e-8)
    assert 0 < n_active < 4  # the check covered both cases
    assert w[ids == 3].abs().max() == 0


def test_reweighted_l1_recovers_a_planted_support_at_low_noise():
    problem = planted_regression(100, 80, 8, 0.05, seed=0)
    result = reweighted_l1(problem.design, problem.targets, 0.05**2, prune_below=ENTROPY_THRESHOLD)
    assert result.lasso_converged
    precision, recall, _ = support_metrics(result.support, problem.support)
    assert (precision, recall) == (1.0, 1.0)
    error = (result.coefficients - problem.weights).norm() / problem.weights.norm()
    assert error < 0.01


def test_reweighted_l1_and_em_find_the_same_variances():
    # Both minimise the ARD cost; on this problem they reach the same optimum.
    problem = planted_regression(60, 40, 5, 0.1, seed=3)
    rw = reweighted_l1(problem.design, problem.targets, 0.01, tol=1e-8, max_reweights=100)
    em = ard(problem.design, problem.targets, 0.01, max_iter=3000)
    big = em.prior_variance > 0.5
    assert torch.equal(big, rw.prior_variance > 0.5)
    assert_close(rw.prior_variance[big], em.prior_variance[big], rtol=1e-3, atol=0)
    assert_close(rw.coefficients[big], em.posterior_mean[big], rtol=1e-3, atol=0)
    # each W&N step can only lower the ARD cost: its evidence is close to EM's optimum
    ev_rw = log_evidence(problem.design, problem.targets, rw.prior_variance, 0.01)
    assert float(ev_rw) > float(em.log_evidence[-1]) - 1e-3


def test_ard_beats_lasso_in_precision_at_low_noise():
    # Measured on seeds 0-3 (n=100, d=80, k=8, sigma=0.05): ARD (EM) precision 1.0 on every
    # seed, LassoCV precision 0.30-0.5 (it keeps 16-27 coefficients); recall 1 for both.
    ard_precisions, lasso_precisions = [], []
    for seed in range(4):
        problem = planted_regression(100, 80, 8, 0.05, seed=seed)
        result = ard(problem.design, problem.targets, 0.05**2, prune_below=ENTROPY_THRESHOLD)
        w_lasso = lasso_cv(problem.design, problem.targets)
        p_ard, r_ard, _ = support_metrics(result.support, problem.support)
        p_lasso, r_lasso, _ = support_metrics(w_lasso != 0, problem.support)
        assert r_ard == 1.0 and r_lasso == 1.0
        ard_precisions.append(p_ard)
        lasso_precisions.append(p_lasso)
    assert min(ard_precisions) == 1.0
    assert np.mean(ard_precisions) >= np.mean(lasso_precisions) + 0.3


# ---------------------------------------------------------------------------------- groups
def test_singleton_groups_reduce_to_the_plain_versions():
    problem = planted_regression(30, 12, 3, 0.2, seed=5)
    Phi, y = problem.design, problem.targets
    singletons = list(range(12))
    gamma = torch.linspace(0.1, 2.0, 12, dtype=F64)
    assert_close(
        log_evidence(Phi, y, gamma, 0.04, groups=singletons),
        log_evidence(Phi, y, gamma, 0.04),
        **TIGHT,
    )
    assert_close(
        reweighting_weights(Phi, gamma, 0.04, groups=[[i] for i in range(12)]),
        reweighting_weights(Phi, gamma, 0.04),
        **TIGHT,
    )
    for update in ("em", "mackay"):
        a = ard(Phi, y, 0.04, update=update, groups=singletons, learn_noise=True)
        b = ard(Phi, y, 0.04, update=update, learn_noise=True)
        assert_close(a.prior_variance, b.prior_variance, **TIGHT)
        assert_close(a.log_evidence, b.log_evidence, **TIGHT)
        assert a.noise_variance == pytest.approx(b.noise_variance, rel=1e-12)
    a = reweighted_l1(Phi, y, 0.04, groups=singletons)
    b = reweighted_l1(Phi, y, 0.04)
    assert_close(a.coefficients, b.coefficients, rtol=1e-9, atol=1e-12)
    assert_close(a.prior_variance, b.prior_variance, rtol=1e-9, atol=1e-12)


def planted_groups(seed: int = 0):
    """12 groups of 3 coefficients, 3 of them active; 60 samples, noise 0.1."""
    gen = torch.Generator().manual_seed(seed)
    Phi = torch.randn(60, 36, generator=gen, dtype=F64)
    ids = torch.arange(36) // 3
    w = torch.zeros(36, dtype=F64)
    active = torch.tensor([1, 5, 8])
    for g in active:
        w[ids == g] = torch.randn(3, generator=gen, dtype=F64) + torch.tensor(
            [1.5, -1.5, 1.0], dtype=F64
        )
    y = Phi @ w + 0.1 * torch.randn(60, generator=gen, dtype=F64)
    return Phi, y, ids, active


@pytest.mark.parametrize("update", ["em", "mackay"])
def test_group_ard_recovers_planted_groups_and_em_is_monotone(update):
    Phi, y, ids, active = planted_groups()
    result = ard(Phi, y, 0.01, groups=ids, update=update, prune_below=ENTROPY_THRESHOLD)
    assert result.prior_variance.shape == (12,)
    assert torch.nonzero(result.prior_variance).flatten().tolist() == active.tolist()
    assert torch.equal(result.support, torch.isin(ids, active))
    if update == "em":
        no_prune = ard(Phi, y, 0.01, groups=ids, update="em", prune_below=0.0, max_iter=200)
        trace = no_prune.log_evidence
        assert bool((trace.diff() >= -1e-10 * trace.abs().max()).all())


def test_group_reweighted_l1_recovers_planted_groups():
    Phi, y, ids, active = planted_groups()
    result = reweighted_l1(Phi, y, 0.01, groups=ids, prune_below=ENTROPY_THRESHOLD)
    assert torch.nonzero(result.prior_variance).flatten().tolist() == active.tolist()
    assert torch.equal(result.support, torch.isin(ids, active))
    em = ard(Phi, y, 0.01, groups=ids, prune_below=ENTROPY_THRESHOLD)
    assert_close(result.prior_variance, em.prior_variance, rtol=1e-3, atol=1e-8)


def test_group_index_accepts_ids_and_index_lists():
    ids, n = group_index([[0, 3], [1, 2], [4]], 5)
    assert ids.tolist() == [0, 1, 1, 0, 2] and n == 3
    ids, n = group_index(torch.tensor([2, 0, 1, 1]), 4)
    assert ids.tolist() == [2, 0, 1, 1] and n == 3
    ids, n = group_index(None, 3)
    assert ids.tolist() == [0, 1, 2] and n == 3


@pytest.mark.parametrize(
    "groups,error,match",
    [
        ([0, 2, 2], ValueError, r"group\(s\) \[1\] are empty"),
        ([0, 1], ValueError, r"one group id per coefficient, shape \(3,\), got shape \(2,\)"),
        ([0, -1, 1], ValueError, r"ids must be >= 0, got -1"),
        ([0.0, 1.0, 1.0], TypeError, r"must hold integer group ids"),
        ([[0, 1], []], ValueError, r"`groups\[1\]` is empty"),
        ([[0, 1], [1, 2]], ValueError, r"coefficient\(s\) \[1\] appear in more than one group"),
        ([[0, 0], [1, 2]], ValueError, r"appear in more than one group"),
        ([[0], [1]], ValueError, r"coefficient\(s\) \[2\] are in no group"),
        ([[0, 1], [2, 7]], ValueError, r"indices must lie in 0 \.\. 2, got \[2, 7\]"),
        ([[0, 1], [2.0]], TypeError, r"`groups\[1\]` must hold integer indices"),
    ],
)
def test_group_index_errors(groups, error, match):
    with pytest.raises(error, match=match):
        group_index(groups, 3)


# ------------------------------------------------------------------ planted problems, baselines
def test_planted_regression_is_deterministic_and_planted():
    a = planted_regression(50, 20, 4, 0.1, seed=7)
    b = planted_regression(50, 20, 4, 0.1, seed=7)
    for x, z in zip(a, b, strict=True):
        assert torch.equal(x, z)
    assert a.design.shape == (50, 20) and a.targets.shape == (50,) and a.design.dtype == F64
    assert a.support.tolist() == torch.nonzero(a.weights).flatten().tolist()
    assert bool(((a.weights[a.support].abs() >= 1) & (a.weights[a.support].abs() <= 2)).all())
    residual = a.targets - a.design @ a.weights
    assert 0.05 < float(residual.std()) < 0.2
    noiseless = planted_regression(50, 20, 4, 0.0, seed=7)
    assert_close(noiseless.targets, noiseless.design @ noiseless.weights, **TIGHT)
    c = planted_regression(4000, 6, 2, 0.1, seed=1, correlated=True, correlation=0.8)
    corr = np.corrcoef(c.design.T.numpy())
    assert abs(corr[0, 1] - 0.8) < 0.03 and abs(corr[0, 2] - 0.64) < 0.03


def test_support_metrics_values_and_conventions():
    p, r, f1 = support_metrics(torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3, 4]))
    assert (p, r) == (2 / 3, 1 / 2) and f1 == pytest.approx(4 / 7)
    mask = torch.tensor([False, True, True, True, False])
    assert support_metrics(mask, [1, 2, 3]) == (1.0, 1.0, 1.0)
    assert support_metrics(torch.zeros(5, dtype=torch.bool), [1]) == (1.0, 0.0, 0.0)
    assert support_metrics([0], torch.zeros(0, dtype=torch.long)) == (0.0, 1.0, 0.0)


def test_magnitude_threshold_keeps_the_largest_least_squares_coefficients():
    problem = planted_regression(60, 10, 3, 0.1, seed=2)
    w = magnitude_threshold(problem.design, problem.targets, 3, ridge=0.0)
    ls = torch.linalg.lstsq(problem.design, problem.targets[:, None]).solution[:, 0]
    keep = torch.topk(ls.abs(), 3).indices
    assert torch.equal(torch.nonzero(w).flatten(), keep.sort().values)
    assert_close(w[keep], ls[keep], rtol=1e-9, atol=1e-12)
    w_ridge = magnitude_threshold(problem.design, problem.targets, 3, ridge=5.0)
    assert int((w_ridge != 0).sum()) == 3


def test_compare_sparse_methods_runs_fast_and_summarises():
    start = time.perf_counter()
    records = compare_sparse_methods([0.1, 0.5], [0], n_samples=60, n_features=30, n_nonzero=4)
    elapsed = time.perf_counter() - start
    assert len(records) == 2 * 1 * len(METHODS)
    assert [r.method for r in records[:4]] == list(METHODS)
    for r in records:
        assert 0 <= r.precision <= 1 and 0 <= r.recall <= 1 and r.relative_error >= 0
    by_method = {r.method: r for r in records if r.noise_std == 0.1}
    assert by_method["ard"].precision == 1.0 and by_method["ard"].recall == 1.0
    assert by_method["magnitude"].n_selected == 4
    summary = summarize_records(records)
    assert len(summary) == 8 and summary[0]["n_runs"] == 1
    assert summary[0]["precision"] == records[0].precision
    assert elapsed < 20.0


# ------------------------------------------------------------------------------ input errors
def test_errors_on_shapes_values_and_nan():
    Phi, y, gamma, sigma2 = random_problem()
    with pytest.raises(
        ValueError,
        match=r"`targets` must have shape \(N,\) = \(12,\) to match `design`, got shape \(11,\)",
    ):
        posterior(Phi, y[:-1], gamma, sigma2)
    with pytest.raises(
        ValueError,
        match=r"`design` must be a non-empty matrix of shape \(N, D\), got shape \(12,\)",
    ):
        log_evidence(y, y, gamma, sigma2)
    with pytest.raises(ValueError, match=r"`noise_variance` must be a finite number > 0, got -0.1"):
        posterior(Phi, y, gamma, -0.1)
    with pytest.raises(ValueError, match=r"`noise_variance` must be a finite number > 0, got 0"):
        reweighting_weights(Phi, gamma, 0)
    with pytest.raises(TypeError, match=r"`noise_variance` must be a number, got 'a'"):
        posterior(Phi, y, gamma, "a")
    with pytest.raises(ValueError, match=r"`noise_variance` must be a single number"):
        posterior(Phi, y, gamma, torch.ones(2))
    bad_gamma = gamma.clone()
    bad_gamma[0] = -1.0
    with pytest.raises(ValueError, match=r"`prior_variance` must be >= 0, got min -1"):
        log_evidence(Phi, y, bad_gamma, sigma2)
    with pytest.raises(ValueError, match=r"`prior_variance` must have shape \(7,\)"):
        marginal_covariance(Phi, gamma[:3], sigma2)
    nan_design = Phi.clone()
    nan_design[0, 0] = math.nan
    with pytest.raises(
        ValueError, match=r"`design` must contain only finite numbers, found 1 NaN/inf"
    ):
        posterior(nan_design, y, gamma, sigma2)
    nan_targets = y.clone()
    nan_targets[3] = math.inf
    with pytest.raises(ValueError, match=r"`targets` must contain only finite numbers"):
        ard(Phi, nan_targets, sigma2)
    with pytest.raises(TypeError, match=r"`design` must be a tensor or array of numbers"):
        posterior("abc", y, gamma, sigma2)
    with pytest.raises(ValueError, match=r"`prior_variance` must be > 0 everywhere here"):
        reweighting_weights_from_posterior(torch.zeros(7), torch.ones(7))
    with pytest.raises(ValueError, match=r"`posterior_variance` must be >= 0"):
        reweighting_weights_from_posterior(gamma, -torch.ones(7))
    with pytest.raises(ValueError, match=r"`posterior_variance` must have shape \(D,\)"):
        reweighting_weights_from_posterior(gamma, torch.ones(7, 1))
    with pytest.raises(ValueError, match=r"`n_features` must be >= 1, got 0"):
        group_index(None, 0)


def test_ard_argument_errors():
    Phi, y, _, sigma2 = random_problem()
    with pytest.raises(
        ValueError, match=r"`update` must be one of \('em', 'mackay'\), got 'newton'"
    ):
        ard(Phi, y, sigma2, update="newton")
    with pytest.raises(ValueError, match=r"`prune_below` must be a finite number >= 0, got -1"):
        ard(Phi, y, sigma2, prune_below=-1)
    with pytest.raises(ValueError, match=r"`max_iter` must be an integer >= 1, got 0"):
        ard(Phi, y, sigma2, max_iter=0)
    with pytest.raises(ValueError, match=r"`tol` must be a finite number > 0, got 0"):
        ard(Phi, y, sigma2, tol=0)
    with pytest.raises(ValueError, match=r"`init_prior_variance` must be > 0 everywhere here"):
        ard(Phi, y, sigma2, init_prior_variance=0.0)
    with pytest.raises(ValueError, match=r"`noise_variance` must be a finite number > 0, got 0"):
        ard(Phi, y, 0.0)


def test_reweighted_argument_errors():
    Phi, y, _, sigma2 = random_problem()
    with pytest.raises(ValueError, match=r"`penalty` must be a finite number > 0, got 0"):
        weighted_lasso(Phi, y, 0.0)
    with pytest.raises(TypeError, match=r"`penalty` must be a number, got None"):
        weighted_lasso(Phi, y, None)
    with pytest.raises(ValueError, match=r"`reweighting` must be >= 0"):
        weighted_lasso(Phi, y, 1.0, -torch.ones(7))
    with pytest.raises(ValueError, match=r"`reweighting` must have shape \(7,\), got shape \(3,\)"):
        weighted_lasso(Phi, y, 1.0, torch.ones(3))
    with pytest.raises(ValueError, match=r"`init` must have shape \(7,\), got shape \(6,\)"):
        weighted_lasso(Phi, y, 1.0, init=torch.zeros(6))
    with pytest.raises(ValueError, match=r"`max_iter` must be an integer >= 1, got 0"):
        weighted_lasso(Phi, y, 1.0, max_iter=0)
    with pytest.raises(ValueError, match=r"`tol` must be a finite number > 0, got -1"):
        reweighted_l1(Phi, y, sigma2, tol=-1)
    with pytest.raises(ValueError, match=r"`max_reweights` must be an integer >= 1, got 0"):
        reweighted_l1(Phi, y, sigma2, max_reweights=0)
    with pytest.raises(ValueError, match=r"`prune_below` must be a finite number >= 0, got -0.5"):
        reweighted_l1(Phi, y, sigma2, prune_below=-0.5)
    zero_col = Phi.clone()
    zero_col[:, 4] = 0.0
    with pytest.raises(ValueError, match=r"`design` columns \[4\] are all zeros"):
        reweighted_l1(zero_col, y, sigma2)


def test_sparse_regression_argument_errors():
    with pytest.raises(ValueError, match=r"`n_nonzero` must be <= n_features = 5, got 6"):
        planted_regression(10, 5, 6, 0.1, 0)
    with pytest.raises(ValueError, match=r"`n_samples` must be an integer >= 1, got 0"):
        planted_regression(0, 5, 1, 0.1, 0)
    with pytest.raises(ValueError, match=r"`noise_std` must be >= 0, got -1"):
        planted_regression(10, 5, 1, -1.0, 0)
    with pytest.raises(ValueError, match=r"`seed` must be an integer >= 0, got -3"):
        planted_regression(10, 5, 1, 0.1, -3)
    with pytest.raises(ValueError, match=r"`correlation` must be in \[0, 1\), got 1.0"):
        planted_regression(10, 5, 1, 0.1, 0, correlated=True, correlation=1.0)
    with pytest.raises(ValueError, match=r"`estimated_support` must be a 1-D bool mask"):
        support_metrics(torch.zeros(2, 2), [0])
    with pytest.raises(TypeError, match=r"`true_support` must be a bool mask or integer indices"):
        support_metrics([0], torch.tensor([0.5]))
    with pytest.raises(ValueError, match=r"`true_support` indices must be >= 0, got -1"):
        support_metrics([0], [-1])
    problem = planted_regression(10, 5, 1, 0.1, 0)
    with pytest.raises(ValueError, match=r"`n_keep` must be <= D = 5, got 6"):
        magnitude_threshold(problem.design, problem.targets, 6)
    with pytest.raises(ValueError, match=r"`ridge` must be >= 0, got -1"):
        magnitude_threshold(problem.design, problem.targets, 2, ridge=-1.0)
    with pytest.raises(ValueError, match=r"`cv` must be <= N = 10, got 11"):
        lasso_cv(problem.design, problem.targets, cv=11)
    with pytest.raises(ValueError, match=r"`methods` entries must be in .*, got 'ridge'"):
        compare_sparse_methods([0.1], [0], methods=["ridge"])
    with pytest.raises(ValueError, match=r"`noise_levels` must be numbers > 0, got 0"):
        compare_sparse_methods([0], [0])
    with pytest.raises(ValueError, match=r"must each be non-empty, got 0, 1 and 4 entries"):
        compare_sparse_methods([], [0])
    with pytest.raises(ValueError, match=r"`variance_threshold` must be > 0, got 0"):
        compare_sparse_methods([0.1], [0], variance_threshold=0)
    with pytest.raises(ValueError, match=r"`records` must be non-empty"):
        summarize_records([])
