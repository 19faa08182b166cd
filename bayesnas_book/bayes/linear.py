r"""The linear-Gaussian model with an ARD prior: posterior, evidence and reweighting weights.

This is the teaching base of BayesNAS (Zhou et al., ICML 2019): the switches of the supernet get
the same automatic-relevance-determination (ARD) prior as the coefficients of a linear model, and
the architecture update is the Wipf-Nagarajan reweighted-l1 form of ARD with the design-matrix
product replaced by the curvature of the network loss. Here is the linear model itself.

Model (one variance per coefficient, or one per group of coefficients)::

    y = Phi w + e,          e   ~ N(0, sigma^2 I)
    w_i ~ N(0, gamma_i)     (ARD prior, Gamma = diag(gamma))

Posterior and evidence (standard Gaussian algebra)::

    Sigma = (Phi^T Phi / sigma^2 + Gamma^{-1})^{-1}          posterior covariance
    mu    = Sigma Phi^T y / sigma^2                          posterior mean
    C     = sigma^2 I + Phi Gamma Phi^T                      marginal covariance of y
    log p(y | gamma, sigma^2) = log N(y | 0, C)              log evidence
    d log p / d gamma_i = ( (phi_i^T C^{-1} y)^2 - phi_i^T C^{-1} phi_i ) / 2

Reweighting weights of the Wipf-Nagarajan iteration (``omega``)::

    omega_i^2 = phi_i^T C^{-1} phi_i = [Gamma^{-1} - Gamma^{-1} Sigma Gamma^{-1}]_ii
              = 1 / gamma_i - Sigma_ii / gamma_i^2

The second line is the matrix inversion lemma (``Sigma = Gamma - Gamma Phi^T C^{-1} Phi Gamma``);
it is the form BayesNAS uses, with ``Phi^T Phi / sigma^2`` replaced by a network curvature.

Notation table (one identifier per symbol, used in every ``bayesnas_book.bayes`` linear module):

=====================  ==========================  ==========================
symbol                 public argument             local name
=====================  ==========================  ==========================
Phi  (N, D)            ``design``                  ``Phi``
y    (N,)              ``targets``                 ``y``
w    (D,)              ``coefficients``            ``w``
gamma (D,) or (G,)     ``prior_variance``          ``gamma``
sigma^2                ``noise_variance``          ``sigma2``
mu   (D,)              ``posterior_mean``          ``mu``
Sigma (D, D)           ``posterior_covariance``    ``Sigma``
diag Sigma (D,)        ``posterior_variance``      ``Sigma_diag``
C    (N, N)            marginal covariance         ``C``
omega (D,) or (G,)     ``reweighting``             ``omega``
groups (D,)            ``groups`` (group ids)      ``group_ids``
=====================  ==========================  ==========================

``N`` is the number of samples, ``D`` of coefficients, ``G`` of groups. Everything is computed
in the floating dtype of the inputs, float64 when they are not floating tensors.

Groups: coefficients may be partitioned into ``G`` groups that share one variance,
``w_g ~ N(0, gamma_g I)``. A partition is given either as ``D`` group ids (integers
``0 .. G-1``, each used at least once) or as ``G`` lists of coefficient indices (every coefficient
in exactly one list). With groups, ``omega_g^2 = trace(Phi_g^T C^{-1} Phi_g)`` (see
:func:`reweighting_weights`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

__all__ = [
    "LinearPosterior",
    "expand_group_values",
    "group_index",
    "log_evidence",
    "log_evidence_gradient",
    "marginal_covariance",
    "posterior",
    "reweighting_weights",
    "reweighting_weights_from_posterior",
]


# ----------------------------------------------------------------------------------- helpers
def _float_dtype(*values: Any) -> torch.dtype:
    """The common floating dtype of the tensor inputs; float64 when none is a floating tensor."""
    dtypes = [v.dtype for v in values if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not dtypes:
        return torch.float64
    dtype = dtypes[0]
    for other in dtypes[1:]:
        dtype = torch.promote_types(dtype, other)
    return dtype


def _as_tensor(value: Any, name: str, dtype: torch.dtype) -> torch.Tensor:
    """Convert ``value`` to a tensor of ``dtype`` and refuse NaN or infinite entries."""
    try:
        tensor = torch.as_tensor(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"`{name}` must be a tensor or array of numbers, got {value!r}") from err
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"`{name}` must contain only finite numbers, found {bad} NaN/inf entries")
    return tensor


def _check_design(design: Any, dtype: torch.dtype) -> torch.Tensor:
    """The design matrix Phi as a finite ``(N, D)`` tensor with ``N, D >= 1``."""
    Phi = _as_tensor(design, "design", dtype)
    if Phi.ndim != 2 or Phi.shape[0] == 0 or Phi.shape[1] == 0:
        raise ValueError(
            f"`design` must be a non-empty matrix of shape (N, D), got shape {tuple(Phi.shape)}"
        )
    return Phi


def _check_targets(targets: Any, n_samples: int, dtype: torch.dtype) -> torch.Tensor:
    """The targets y as a finite ``(N,)`` tensor matching the design's rows."""
    y = _as_tensor(targets, "targets", dtype)
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise ValueError(
            f"`targets` must have shape (N,) = ({n_samples},) to match `design`, "
            f"got shape {tuple(y.shape)}"
        )
    return y


def _check_noise_variance(noise_variance: Any) -> float:
    """sigma^2 as a positive finite float."""
    if isinstance(noise_variance, torch.Tensor):
        if noise_variance.numel() != 1:
            raise ValueError(
                f"`noise_variance` must be a single number, got shape {tuple(noise_variance.shape)}"
            )
        noise_variance = noise_variance.item()
    if isinstance(noise_variance, bool) or not isinstance(noise_variance, (int, float)):
        raise TypeError(f"`noise_variance` must be a number, got {noise_variance!r}")
    if not math.isfinite(noise_variance) or noise_variance <= 0:
        raise ValueError(f"`noise_variance` must be a finite number > 0, got {noise_variance}")
    return float(noise_variance)


def _check_prior_variance(
    prior_variance: Any, n_values: int, dtype: torch.dtype, *, positive: bool = False
) -> torch.Tensor:
    """gamma as a finite ``(n_values,)`` tensor with entries >= 0 (> 0 if ``positive``).

    A single number is broadcast to all ``n_values`` entries.
    """
    gamma = _as_tensor(prior_variance, "prior_variance", dtype)
    if gamma.ndim == 0:
        gamma = gamma.expand(n_values).clone()
    if gamma.ndim != 1 or gamma.shape[0] != n_values:
        raise ValueError(
            f"`prior_variance` must have shape ({n_values},) (one variance per coefficient or "
            f"group), got shape {tuple(gamma.shape)}"
        )
    if positive and (gamma <= 0).any():
        raise ValueError(
            f"`prior_variance` must be > 0 everywhere here, got min {gamma.min().item():.3g}"
        )
    if (gamma < 0).any():
        raise ValueError(f"`prior_variance` must be >= 0, got min {gamma.min().item():.3g}")
    return gamma


def group_index(groups: Any, n_features: int) -> tuple[torch.Tensor, int]:
    """Validate a partition of ``D`` coefficients into groups and return their group ids.

    Args:
        groups: either ``D`` integer group ids (a sequence or a 1-D integer tensor), with ids
            ``0 .. G-1`` each used at least once; or ``G`` sequences of coefficient indices
            that together hold every index ``0 .. D-1`` exactly once. ``None`` means one
            group per coefficient.
        n_features: ``D``, the number of coefficients.

    Returns:
        ``(group_ids, G)``: a ``(D,)`` int64 tensor with the group of each coefficient, and the
        number of groups.

    Raises:
        ValueError: if a group is empty, a coefficient is in no group or in two groups, an id
            is negative, or the number of ids is not ``D``.
        TypeError: if the ids or indices are not integers.
    """
    if n_features < 1:
        raise ValueError(f"`n_features` must be >= 1, got {n_features}")
    if groups is None:
        return torch.arange(n_features), n_features
    if isinstance(groups, Sequence) and len(groups) > 0 and not isinstance(groups[0], int):
        if all(isinstance(g, (Sequence, torch.Tensor)) for g in groups):
            return _group_index_from_lists(groups, n_features)
    ids = torch.as_tensor(groups)
    if ids.is_floating_point() or ids.dtype == torch.bool or ids.is_complex():
        raise TypeError(f"`groups` must hold integer group ids, got dtype {ids.dtype}")
    ids = ids.to(torch.int64)
    if ids.ndim != 1 or ids.shape[0] != n_features:
        raise ValueError(
            f"`groups` must give one group id per coefficient, shape ({n_features},), "
            f"got shape {tuple(ids.shape)}"
        )
    if (ids < 0).any():
        raise ValueError(f"`groups` ids must be >= 0, got {int(ids.min())}")
    n_groups = int(ids.max()) + 1
    counts = torch.bincount(ids, minlength=n_groups)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(
            f"`groups` ids must run over 0 .. G-1 with no empty group; group(s) {missing} "
            f"are empty (G = {n_groups})"
        )
    return ids, n_groups


def _group_index_from_lists(groups: Sequence[Any], n_features: int) -> tuple[torch.Tensor, int]:
    """Group ids from ``G`` lists of coefficient indices (see :func:`group_index`)."""
    ids = torch.full((n_features,), -1, dtype=torch.int64)
    for g, members in enumerate(groups):
        members = torch.as_tensor(members).flatten()
        if members.numel() == 0:
            raise ValueError(f"`groups[{g}]` is empty; every group needs at least one coefficient")
        if members.is_floating_point() or members.dtype == torch.bool:
            raise TypeError(f"`groups[{g}]` must hold integer indices, got dtype {members.dtype}")
        members = members.to(torch.int64)
        if (members < 0).any() or (members >= n_features).any():
            raise ValueError(
                f"`groups[{g}]` indices must lie in 0 .. {n_features - 1}, got {members.tolist()}"
            )
        taken = members[ids[members] >= 0]
        if taken.numel() > 0 or members.unique().numel() != members.numel():
            dup = taken.tolist() or members.tolist()
            raise ValueError(
                f"`groups`: coefficient(s) {dup} appear in more than one group (or twice in "
                f"group {g}); each coefficient must be in exactly one group"
            )
        ids[members] = g
    if (ids < 0).any():
        missing = torch.nonzero(ids < 0).flatten().tolist()
        raise ValueError(
            f"`groups`: coefficient(s) {missing} are in no group; each coefficient must be in "
            "exactly one group"
        )
    return ids, len(groups)


def expand_group_values(values: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Give every coefficient the value of its group: ``(G,) -> (D,)``, ``out[i] = v[g(i)]``."""
    return values[group_ids]


def _group_sum(values: torch.Tensor, group_ids: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Sum ``(D,)`` per-coefficient values into ``(G,)`` per-group totals."""
    return torch.zeros(n_groups, dtype=values.dtype).index_add_(0, group_ids, values)


def _prepare(
    design: Any,
    targets: Any,
    prior_variance: Any,
    noise_variance: Any,
    groups: Any = None,
    *,
    positive: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, float, torch.Tensor, int]:
    """Validate the common inputs: ``(Phi, y or None, gamma per group, sigma2, group_ids, G)``."""
    dtype = _float_dtype(design, targets, prior_variance)
    Phi = _check_design(design, dtype)
    y = None if targets is None else _check_targets(targets, Phi.shape[0], dtype)
    group_ids, n_groups = group_index(groups, Phi.shape[1])
    gamma = _check_prior_variance(prior_variance, n_groups, dtype, positive=positive)
    sigma2 = _check_noise_variance(noise_variance)
    return Phi, y, gamma, sigma2, group_ids, n_groups


# --------------------------------------------------------------------------------- the model
class LinearPosterior(NamedTuple):
    """The Gaussian posterior ``N(w | mean, covariance)`` of the coefficients.

    Attributes:
        mean: ``mu``, shape ``(D,)``.
        covariance: ``Sigma``, shape ``(D, D)``; rows and columns of coefficients whose prior
            variance is 0 are 0 (the coefficient is pinned at 0).
    """

    mean: torch.Tensor
    covariance: torch.Tensor


def _posterior_core(
    gram: torch.Tensor, design_t_targets: torch.Tensor, gamma: torch.Tensor, sigma2: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Posterior from the sufficient statistics, stable for any ``gamma >= 0``.

    Uses the symmetric scaling ``Sigma = Gamma^{1/2} B^{-1} Gamma^{1/2}`` with
    ``B = I + Gamma^{1/2} Phi^T Phi Gamma^{1/2} / sigma^2`` (eigenvalues >= 1, so its Cholesky
    factor is well conditioned even when gamma spans many orders of magnitude or has zeros).

    Args:
        gram: ``Phi^T Phi``, shape ``(D, D)``.
        design_t_targets: ``Phi^T y``, shape ``(D,)``.
        gamma: per-coefficient prior variances, shape ``(D,)``, all >= 0.
        sigma2: noise variance > 0.

    Returns:
        ``(mu, Sigma, logdet_B)``: shapes ``(D,)``, ``(D, D)`` and a scalar.
    """
    root = gamma.sqrt()
    # B = I + Gamma^{1/2} Phi^T Phi Gamma^{1/2} / sigma^2                       (D, D)
    B = root[:, None] * gram * root[None, :] / sigma2
    B.diagonal().add_(1.0)
    L = torch.linalg.cholesky(B)
    B_inv = torch.cholesky_inverse(L)
    # Sigma = Gamma^{1/2} B^{-1} Gamma^{1/2}                                     (D, D)
    Sigma = root[:, None] * B_inv * root[None, :]
    # mu = Sigma Phi^T y / sigma^2                                               (D,)
    mu = Sigma @ design_t_targets / sigma2
    logdet_B = 2.0 * torch.log(torch.diagonal(L)).sum()
    return mu, Sigma, logdet_B


def _sparsity_quality(
    gram: torch.Tensor,
    design_t_targets: torch.Tensor,
    mu: torch.Tensor,
    Sigma: torch.Tensor,
    sigma2: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``S_i = phi_i^T C^{-1} phi_i`` and ``Q_i = phi_i^T C^{-1} y`` from the posterior.

    By Woodbury, ``C^{-1} = I / sigma^2 - Phi Sigma Phi^T / sigma^4``, so
    ``S = diag(Phi^T Phi) / sigma^2 - diag(Phi^T Phi Sigma Phi^T Phi) / sigma^4`` and
    ``Q = Phi^T (y - Phi mu) / sigma^2``. Then ``mu_i = gamma_i Q_i`` and
    ``g_i = 1 - Sigma_ii / gamma_i = gamma_i S_i``: unlike ``1 - Sigma_ii / gamma_i`` these keep
    their relative accuracy when ``gamma_i`` is tiny.

    Returns:
        ``(S, Q)``, each of shape ``(D,)``.
    """
    G = gram
    S = torch.diagonal(G) / sigma2 - ((G @ Sigma) * G).sum(dim=1) / sigma2**2  # (D,)
    Q = (design_t_targets - G @ mu) / sigma2  # (D,)
    return S.clamp_min(0.0), Q


def _log_evidence_core(
    targets_sq: torch.Tensor,
    design_t_targets: torch.Tensor,
    mu: torch.Tensor,
    logdet_B: torch.Tensor,
    sigma2: float,
    n_samples: int,
) -> torch.Tensor:
    """``log N(y | 0, C)`` from the posterior (determinant lemma and Woodbury identity).

    ``log|C| = N log sigma^2 + log|B|`` and ``y^T C^{-1} y = (y^T y - y^T Phi mu) / sigma^2``.
    """
    quad = (targets_sq - design_t_targets @ mu) / sigma2  # y^T C^{-1} y
    logdet_C = n_samples * math.log(sigma2) + logdet_B  # log|C|
    return -0.5 * (n_samples * math.log(2.0 * math.pi) + logdet_C + quad)


def posterior(
    design: Any, targets: Any, prior_variance: Any, noise_variance: float, groups: Any = None
) -> LinearPosterior:
    """Posterior of the coefficients of ``y = Phi w + e`` under the ARD prior.

    ``Sigma = (Phi^T Phi / sigma^2 + Gamma^{-1})^{-1}`` and ``mu = Sigma Phi^T y / sigma^2``,
    computed as ``Gamma^{1/2} (I + Gamma^{1/2} Phi^T Phi Gamma^{1/2} / sigma^2)^{-1}
    Gamma^{1/2}``, which equals the textbook form for ``gamma > 0`` and is its limit (the
    coefficient pinned at 0) where ``gamma_i = 0``.

    Args:
        design: ``Phi``, shape ``(N, D)``.
        targets: ``y``, shape ``(N,)``.
        prior_variance: ``gamma``, shape ``(D,)``, or ``(G,)`` with ``groups``, or one number;
            entries >= 0.
        noise_variance: ``sigma^2`` > 0.
        groups: optional partition of the coefficients (see :func:`group_index`).

    Returns:
        :class:`LinearPosterior` with ``mean`` ``(D,)`` and ``covariance`` ``(D, D)``.

    Raises:
        ValueError: on shapes that do not match, NaN/inf entries, ``noise_variance <= 0``,
            negative ``prior_variance`` or an invalid partition.
    """
    Phi, y, gamma, sigma2, group_ids, _ = _prepare(
        design, targets, prior_variance, noise_variance, groups
    )
    mu, Sigma, _ = _posterior_core(
        Phi.T @ Phi, Phi.T @ y, expand_group_values(gamma, group_ids), sigma2
    )
    return LinearPosterior(mu, Sigma)


def marginal_covariance(
    design: Any, prior_variance: Any, noise_variance: float, groups: Any = None
) -> torch.Tensor:
    """``C = sigma^2 I + Phi Gamma Phi^T``, the covariance of ``y`` with ``w`` integrated out.

    Args:
        design: ``Phi``, shape ``(N, D)``.
        prior_variance: ``gamma``, shape ``(D,)`` or ``(G,)`` with ``groups``; entries >= 0.
        noise_variance: ``sigma^2`` > 0.
        groups: optional partition of the coefficients (see :func:`group_index`).

    Returns:
        ``C``, shape ``(N, N)``.

    Raises:
        ValueError: as :func:`posterior`.
    """
    Phi, _, gamma, sigma2, group_ids, _ = _prepare(
        design, None, prior_variance, noise_variance, groups
    )
    gamma_d = expand_group_values(gamma, group_ids)
    C = (Phi * gamma_d) @ Phi.T  # Phi Gamma Phi^T                               (N, N)
    C.diagonal().add_(sigma2)
    return C


def log_evidence(
    design: Any, targets: Any, prior_variance: Any, noise_variance: float, groups: Any = None
) -> torch.Tensor:
    """Log evidence ``log p(y | gamma, sigma^2) = log N(y | 0, sigma^2 I + Phi Gamma Phi^T)``.

    Args:
        design: ``Phi``, shape ``(N, D)``.
        targets: ``y``, shape ``(N,)``.
        prior_variance: ``gamma``, shape ``(D,)`` or ``(G,)`` with ``groups``; entries >= 0.
        noise_variance: ``sigma^2`` > 0.
        groups: optional partition of the coefficients (see :func:`group_index`).

    Returns:
        A 0-d tensor.

    Raises:
        ValueError: as :func:`posterior`.
    """
    Phi, y, gamma, sigma2, group_ids, _ = _prepare(
        design, targets, prior_variance, noise_variance, groups
    )
    Phi_t_y = Phi.T @ y
    mu, _, logdet_B = _posterior_core(
        Phi.T @ Phi, Phi_t_y, expand_group_values(gamma, group_ids), sigma2
    )
    return _log_evidence_core(y @ y, Phi_t_y, mu, logdet_B, sigma2, Phi.shape[0])


def _solve_marginal(
    Phi: torch.Tensor, gamma_d: torch.Tensor, sigma2: float, rhs: torch.Tensor
) -> torch.Tensor:
    """``C^{-1} rhs`` with ``C = sigma^2 I + Phi Gamma Phi^T``, by Cholesky; ``rhs`` ``(N, K)``."""
    C = (Phi * gamma_d) @ Phi.T  # (N, N)
    C.diagonal().add_(sigma2)
    return torch.cholesky_solve(rhs, torch.linalg.cholesky(C))


def log_evidence_gradient(
    design: Any, targets: Any, prior_variance: Any, noise_variance: float, groups: Any = None
) -> torch.Tensor:
    """Gradient of :func:`log_evidence` with respect to the prior variances.

    ``d log p / d gamma_g = ( ||Phi_g^T C^{-1} y||^2 - trace(Phi_g^T C^{-1} Phi_g) ) / 2``, valid
    for ``gamma_g >= 0`` (one-sided at 0). For ``gamma_g > 0`` it equals
    ``sum_{i in g} ((mu_i^2 + Sigma_ii) / gamma_g^2 - 1 / gamma_g) / 2``, which vanishes exactly
    at the EM fixed point ``gamma_g = (||mu_g||^2 + trace Sigma_gg) / |g|``. The trace term is
    ``omega_g^2`` of :func:`reweighting_weights`.

    Args:
        design: ``Phi``, shape ``(N, D)``.
        targets: ``y``, shape ``(N,)``.
        prior_variance: ``gamma``, shape ``(D,)`` or ``(G,)`` with ``groups``; entries >= 0.
        noise_variance: ``sigma^2`` > 0.
        groups: optional partition of the coefficients (see :func:`group_index`).

    Returns:
        Shape ``(D,)``, or ``(G,)`` with ``groups``.

    Raises:
        ValueError: as :func:`posterior`.
    """
    Phi, y, gamma, sigma2, group_ids, n_groups = _prepare(
        design, targets, prior_variance, noise_variance, groups
    )
    gamma_d = expand_group_values(gamma, group_ids)
    solved = _solve_marginal(Phi, gamma_d, sigma2, torch.cat([y[:, None], Phi], dim=1))
    C_inv_y, C_inv_Phi = solved[:, 0], solved[:, 1:]  # (N,), (N, D)
    q = Phi.T @ C_inv_y  # q_i = phi_i^T C^{-1} y                                   (D,)
    s = (Phi * C_inv_Phi).sum(dim=0)  # s_i = phi_i^T C^{-1} phi_i                 (D,)
    return 0.5 * _group_sum(q**2 - s, group_ids, n_groups)


def reweighting_weights(
    design: Any, prior_variance: Any, noise_variance: float, groups: Any = None
) -> torch.Tensor:
    r"""Wipf-Nagarajan reweighting weights ``omega`` from the current prior variances.

    Per coefficient (Wipf & Nagarajan 2008, "A new view of automatic relevance determination")::

        omega_i = sqrt( phi_i^T (sigma^2 I + Phi Gamma Phi^T)^{-1} phi_i )

    By the matrix inversion lemma, ``Sigma = Gamma - Gamma Phi^T C^{-1} Phi Gamma``, so
    ``Phi^T C^{-1} Phi = Gamma^{-1} - Gamma^{-1} Sigma Gamma^{-1}`` and, where ``gamma_i > 0``::

        omega_i^2 = [Gamma^{-1} - Gamma^{-1} Sigma Gamma^{-1}]_ii = 1/gamma_i - Sigma_ii/gamma_i^2

    with ``Sigma`` the posterior covariance (:func:`posterior`). This second form is BayesNAS's
    update, see :func:`reweighting_weights_from_posterior`. The first form needs no
    ``gamma > 0``: a pruned coefficient (``gamma_i = 0``) still gets a finite weight.

    With groups, the weight of group ``g`` is::

        omega_g^2 = trace(Phi_g^T C^{-1} Phi_g) = sum_{i in g} phi_i^T C^{-1} phi_i
                  = d log|C| / d gamma_g

    It is the slope of the concave term ``log|C|`` in ``gamma_g``, the quantity the
    Wipf-Nagarajan bound linearises; minimising ``||w_g||^2 / gamma_g + omega_g^2 gamma_g`` over
    ``gamma_g`` then gives ``gamma_g = ||w_g||_2 / omega_g`` and the penalty
    ``2 omega_g ||w_g||_2`` (reweighted group lasso). Singleton groups give the plain weights.

    Args:
        design: ``Phi``, shape ``(N, D)``.
        prior_variance: ``gamma``, shape ``(D,)`` or ``(G,)`` with ``groups``; entries >= 0.
        noise_variance: ``sigma^2`` > 0.
        groups: optional partition of the coefficients (see :func:`group_index`).

    Returns:
        ``omega``, shape ``(D,)``, or ``(G,)`` with ``groups``.

    Raises:
        ValueError: as :func:`posterior`.
    """
    Phi, _, gamma, sigma2, group_ids, n_groups = _prepare(
        design, None, prior_variance, noise_variance, groups
    )
    gamma_d = expand_group_values(gamma, group_ids)
    C_inv_Phi = _solve_marginal(Phi, gamma_d, sigma2, Phi)  # C^{-1} Phi             (N, D)
    s = (Phi * C_inv_Phi).sum(dim=0)  # phi_i^T C^{-1} phi_i                        (D,)
    return _group_sum(s, group_ids, n_groups).clamp_min(0.0).sqrt()


def reweighting_weights_from_posterior(
    prior_variance: Any, posterior_variance: Any, groups: Any = None
) -> torch.Tensor:
    """BayesNAS weights, ``omega_g^2 = sum_{i in g} (1/gamma_g - Sigma_ii/gamma_g^2)``.

    Equal to :func:`reweighting_weights` when ``Sigma`` is the exact posterior covariance of the
    linear model (matrix inversion lemma, see there). BayesNAS plugs in a Laplace posterior
    variance ``Sigma_ii = (1/gamma_i + H_ii)^{-1}`` built from a network curvature ``H``.

    Args:
        prior_variance: ``gamma``, shape ``(D,)`` or ``(G,)`` with ``groups``; entries > 0.
        posterior_variance: ``diag(Sigma)``, shape ``(D,)``, entries >= 0.
        groups: optional partition of the coefficients (see :func:`group_index`).

    Returns:
        ``omega``, shape ``(D,)``, or ``(G,)`` with ``groups``. Tiny negative values of
        ``omega^2`` from round-off are clamped to 0.

    Raises:
        ValueError: on NaN/inf entries, a non-positive ``prior_variance``, a negative
            ``posterior_variance``, shapes that do not match or an invalid partition.
    """
    dtype = _float_dtype(prior_variance, posterior_variance)
    Sigma_diag = _as_tensor(posterior_variance, "posterior_variance", dtype)
    if Sigma_diag.ndim != 1 or Sigma_diag.shape[0] == 0:
        raise ValueError(
            f"`posterior_variance` must have shape (D,), got shape {tuple(Sigma_diag.shape)}"
        )
    if (Sigma_diag < 0).any():
        raise ValueError(
            f"`posterior_variance` must be >= 0, got min {Sigma_diag.min().item():.3g}"
        )
    group_ids, n_groups = group_index(groups, Sigma_diag.shape[0])
    gamma = _check_prior_variance(prior_variance, n_groups, dtype, positive=True)
    gamma_d = expand_group_values(gamma, group_ids)
    # omega_i^2 = 1/gamma_i - Sigma_ii/gamma_i^2                                    (D,)
    per_coefficient = 1.0 / gamma_d - Sigma_diag / gamma_d**2
    return _group_sum(per_coefficient, group_ids, n_groups).clamp_min(0.0).sqrt()
