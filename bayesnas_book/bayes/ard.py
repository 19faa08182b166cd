r"""ARD by evidence maximisation on the linear-Gaussian model (MacKay and EM updates).

Maximise ``log N(y | 0, sigma^2 I + Phi Gamma Phi^T)`` over the prior variances ``gamma`` (and
optionally the noise variance ``sigma^2``), alternating the posterior of
:func:`bayesnas_book.bayes.linear.posterior` with one of two fixed-point updates. For a group
``g`` of ``|g|`` coefficients sharing ``gamma_g`` (a single coefficient is a group of one)::

    g_i     = 1 - Sigma_ii / gamma_i                     (how well w_i is determined, in [0, 1])
    EM:     gamma_g = (||mu_g||^2 + trace Sigma_gg) / |g|
    MacKay: gamma_g = ||mu_g||^2 / sum_{i in g} g_i
    noise, EM:     sigma^2 = (||y - Phi mu||^2 + sigma^2 sum_i g_i) / N
    noise, MacKay: sigma^2 = ||y - Phi mu||^2 / (N - sum_i g_i)

EM (Tipping 2001; Wipf & Rao 2004) never decreases the evidence: each step is an E step (the
posterior) and an M step (the update maximises the expected complete-data log-likelihood).
MacKay's update (MacKay 1992) has no such guarantee but usually converges in far fewer steps;
irrelevant variances fall geometrically instead of like ``1/t``.

MacKay's update is computed as ``gamma_g ||Q_g||^2 / sum_{i in g} S_i`` with
``S_i = phi_i^T C^{-1} phi_i`` and ``Q_i = phi_i^T C^{-1} y`` (``mu_i = gamma_i Q_i``,
``g_i = gamma_i S_i``), which stays accurate when a variance is tiny; the direct ratio
``mu_i^2 / (1 - Sigma_ii / gamma_i)`` divides two round-off-sized numbers there and can explode.

A variance that falls below ``prune_below`` is set to exactly 0: the coefficient is pinned at
0 (its posterior mean and variance are 0) and stays pruned, since both updates map 0 to 0.

.. note::
   Pruning is not part of EM: zeroing a small positive variance can lower the evidence a little,
   so the trace is guaranteed monotone only with ``prune_below=0``. EM drives irrelevant
   variances to 0 only like ``1/t``, and at the exact optimum a noise-only coefficient keeps a
   tiny variance whenever ``Q_i^2 > S_i`` (Tipping & Faul 2003); a floor is how ARD ends with
   an exactly sparse answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from bayesnas_book.bayes.linear import (
    _check_design,
    _check_noise_variance,
    _check_prior_variance,
    _check_targets,
    _float_dtype,
    _group_sum,
    _log_evidence_core,
    _posterior_core,
    _sparsity_quality,
    expand_group_values,
    group_index,
)

__all__ = ["ARDResult", "ard"]

_UPDATES = ("em", "mackay")


@dataclass(frozen=True)
class ARDResult:
    """What :func:`ard` found.

    Attributes:
        prior_variance: ``gamma`` at the end, shape ``(D,)`` (``(G,)`` with groups); pruned
            entries are exactly 0.
        posterior_mean: ``mu`` at the final ``gamma``, shape ``(D,)``.
        posterior_covariance: ``Sigma`` at the final ``gamma``, shape ``(D, D)``.
        noise_variance: ``sigma^2`` at the end (the input value unless it was learned).
        log_evidence: the log evidence at the start and after every update, shape ``(T + 1,)``.
        group_ids: the group of each coefficient, shape ``(D,)`` (``arange(D)`` without groups).
        n_iter: ``T``, the number of updates made.
        converged: whether the stopping rule was met before ``max_iter``.
    """

    prior_variance: torch.Tensor
    posterior_mean: torch.Tensor
    posterior_covariance: torch.Tensor
    noise_variance: float
    log_evidence: torch.Tensor
    group_ids: torch.Tensor
    n_iter: int
    converged: bool

    @property
    def support(self) -> torch.Tensor:
        """Coefficients whose (group) variance was not pruned: a bool tensor of shape ``(D,)``."""
        return expand_group_values(self.prior_variance, self.group_ids) > 0


def ard(
    design: Any,
    targets: Any,
    noise_variance: float,
    *,
    groups: Any = None,
    update: str = "em",
    learn_noise: bool = False,
    init_prior_variance: Any = 1.0,
    prune_below: float = 1e-6,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> ARDResult:
    """Fit ARD prior variances by maximising the evidence with EM or MacKay updates.

    Args:
        design: ``Phi``, shape ``(N, D)``.
        targets: ``y``, shape ``(N,)``.
        noise_variance: ``sigma^2`` > 0; the fixed noise variance, or the starting value when
            ``learn_noise`` is true.
        groups: optional partition of the coefficients into groups sharing one variance
            (group ids or index lists, see :func:`bayesnas_book.bayes.linear.group_index`).
        update: ``"em"`` (evidence never decreases) or ``"mackay"`` (faster).
        learn_noise: also update ``sigma^2`` (by the same kind of update).
        init_prior_variance: starting ``gamma`` > 0: one number, or shape ``(D,)`` / ``(G,)``.
        prune_below: variances below this floor are set to 0 after each update (>= 0; 0
            disables pruning). It is an absolute floor in units of ``w^2``, like
            scikit-learn's ``ARDRegression(threshold_lambda=1e6)`` for the default 1e-6.
        max_iter: the most updates to make (>= 1).
        tol: stop when ``max_g |gamma_g' - gamma_g| <= tol * max_g gamma_g'`` (and the relative
            change of ``sigma^2`` is below ``tol`` when it is learned); > 0. MacKay's ratio
            carries a relative round-off near 1e-10, so much smaller values may not be met.

    Returns:
        :class:`ARDResult`.

    Raises:
        ValueError: on shapes that do not match, NaN/inf entries, ``noise_variance <= 0``, a
            non-positive ``init_prior_variance``, an invalid partition, an unknown ``update``,
            ``prune_below < 0``, ``max_iter < 1`` or ``tol <= 0``.
    """
    if update not in _UPDATES:
        raise ValueError(f"`update` must be one of {_UPDATES}, got {update!r}")
    if (
        not (isinstance(prune_below, (int, float)) and math.isfinite(prune_below))
        or prune_below < 0
    ):
        raise ValueError(f"`prune_below` must be a finite number >= 0, got {prune_below}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"`max_iter` must be an integer >= 1, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol)) or tol <= 0:
        raise ValueError(f"`tol` must be a finite number > 0, got {tol}")
    dtype = _float_dtype(design, targets, init_prior_variance)
    Phi = _check_design(design, dtype)
    y = _check_targets(targets, Phi.shape[0], dtype)
    sigma2 = _check_noise_variance(noise_variance)
    group_ids, n_groups = group_index(groups, Phi.shape[1])
    try:
        gamma = _check_prior_variance(init_prior_variance, n_groups, dtype, positive=True)
    except ValueError as err:
        raise ValueError(str(err).replace("`prior_variance`", "`init_prior_variance`")) from None

    n_samples = Phi.shape[0]
    group_size = torch.bincount(group_ids, minlength=n_groups).to(dtype)  # |g|      (G,)
    gram, Phi_t_y, y_sq = Phi.T @ Phi, Phi.T @ y, y @ y  # (D, D), (D,), ()

    def fit(gamma: torch.Tensor, sigma2: float) -> tuple[torch.Tensor, ...]:
        mu, Sigma, logdet_B = _posterior_core(
            gram, Phi_t_y, expand_group_values(gamma, group_ids), sigma2
        )
        logev = _log_evidence_core(y_sq, Phi_t_y, mu, logdet_B, sigma2, n_samples)
        return mu, Sigma, logev

    mu, Sigma, logev = fit(gamma, sigma2)
    trace = [logev]
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is read after the loop)
        gamma_d = expand_group_values(gamma, group_ids)  # (D,)
        # S_i = phi_i^T C^{-1} phi_i, Q_i = phi_i^T C^{-1} y; mu_i = gamma_i Q_i, g_i = gamma_i S_i
        S, Q = _sparsity_quality(gram, Phi_t_y, mu, Sigma, sigma2)
        g = gamma_d * S  # g_i = 1 - Sigma_ii / gamma_i                                (D,)
        if update == "em":
            # gamma_g = (||mu_g||^2 + trace Sigma_gg) / |g|
            mu_sq = _group_sum(mu**2, group_ids, n_groups)
            new_gamma = (
                mu_sq + _group_sum(torch.diagonal(Sigma), group_ids, n_groups)
            ) / group_size
        else:
            # gamma_g = ||mu_g||^2 / sum_{i in g} g_i = gamma_g ||Q_g||^2 / sum_{i in g} S_i
            S_sum = _group_sum(S, group_ids, n_groups).clamp_min(torch.finfo(dtype).tiny)
            new_gamma = gamma * _group_sum(Q**2, group_ids, n_groups) / S_sum
        new_gamma = torch.where(new_gamma < prune_below, torch.zeros_like(new_gamma), new_gamma)
        new_sigma2 = sigma2
        if learn_noise:
            residual_sq = float(((y - Phi @ mu) ** 2).sum())  # ||y - Phi mu||^2
            g_total = float(g.sum())
            if update == "em":
                new_sigma2 = (residual_sq + sigma2 * g_total) / n_samples
            else:
                new_sigma2 = residual_sq / max(n_samples - g_total, 1e-12)
            # A perfect fit would make sigma^2 zero; keep it a positive variance.
            new_sigma2 = max(new_sigma2, 1e-12 * float(y_sq) / n_samples, 1e-300)
        change = float((new_gamma - gamma).abs().max())
        scale = float(new_gamma.max())
        noise_change = abs(new_sigma2 - sigma2) / sigma2
        gamma, sigma2 = new_gamma, new_sigma2
        mu, Sigma, logev = fit(gamma, sigma2)
        trace.append(logev)
        if change <= tol * scale and noise_change <= tol:
            converged = True
            break
    return ARDResult(
        prior_variance=gamma,
        posterior_mean=mu,
        posterior_covariance=Sigma,
        noise_variance=sigma2,
        log_evidence=torch.stack(trace),
        group_ids=group_ids,
        n_iter=n_iter,
        converged=converged,
    )
