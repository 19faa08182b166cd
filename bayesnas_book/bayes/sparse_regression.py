r"""Planted sparse regression: ARD, reweighted l1, the lasso and magnitude thresholding compared.

A planted problem has ``y = Phi w + noise_std * e`` with ``e ~ N(0, I)``, ``Phi`` of i.i.d.
``N(0, 1)`` rows (or rows ``N(0, R)`` with ``R_ij = rho^|i-j|`` when correlated) and ``k``
nonzero coefficients of magnitude uniform in ``[1, 2]`` with random signs on a random support.

Every method returns an estimate ``w_hat`` and a selected support; we report precision
``|S_hat & S| / |S_hat|``, recall ``|S_hat & S| / |S|``, their F1 and the relative error
``||w_hat - w||_2 / ||w||_2``. How each method selects:

* ``ard``: :func:`bayesnas_book.bayes.ard.ard` (EM updates, the true noise variance),
  pruning variances that fall below ``variance_threshold`` during the iterations;
  ``w_hat`` = posterior mean.
* ``reweighted_l1``: :func:`bayesnas_book.bayes.reweighted.reweighted_l1` (the true noise
  variance), pruning variances ``gamma_i = |w_i| / omega_i`` that fall below
  ``variance_threshold``; ``w_hat`` = its ``w``, selected = nonzero.
* ``lasso``: scikit-learn ``LassoCV`` (no intercept, 5-fold cross-validation over its default
  path of 100 alphas, the alpha of least mean squared validation error); selected = nonzero.
* ``magnitude``: ridge regression ``(Phi^T Phi + ridge I)^{-1} Phi^T y`` and keep the ``k``
  largest ``|w_i|``, with ``k`` the true support size (an oracle count); others set to 0.

.. note::
   At the exact ARD optimum a coefficient with no signal survives whenever ``q_i^2 > s_i``
   (Tipping & Faul 2003), which happens about a third of the time, but with a tiny variance of
   order ``sigma^2 / ||phi_i||^2``. Both ARD variants therefore select by a threshold on
   ``gamma``. The default, ``1 / (2 pi e) ~= 0.0585``, is the entropy rule BayesNAS prunes with
   (``0.5 log(2 pi e gamma) <= 0``); it is in units of ``w^2``, suited to the planted weights
   of magnitude >= 1 here.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from bayesnas_book.bayes.ard import ard
from bayesnas_book.bayes.linear import _check_design, _check_targets, _float_dtype
from bayesnas_book.bayes.reweighted import reweighted_l1

__all__ = [
    "ENTROPY_THRESHOLD",
    "METHODS",
    "PlantedProblem",
    "SparseRecord",
    "compare_sparse_methods",
    "lasso_cv",
    "magnitude_threshold",
    "planted_regression",
    "summarize_records",
    "support_metrics",
]

ENTROPY_THRESHOLD = 1.0 / (2.0 * math.pi * math.e)
"""``gamma`` at which the differential entropy ``0.5 log(2 pi e gamma)`` of ``N(0, gamma)`` is 0."""

METHODS = ("ard", "reweighted_l1", "lasso", "magnitude")


class PlantedProblem(NamedTuple):
    """A planted sparse regression problem.

    Attributes:
        design: ``Phi``, shape ``(N, D)``, float64.
        targets: ``y``, shape ``(N,)``, float64.
        weights: the true ``w``, shape ``(D,)``, float64, ``k`` nonzeros.
        support: indices of the nonzeros, sorted, shape ``(k,)``, int64.
    """

    design: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor
    support: torch.Tensor


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_nonneg(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")
    if value < 0:
        raise ValueError(f"`{name}` must be >= 0, got {value}")
    return float(value)


def planted_regression(
    n_samples: int,
    n_features: int,
    n_nonzero: int,
    noise_std: float,
    seed: int,
    correlated: bool = False,
    *,
    correlation: float = 0.8,
) -> PlantedProblem:
    """Draw a planted sparse linear regression problem (deterministic given ``seed``).

    Args:
        n_samples: ``N`` >= 1.
        n_features: ``D`` >= 1.
        n_nonzero: ``k``, with ``0 <= k <= D``.
        noise_std: ``sigma`` >= 0, the standard deviation of the additive Gaussian noise.
        seed: seed of a private ``torch.Generator`` (the global RNG is not touched); >= 0.
        correlated: draw rows from ``N(0, R)``, ``R_ij = correlation^|i-j|``, instead of
            ``N(0, I)``.
        correlation: ``rho`` in ``[0, 1)``, used when ``correlated``.

    Returns:
        :class:`PlantedProblem` ``(design (N, D), targets (N,), weights (D,), support (k,))``.

    Raises:
        ValueError: if a size is out of range, ``noise_std < 0`` or ``correlation`` is not in
            ``[0, 1)``.
    """
    n_samples = _check_int(n_samples, "n_samples", 1)
    n_features = _check_int(n_features, "n_features", 1)
    n_nonzero = _check_int(n_nonzero, "n_nonzero", 0)
    if n_nonzero > n_features:
        raise ValueError(f"`n_nonzero` must be <= n_features = {n_features}, got {n_nonzero}")
    noise_std = _check_nonneg(noise_std, "noise_std")
    seed = _check_int(seed, "seed", 0)
    if not (isinstance(correlation, (int, float)) and 0 <= correlation < 1):
        raise ValueError(f"`correlation` must be in [0, 1), got {correlation!r}")
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.float64
    Phi = torch.randn(n_samples, n_features, generator=gen, dtype=dtype)
    if correlated:
        lags = torch.arange(n_features, dtype=dtype)
        R = correlation ** (lags[:, None] - lags[None, :]).abs()  # R_ij = rho^|i-j|  (D, D)
        Phi = Phi @ torch.linalg.cholesky(R).T  # rows ~ N(0, R)                     (N, D)
    support = torch.randperm(n_features, generator=gen)[:n_nonzero].sort().values
    magnitude = 1.0 + torch.rand(n_nonzero, generator=gen, dtype=dtype)  # U[1, 2]
    sign = torch.where(torch.rand(n_nonzero, generator=gen) < 0.5, -1.0, 1.0).to(dtype)
    w = torch.zeros(n_features, dtype=dtype)
    w[support] = sign * magnitude
    noise = torch.randn(n_samples, generator=gen, dtype=dtype)
    y = Phi @ w + noise_std * noise
    return PlantedProblem(Phi, y, w, support)


def _index_set(support: Any, name: str) -> set[int]:
    """A support given as a bool mask ``(D,)`` or integer indices ``(k,)``, as a set of ints."""
    tensor = torch.as_tensor(support)
    if tensor.ndim != 1:
        raise ValueError(
            f"`{name}` must be a 1-D bool mask or index list, got shape {tuple(tensor.shape)}"
        )
    if tensor.dtype == torch.bool:
        return set(torch.nonzero(tensor).flatten().tolist())
    if tensor.is_floating_point() or tensor.is_complex():
        raise TypeError(
            f"`{name}` must be a bool mask or integer indices, got dtype {tensor.dtype}"
        )
    if (tensor < 0).any():
        raise ValueError(f"`{name}` indices must be >= 0, got {int(tensor.min())}")
    return set(tensor.tolist())


def support_metrics(estimated_support: Any, true_support: Any) -> tuple[float, float, float]:
    """Precision, recall and F1 of an estimated support against the true one.

    Args:
        estimated_support: a bool mask of shape ``(D,)`` or integer indices of shape ``(k',)``.
        true_support: the same kinds (the two need not be the same kind).

    Returns:
        ``(precision, recall, f1)``. An empty estimate has precision 1 (no false discovery); an
        empty truth has recall 1; F1 is 0 when precision + recall is 0.

    Raises:
        ValueError: if a support is not 1-D or has negative indices.
        TypeError: if a support is neither bool nor integer.
    """
    est = _index_set(estimated_support, "estimated_support")
    true = _index_set(true_support, "true_support")
    hits = len(est & true)
    precision = hits / len(est) if est else 1.0
    recall = hits / len(true) if true else 1.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return precision, recall, f1


def lasso_cv(design: Any, targets: Any, *, cv: int = 5, seed: int = 0) -> torch.Tensor:
    """Lasso with alpha chosen by scikit-learn's ``LassoCV`` (no intercept).

    Minimises ``||y - Phi w||^2 / (2N) + alpha ||w||_1`` at the alpha of least mean squared
    error over ``cv`` contiguous folds, from scikit-learn's default path (100 alphas down to
    ``1e-3 * alpha_max``).

    Args:
        design: ``Phi``, shape ``(N, D)`` with ``N >= cv``.
        targets: ``y``, shape ``(N,)``.
        cv: number of folds (>= 2).
        seed: ``random_state`` of the coordinate descent.

    Returns:
        ``w``, shape ``(D,)``, float64.

    Raises:
        ValueError: on shapes that do not match, NaN/inf entries or ``cv`` out of range.
    """
    from sklearn.linear_model import LassoCV  # imported here: only this baseline needs it

    dtype = _float_dtype(design, targets)
    Phi = _check_design(design, dtype)
    y = _check_targets(targets, Phi.shape[0], dtype)
    cv = _check_int(cv, "cv", 2)
    if cv > Phi.shape[0]:
        raise ValueError(f"`cv` must be <= N = {Phi.shape[0]}, got {cv}")
    model = LassoCV(cv=cv, fit_intercept=False, random_state=seed, max_iter=100_000, tol=1e-6)
    model.fit(Phi.double().numpy(), y.double().numpy())
    return torch.as_tensor(model.coef_, dtype=torch.float64)


def magnitude_threshold(
    design: Any, targets: Any, n_keep: int, *, ridge: float = 1.0
) -> torch.Tensor:
    """Ridge regression, then keep the ``n_keep`` coefficients of largest magnitude.

    ``w = (Phi^T Phi + ridge I)^{-1} Phi^T y`` (``ridge = 0``: least squares, minimum norm when
    ``Phi^T Phi`` is singular); all but the ``n_keep`` largest ``|w_i|`` are set to 0 (no refit).

    Args:
        design: ``Phi``, shape ``(N, D)``.
        targets: ``y``, shape ``(N,)``.
        n_keep: how many coefficients to keep, ``0 <= n_keep <= D``.
        ridge: ridge penalty >= 0, in the units of ``Phi^T Phi``.

    Returns:
        ``w``, shape ``(D,)``, with at most ``n_keep`` nonzeros.

    Raises:
        ValueError: on shapes that do not match, NaN/inf entries, ``n_keep`` out of range or
            ``ridge < 0``.
    """
    dtype = _float_dtype(design, targets)
    Phi = _check_design(design, dtype)
    y = _check_targets(targets, Phi.shape[0], dtype)
    n_keep = _check_int(n_keep, "n_keep", 0)
    if n_keep > Phi.shape[1]:
        raise ValueError(f"`n_keep` must be <= D = {Phi.shape[1]}, got {n_keep}")
    ridge = _check_nonneg(ridge, "ridge")
    if ridge > 0:
        A = Phi.T @ Phi
        A.diagonal().add_(ridge)
        w = torch.linalg.solve(A, Phi.T @ y)  # (Phi^T Phi + ridge I)^{-1} Phi^T y   (D,)
    else:
        w = torch.linalg.pinv(Phi) @ y  # minimum-norm least squares                 (D,)
    keep = torch.topk(w.abs(), n_keep).indices
    out = torch.zeros_like(w)
    out[keep] = w[keep]
    return out


@dataclass(frozen=True)
class SparseRecord:
    """One method on one planted problem.

    Attributes:
        method: one of :data:`METHODS`.
        noise_std: ``sigma`` of the problem.
        seed: seed of the problem.
        precision, recall, f1: support metrics (:func:`support_metrics`).
        relative_error: ``||w_hat - w||_2 / ||w||_2``.
        n_selected: size of the selected support.
        seconds: wall time of the method (volatile: do not print it into stored outputs).
    """

    method: str
    noise_std: float
    seed: int
    precision: float
    recall: float
    f1: float
    relative_error: float
    n_selected: int
    seconds: float


def _run_method(
    method: str,
    problem: PlantedProblem,
    noise_std: float,
    seed: int,
    variance_threshold: float,
    ridge: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w_hat (D,), selected mask (D,))`` of one method (see the module docstring)."""
    Phi, y = problem.design, problem.targets
    sigma2 = noise_std**2
    if method == "ard":
        result = ard(Phi, y, sigma2, update="em", prune_below=variance_threshold, max_iter=5000)
        return result.posterior_mean, result.support
    if method == "reweighted_l1":
        result = reweighted_l1(Phi, y, sigma2, prune_below=variance_threshold)
        return result.coefficients, result.support
    if method == "lasso":
        w_hat = lasso_cv(Phi, y, seed=seed)
        return w_hat, w_hat != 0
    assert method == "magnitude", method
    w_hat = magnitude_threshold(Phi, y, problem.support.numel(), ridge=ridge)
    return w_hat, w_hat != 0


def compare_sparse_methods(
    noise_levels: Sequence[float],
    seeds: Sequence[int],
    *,
    n_samples: int = 100,
    n_features: int = 80,
    n_nonzero: int = 8,
    correlated: bool = False,
    methods: Sequence[str] = METHODS,
    variance_threshold: float = ENTROPY_THRESHOLD,
    ridge: float = 1.0,
) -> list[SparseRecord]:
    """Run each method on planted problems for every noise level and seed.

    The Bayesian methods are given the true noise variance ``noise_std**2``; the lasso picks its
    alpha by cross-validation; magnitude thresholding is told the true support size. See the
    module docstring for how each selects.

    Args:
        noise_levels: noise standard deviations, each > 0.
        seeds: problem seeds (>= 0); the problem for ``(noise, seed)`` uses
            :func:`planted_regression` with that seed, so every noise level shares the designs
            and true weights of the same seeds.
        n_samples, n_features, n_nonzero, correlated: as in :func:`planted_regression`.
        methods: a subset of :data:`METHODS`.
        variance_threshold: ``gamma`` below which ARD and reweighted-l1 drop a coefficient (> 0).
        ridge: ridge penalty of the magnitude baseline (>= 0).

    Returns:
        A list of :class:`SparseRecord`, ordered by noise level, seed, then method.

    .. note::
       The matrices here are at most a few hundred wide, too small for intra-op threads: the
       comparison runs with ``torch.set_num_threads(1)`` (restored afterwards). On a busy
       2-core machine this made it about 10 times faster (measured 2.6 s CPU instead of 20 s
       for 3 noise levels x 5 seeds at n=100, d=80).

    Raises:
        ValueError: on an unknown method, an empty list, a non-positive noise level or
            ``variance_threshold``, or invalid problem sizes.
    """
    noise_levels = list(noise_levels)
    seeds = list(seeds)
    methods = list(methods)
    if not noise_levels or not seeds or not methods:
        raise ValueError(
            "`noise_levels`, `seeds` and `methods` must each be non-empty, got "
            f"{len(noise_levels)}, {len(seeds)} and {len(methods)} entries"
        )
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"`methods` entries must be in {METHODS}, got {method!r}")
    for noise in noise_levels:
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise > 0:
            raise ValueError(f"`noise_levels` must be numbers > 0, got {noise!r}")
    if not (isinstance(variance_threshold, (int, float)) and variance_threshold > 0):
        raise ValueError(f"`variance_threshold` must be > 0, got {variance_threshold!r}")
    with _torch_threads(1):
        return _compare(
            noise_levels,
            seeds,
            methods,
            (n_samples, n_features, n_nonzero),
            correlated,
            variance_threshold,
            ridge,
        )


@contextlib.contextmanager
def _torch_threads(n_threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n_threads)``, restoring the old count after."""
    old = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _compare(
    noise_levels: list[float],
    seeds: list[int],
    methods: list[str],
    sizes: tuple[int, int, int],
    correlated: bool,
    variance_threshold: float,
    ridge: float,
) -> list[SparseRecord]:
    """The loop of :func:`compare_sparse_methods` (arguments already checked)."""
    n_samples, n_features, n_nonzero = sizes
    records = []
    for noise in noise_levels:
        for seed in seeds:
            problem = planted_regression(
                n_samples, n_features, n_nonzero, float(noise), seed, correlated
            )
            w_norm = float(problem.weights.norm())
            for method in methods:
                start = time.perf_counter()
                w_hat, selected = _run_method(
                    method, problem, float(noise), seed, variance_threshold, ridge
                )
                seconds = time.perf_counter() - start
                precision, recall, f1 = support_metrics(selected, problem.support)
                error = float((w_hat - problem.weights).norm()) / max(w_norm, 1e-300)
                records.append(
                    SparseRecord(
                        method=method,
                        noise_std=float(noise),
                        seed=int(seed),
                        precision=precision,
                        recall=recall,
                        f1=f1,
                        relative_error=error,
                        n_selected=int(selected.sum()),
                        seconds=seconds,
                    )
                )
    return records


def summarize_records(records: Sequence[SparseRecord]) -> list[dict[str, Any]]:
    """Average the records of each ``(method, noise_std)`` over seeds.

    Args:
        records: as returned by :func:`compare_sparse_methods`.

    Returns:
        One dict per ``(method, noise_std)`` in first-seen order, with keys ``method``,
        ``noise_std``, ``n_runs`` and the means ``precision``, ``recall``, ``f1``,
        ``relative_error``, ``n_selected`` and ``seconds``.

    Raises:
        ValueError: if ``records`` is empty.
    """
    if len(records) == 0:
        raise ValueError("`records` must be non-empty, got 0 records")
    fields = ("precision", "recall", "f1", "relative_error", "n_selected", "seconds")
    groups: dict[tuple[str, float], list[SparseRecord]] = {}
    for record in records:
        groups.setdefault((record.method, record.noise_std), []).append(record)
    summary = []
    for (method, noise), runs in groups.items():
        row: dict[str, Any] = {"method": method, "noise_std": noise, "n_runs": len(runs)}
        for field in fields:
            row[field] = float(np.mean([getattr(r, field) for r in runs]))
        summary.append(row)
    return summary
