"""Confidence intervals over a few seeds: the Student-t interval of a mean.

With ``n`` independent values of sample mean ``m`` and sample standard deviation ``s``, the
``confidence`` interval of their expectation is ``m +- t_{(1+confidence)/2, n-1} * s / sqrt(n)``,
where ``t_{p, nu}`` is the ``p`` quantile of Student's t distribution with ``nu`` degrees of
freedom. It assumes roughly normal values; over seeds of one experiment that is the usual working
assumption, and the interval is wide when ``n`` is small (``t_{0.975, 4} = 2.78`` for five seeds).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["t_interval", "t_quantile"]


def t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of Student's t with ``dof`` degrees of freedom.

    Raises:
        ValueError: if ``p`` is not in (0, 1) or ``dof`` is not an integer >= 1.
    """
    if not 0 < p < 1:
        raise ValueError(f"`p` must be in (0, 1), got {p!r}")
    if isinstance(dof, bool) or not isinstance(dof, int) or dof < 1:
        raise ValueError(f"`dof` must be an integer >= 1, got {dof!r}")
    from scipy.stats import t  # scikit-learn, a dependency, brings scipy

    return float(t.ppf(p, dof))


def t_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample standard deviation and the Student-t interval of the mean.

    With a single value no spread can be estimated: ``std``, ``low`` and ``high`` are NaN (a
    one-seed run still reports its mean; a reader sees that it has no interval).

    Args:
        values: ``n >= 1`` numbers (e.g. one per seed, or paired differences).
        confidence: the interval's coverage, in (0, 1).

    Returns:
        ``{"mean", "std", "n", "low", "high", "confidence"}``.

    Raises:
        ValueError: for no value, a non-finite value, or ``confidence`` outside (0, 1).
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("a t interval needs at least one value, got none")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"every value must be finite, got {values}")
    if isinstance(confidence, bool) or not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence!r}")
    n = len(values)
    mean = statistics.fmean(values)
    if n == 1:
        nan = math.nan
        return {"mean": mean, "std": nan, "n": 1, "low": nan, "high": nan, "confidence": confidence}
    std = statistics.stdev(values)
    half = t_quantile((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    return {
        "mean": mean,
        "std": std,
        "n": n,
        "low": mean - half,
        "high": mean + half,
        "confidence": confidence,
    }
