"""Figures of the curvature comparison (bayesnas_book.viz_curvature)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from bayesnas_book.viz_curvature import curvature_scatter, interval_plot


def test_scatter_one_log_panel_per_method_and_hidden_counts() -> None:
    ref = np.array([1e-4, 1e-3, 1e-2, 0.0])
    figure = curvature_scatter(
        ref, {"a": ref * 2, "b": np.array([1e-4, -1.0, 1e-2, 1.0])}, title="t"
    )
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    a, b = figure.axes
    assert a.get_xscale() == a.get_yscale() == "log"
    assert len(a.collections[0].get_offsets()) == 3 and "1 not shown" in a.get_title()
    assert len(b.collections[0].get_offsets()) == 2 and "2 not shown" in b.get_title()
    with pytest.raises(ValueError, match="values"):
        curvature_scatter(ref, {"a": ref[:2]})
    with pytest.raises(ValueError, match="empty"):
        curvature_scatter(ref, {})
    with pytest.raises(ValueError, match="positive"):
        curvature_scatter(np.zeros(3), {"a": np.ones(3)})


def _summary() -> dict:
    def interval(mean: float) -> dict:
        return {"mean": mean, "low": mean - 0.1, "high": mean + 0.1, "n": 5}

    return {
        "points": [
            {
                "label": f"p{i}",
                "methods": {
                    m: {"method": m, "agreement": interval(0.5 + i / 10)} for m in ("x", "y")
                },
            }
            for i in range(3)
        ]
    }


def test_interval_plot_draws_a_bar_per_method_and_point() -> None:
    figure = interval_plot(_summary(), "agreement", ax_title="agreement")
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["p0", "p1", "p2"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["x", "y"]
    line = ax.lines[0]
    assert np.allclose(line.get_ydata(), [0.5, 0.6, 0.7])
    with pytest.raises(ValueError, match="methods"):
        interval_plot(_summary(), "agreement", methods=["z"])
    with pytest.raises(ValueError, match="metric"):
        interval_plot(_summary(), "cost")
    with pytest.raises(ValueError, match="no points"):
        interval_plot({"points": []}, "agreement")
