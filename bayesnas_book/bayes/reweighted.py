r"""ARD as iterative reweighted l1 (Wipf & Nagarajan 2008), plain and grouped.

Wipf & Nagarajan ("A new view of automatic relevance determination", NIPS 2007/2008) show that
the ARD cost ``y^T C^{-1} y + log|C|`` with ``C = sigma^2 I + Phi Gamma Phi^T`` is minimised by
iterating, from ``omega = 1``::

    w     <- argmin_w ||y - Phi w||^2 + 2 sigma^2 sum_i omega_i |w_i|      (weighted lasso)
    gamma <- |w_i| / omega_i
    omega <- sqrt( phi_i^T (sigma^2 I + Phi Gamma Phi^T)^{-1} phi_i )       (reweighting_weights)

The data term comes from ``y^T C^{-1} y = min_w ||y - Phi w||^2 / sigma^2 + w^T Gamma^{-1} w``,
the weights from the tangent plane of the concave ``log|C|`` in ``gamma``; minimising the bound
over ``gamma`` gives ``gamma_i = |w_i| / omega_i`` and the penalty ``2 omega_i |w_i|``. Each step
cannot increase the ARD cost, and every iterate is sparse (exact zeros from the lasso).

Grouped (reweighted group lasso): one ``gamma_g`` per group, penalty ``2 sigma^2 sum_g omega_g
||w_g||_2``, ``gamma_g = ||w_g||_2 / omega_g`` and ``omega_g^2 = trace(Phi_g^T C^{-1} Phi_g)``
(the slope of ``log|C|`` in ``gamma_g``; see
:func:`bayesnas_book.bayes.linear.reweighting_weights`). This is the shape of the BayesNAS cost,
``lambda * omega_g * ||s_g||_2``, with the network's curvature in place of ``Phi^T Phi``.

Inner solver: FISTA (Beck & Teboulle 2009) with the gradient-based adaptive restart of
O'Donoghue & Candes (2015) on ``f(w) = ||y - Phi w||^2 / 2 + lambd * sum_g omega_g ||w_g||_2``
(``lambd = sigma^2`` here, the W&N objective divided by 2), step ``1 / L`` with ``L`` the largest
eigenvalue of ``Phi^T Phi``. It stops when the proximal-gradient step
``|w_{k+1} - v_k|`` (``v_k`` the extrapolated point; zero exactly at a minimiser) is at most
``tol * max(max|w_{k+1}|, 1e-12)`` in every coordinate. The proximal map of the group penalty is
group soft-thresholding ``w_g * max(0, 1 - t lambd omega_g / ||w_g||_2)``, which is ordinary soft
thresholding for groups of one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from bayesnas_book.bayes.linear import (
    _as_tensor,
    _check_design,
    _check_noise_variance,
    _check_targets,
    _float_dtype,
    _group_sum,
    expand_group_values,
    group_index,
    reweighting_weights,
)

__all__ = [
    "LassoSolution",
    "ReweightedResult",
    "reweighted_l1",
    "weighted_lasso",
]


def _check_positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value}")
    return float(value)


def _check_count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class LassoSolution:
    """The result of :func:`weighted_lasso`.

    Attributes:
        coefficients: ``w``, shape ``(D,)``; exact zeros outside the selected support.
        n_iter: FISTA iterations used.
        converged: whether the stopping rule was met before ``max_iter``.
    """

    coefficients: torch.Tensor
    n_iter: int
    converged: bool


def _group_shrink(
    v: torch.Tensor,
    threshold: torch.Tensor,
    group_ids: torch.Tensor | None,
    n_groups: int,
) -> torch.Tensor:
    """Proximal map of ``sum_g threshold_g ||v_g||_2`` (soft thresholding when ungrouped)."""
    if group_ids is None:
        # prox of t|v|: sign(v) max(|v| - t, 0)                                   (D,)
        return torch.sign(v) * (v.abs() - threshold).clamp_min(0.0)
    norms = _group_sum(v**2, group_ids, n_groups).sqrt()  # ||v_g||_2                 (G,)
    scale = (1.0 - threshold / norms.clamp_min(torch.finfo(v.dtype).tiny)).clamp_min(0.0)
    return v * expand_group_values(scale, group_ids)


def _fista(
    gram: torch.Tensor,
    Phi_t_y: torch.Tensor,
    lipschitz: float,
    threshold_per_step: torch.Tensor,
    group_ids: torch.Tensor | None,
    n_groups: int,
    w0: torch.Tensor,
    tol: float,
    max_iter: int,
) -> tuple[torch.Tensor, int, bool]:
    """FISTA with adaptive restart on ``||y - Phi w||^2 / 2 + sum_g lambd omega_g ||w_g||``.

    ``threshold_per_step`` is ``lambd * omega / L``, shape ``(D,)`` (ungrouped) or ``(G,)``.
    """
    w = w0.clone()
    v = w0.clone()  # extrapolated point
    t = 1.0
    for k in range(1, max_iter + 1):
        grad = gram @ v - Phi_t_y  # grad of ||y - Phi v||^2 / 2 = Phi^T (Phi v - y)      (D,)
        w_next = _group_shrink(v - grad / lipschitz, threshold_per_step, group_ids, n_groups)
        step = w_next - v
        if float(step.abs().max()) <= tol * max(float(w_next.abs().max()), 1e-12):
            return w_next, k, True
        # adaptive restart when the momentum points uphill: (v - w_next)^T (w_next - w) > 0
        if float(torch.dot(-step, w_next - w)) > 0:
            t = 1.0
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        v = w_next + ((t - 1.0) / t_next) * (w_next - w)
        w, t = w_next, t_next
    return w, max_iter, False


def weighted_lasso(
    design: Any,
    targets: Any,
    penalty: float,
    reweighting: Any = None,
    *,
    groups: Any = None,
    init: Any = None,
    tol: float = 1e-9,
    max_iter: int = 20000,
) -> LassoSolution:
    """Solve ``min_w ||y - Phi w||^2 / 2 + penalty * sum_g omega_g ||w_g||_2`` by FISTA.

    Without groups this is the weighted lasso ``penalty * sum_i omega_i |w_i|``. The W&N step
    ``argmin ||y - Phi w||^2 + 2 sigma^2 sum omega |w|`` is ``penalty = sigma^2``.

    Args:
        design: ``Phi``, shape ``(N, D)``.
        targets: ``y``, shape ``(N,)``.
        penalty: ``lambd`` > 0.
        reweighting: ``omega`` >= 0, shape ``(D,)`` (``(G,)`` with groups); ``None`` means 1.
        groups: optional partition into groups penalised by their l2 norm (group lasso).
        init: warm start ``w``, shape ``(D,)``; ``None`` means zeros.
        tol: relative stopping tolerance > 0 (see the module docstring).
        max_iter: the most FISTA iterations (>= 1).

    Returns:
        :class:`LassoSolution`.

    Raises:
        ValueError: on shapes that do not match, NaN/inf entries, ``penalty <= 0``, negative
            ``reweighting``, an invalid partition, ``tol <= 0`` or ``max_iter < 1``.
    """
    penalty = _check_positive(penalty, "penalty")
    tol = _check_positive(tol, "tol")
    max_iter = _check_count(max_iter, "max_iter")
    dtype = _float_dtype(design, targets, reweighting, init)
    Phi = _check_design(design, dtype)
    y = _check_targets(targets, Phi.shape[0], dtype)
    ids, n_groups = group_index(groups, Phi.shape[1])
    omega = _check_reweighting(reweighting, n_groups, dtype)
    w0 = _check_init(init, Phi.shape[1], dtype)
    gram = Phi.T @ Phi
    lipschitz = float(torch.linalg.eigvalsh(gram)[-1])
    w, n_iter, converged = _fista(
        gram,
        Phi.T @ y,
        max(lipschitz, torch.finfo(dtype).tiny),
        penalty * omega / max(lipschitz, torch.finfo(dtype).tiny),
        None if groups is None else ids,
        n_groups,
        w0,
        tol,
        max_iter,
    )
    return LassoSolution(w, n_iter, converged)


def _check_reweighting(reweighting: Any, n_values: int, dtype: torch.dtype) -> torch.Tensor:
    if reweighting is None:
        return torch.ones(n_values, dtype=dtype)
    omega = _as_tensor(reweighting, "reweighting", dtype)
    if omega.ndim != 1 or omega.shape[0] != n_values:
        raise ValueError(
            f"`reweighting` must have shape ({n_values},), got shape {tuple(omega.shape)}"
        )
    if (omega < 0).any():
        raise ValueError(f"`reweighting` must be >= 0, got min {omega.min().item():.3g}")
    return omega


def _check_init(init: Any, n_features: int, dtype: torch.dtype) -> torch.Tensor:
    if init is None:
        return torch.zeros(n_features, dtype=dtype)
    w0 = _as_tensor(init, "init", dtype)
    if w0.shape != (n_features,):
        raise ValueError(f"`init` must have shape ({n_features},), got shape {tuple(w0.shape)}")
    return w0


@dataclass(frozen=True)
class ReweightedResult:
    """What :func:`reweighted_l1` found.

    Attributes:
        coefficients: ``w`` of the last weighted lasso, shape ``(D,)``; exact zeros off support.
        prior_variance: ``gamma = ||w_g|| / omega_g`` of the last step, shape ``(D,)`` / ``(G,)``.
        reweighting: ``omega`` of the last weighted lasso, shape ``(D,)`` / ``(G,)`` (pruned
            groups were given an infinite weight in its place).
        group_ids: the group of each coefficient, shape ``(D,)``.
        n_reweights: weighted lasso problems solved.
        converged: whether ``gamma`` stopped changing (see ``tol``) before ``max_reweights``.
        lasso_converged: whether every inner FISTA solve met its tolerance.
    """

    coefficients: torch.Tensor
    prior_variance: torch.Tensor
    reweighting: torch.Tensor
    group_ids: torch.Tensor
    n_reweights: int
    converged: bool
    lasso_converged: bool

    @property
    def support(self) -> torch.Tensor:
        """Coefficients that are not exactly zero: a bool tensor of shape ``(D,)``."""
        return self.coefficients != 0


def reweighted_l1(
    design: Any,
    targets: Any,
    noise_variance: float,
    *,
    groups: Any = None,
    prune_below: float = 0.0,
    max_reweights: int = 30,
    tol: float = 1e-6,
    lasso_tol: float = 1e-9,
    lasso_max_iter: int = 20000,
) -> ReweightedResult:
    """ARD by Wipf-Nagarajan iterative reweighted l1 (or group l2 with ``groups``).

    Starts from ``omega = 1`` (the first step is the plain lasso with penalty ``sigma^2``) and
    warm-starts each weighted lasso from the previous ``w``.

    .. note::
       A coefficient that a lasso step sets to zero gets ``gamma_i = 0``, but its weight
       ``omega_i`` stays finite, so a later step may bring it back; pruning here is not final
       as it is in :func:`bayesnas_book.bayes.ard.ard`, unless ``prune_below`` makes it so.

    Args:
        design: ``Phi``, shape ``(N, D)``; no column may be all zeros.
        targets: ``y``, shape ``(N,)``.
        noise_variance: ``sigma^2`` > 0 (the penalty of each lasso step, and the noise of ``C``).
        groups: optional partition into groups sharing one variance (group ids or index lists).
        prune_below: a (group) variance ``gamma_g`` that falls below this floor after a step is
            pruned for good: its weight becomes infinite, so it stays 0 in later steps and drops
            out of ``C``. Must be >= 0; 0 (the default) is the plain W&N iteration.
        max_reweights: the most weighted lasso problems to solve (>= 1).
        tol: stop when ``max_g |gamma_g' - gamma_g| <= tol * max_g gamma_g'`` between
            successive steps; > 0.
        lasso_tol: ``tol`` of each inner :func:`weighted_lasso` solve.
        lasso_max_iter: ``max_iter`` of each inner solve.

    Returns:
        :class:`ReweightedResult`.

    Raises:
        ValueError: on shapes that do not match, NaN/inf entries, ``noise_variance <= 0``, an
            invalid partition, an all-zero design column, ``prune_below < 0``, or a
            non-positive count or tolerance.
    """
    if (
        not (isinstance(prune_below, (int, float)) and math.isfinite(prune_below))
        or prune_below < 0
    ):
        raise ValueError(f"`prune_below` must be a finite number >= 0, got {prune_below}")
    max_reweights = _check_count(max_reweights, "max_reweights")
    lasso_max_iter = _check_count(lasso_max_iter, "lasso_max_iter")
    tol = _check_positive(tol, "tol")
    lasso_tol = _check_positive(lasso_tol, "lasso_tol")
    dtype = _float_dtype(design, targets)
    Phi = _check_design(design, dtype)
    y = _check_targets(targets, Phi.shape[0], dtype)
    sigma2 = _check_noise_variance(noise_variance)
    ids, n_groups = group_index(groups, Phi.shape[1])
    zero_columns = torch.nonzero((Phi == 0).all(dim=0)).flatten()
    if zero_columns.numel() > 0:
        raise ValueError(
            f"`design` columns {zero_columns.tolist()} are all zeros; their weight omega would be "
            "0 and gamma = |w| / omega undefined: drop them first"
        )
    grouped = groups is not None
    gram, Phi_t_y = Phi.T @ Phi, Phi.T @ y
    lipschitz = float(torch.linalg.eigvalsh(gram)[-1])

    omega = torch.ones(n_groups, dtype=dtype)
    w = torch.zeros(Phi.shape[1], dtype=dtype)
    gamma = torch.zeros(n_groups, dtype=dtype)
    pruned = torch.zeros(n_groups, dtype=torch.bool)
    converged = False
    lasso_converged = True
    n_reweights = 0
    for n_reweights in range(1, max_reweights + 1):  # noqa: B007 (read after the loop)
        # w <- argmin ||y - Phi w||^2 / 2 + sigma^2 sum_g omega_g ||w_g||
        w_next, _, ok = _fista(
            gram,
            Phi_t_y,
            lipschitz,
            # a pruned group has an infinite weight: it is thresholded to 0
            sigma2 * torch.where(pruned, math.inf, omega) / lipschitz,
            ids if grouped else None,
            n_groups,
            w,
            lasso_tol,
            lasso_max_iter,
        )
        lasso_converged = lasso_converged and ok
        # gamma_g <- ||w_g||_2 / omega_g
        gamma_next = _group_sum(w_next**2, ids, n_groups).sqrt() / omega
        pruned = pruned | (gamma_next < prune_below)
        gamma_next = torch.where(pruned, 0.0, gamma_next)
        w = torch.where(expand_group_values(pruned, ids), 0.0, w_next)
        # stop when gamma settles: w is insensitive to the variances of well-determined
        # coefficients, so it settles long before gamma does
        change = float((gamma_next - gamma).abs().max())
        gamma = gamma_next
        if change <= tol * float(gamma.max()):
            converged = True
            break
        if n_reweights < max_reweights:
            # omega_g <- sqrt(trace(Phi_g^T (sigma^2 I + Phi Gamma Phi^T)^{-1} Phi_g))
            omega = reweighting_weights(Phi, gamma, sigma2, groups=ids if grouped else None)
    return ReweightedResult(
        coefficients=w,
        prior_variance=gamma,
        reweighting=omega,
        group_ids=ids,
        n_reweights=n_reweights,
        converged=converged,
        lasso_converged=lasso_converged,
    )
