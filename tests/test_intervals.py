"""Student-t intervals against closed forms of the t quantile."""

from __future__ import annotations

import math

import pytest
import torch

from bayesnas_book.intervals import t_interval, t_quantile


@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995])
def test_t_quantile_matches_closed_forms(p: float) -> None:
    # one degree of freedom: the Cauchy distribution, F^-1(p) = tan(pi (p - 1/2))
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-10)
    # two: F^-1(p) = (2p - 1) / sqrt(2 p (1 - p))
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-10)
    # many: the normal quantile (error function inverse by bisection)
    low, high = 0.0, 10.0
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if 0.5 * (1 + math.erf(middle / math.sqrt(2))) < p else (low, middle)
    assert t_quantile(p, 10**7) == pytest.approx(low, rel=1e-5)


def test_t_interval_is_mean_plus_minus_t_times_standard_error() -> None:
    values = [0.2, 0.5, 0.3]  # mean 1/3, sd sqrt(7/300); t_{0.95, 2} by the closed form above
    t = 0.9 / math.sqrt(2 * 0.95 * 0.05)
    half = t * math.sqrt(7 / 300) / math.sqrt(3)
    interval = t_interval(values, confidence=0.9)
    assert interval["mean"] == pytest.approx(1 / 3) and interval["std"] == pytest.approx(math.sqrt(7 / 300))
    assert (interval["low"], interval["high"]) == pytest.approx((1 / 3 - half, 1 / 3 + half))
    assert interval["n"] == 3 and interval["confidence"] == 0.9


def test_one_value_has_a_mean_and_no_interval() -> None:
    one = t_interval([0.5])
    assert one["mean"] == 0.5 and one["n"] == 1
    assert math.isnan(one["std"]) and math.isnan(one["low"]) and math.isnan(one["high"])


def test_t_interval_covers_the_mean_95_percent_of_the_time() -> None:
    generator = torch.Generator().manual_seed(0)
    samples = torch.randn(4000, 5, generator=generator, dtype=torch.float64) * 2.0 + 1.0
    covered = [(r := t_interval(row.tolist()))["low"] <= 1.0 <= r["high"] for row in samples]
    rate = sum(covered) / len(covered)
    assert abs(rate - 0.95) < 4 * math.sqrt(0.95 * 0.05 / len(covered)), rate


def test_t_interval_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="at least one value, got none"):
        t_interval([])
    with pytest.raises(ValueError, match="finite"):
        t_interval([1.0, math.nan])
    with pytest.raises(ValueError, match=r"`confidence` must be in \(0, 1\), got 1.5"):
        t_interval([1.0, 2.0], confidence=1.5)
    with pytest.raises(ValueError, match="`dof` must be an integer >= 1"):
        t_quantile(0.9, 0)
