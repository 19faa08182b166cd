"""Figures of the curvature comparison (chapter 05): per-switch scatter, intervals over training.

* :func:`curvature_scatter`: each method's curvature of every switch against the exact
  Gauss-Newton value, log-log, with the line ``y = x`` (one panel per method);
* :func:`interval_plot`: one metric of :func:`~bayesnas_book.curvature.study.summarize_study`
  per method against the point of training, the mean with its interval as an error bar.

Both return a new :class:`~matplotlib.figure.Figure` of a fixed size and touch no global state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["curvature_scatter", "interval_plot"]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def curvature_scatter(
    reference: Sequence[float] | np.ndarray,
    estimates: Mapping[str, Sequence[float] | np.ndarray],
    *,
    reference_label: str = "exact GGN",
    title: str = "",
) -> Figure:
    """One log-log panel per method: its curvature of every switch against the reference.

    Switches where either value is not positive cannot sit on a log axis; each panel's title
    counts them ("n not shown"). The grey line is ``y = x``.

    Args:
        reference: ``(S,)`` the reference curvature per switch (e.g. the exact GGN diagonal; may
            be the concatenation of several seeds' and points' diagonals).
        estimates: method label -> ``(S,)`` values in the same order.
        reference_label: the x axis' name.
        title: the figure's title.

    Returns:
        The figure.

    Raises:
        ValueError: for no method, a length mismatch, or a reference with no positive value.
    """
    ref = np.asarray(reference, dtype=float).ravel()
    if not estimates:
        raise ValueError("`estimates` is empty: give at least one method's values")
    if not (ref > 0).any():
        raise ValueError("`reference` has no positive value to place on a log axis")
    values = {label: np.asarray(v, dtype=float).ravel() for label, v in estimates.items()}
    for label, v in values.items():
        if v.shape != ref.shape:
            raise ValueError(f"method {label!r} has {v.size} values, the reference {ref.size}")
    n = len(values)
    figure = Figure(figsize=(3.0 * n, 3.1), layout="constrained")
    axes = figure.subplots(1, n, sharex=True, sharey=True, squeeze=False)[0]
    shown_all = np.concatenate([v[(v > 0) & (ref > 0)] for v in values.values()] + [ref[ref > 0]])
    low, high = shown_all.min() / 2, shown_all.max() * 2
    for ax, (label, v) in zip(axes, values.items(), strict=True):
        shown = (v > 0) & (ref > 0)
        ax.loglog([low, high], [low, high], color="0.6", lw=1, zorder=1)
        ax.scatter(ref[shown], v[shown], s=6, alpha=0.35, color="C0", linewidths=0, zorder=2)
        hidden = int((~shown).sum())
        ax.set_title(label + (f"\n({hidden} not shown: <= 0)" if hidden else ""), fontsize=9)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_xlabel(reference_label)
    axes[0].set_ylabel("method's curvature")
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def interval_plot(
    summary: Mapping[str, Any],
    metric: str,
    *,
    methods: Sequence[str] | None = None,
    ax_title: str = "",
    ylabel: str | None = None,
) -> Figure:
    """One metric per method against the points of training: mean and interval over seeds.

    Args:
        summary: from :func:`~bayesnas_book.curvature.study.summarize_study`: ``points``, each
            with ``label`` and ``methods[label][metric]`` holding ``mean``, ``low``, ``high``.
        metric: e.g. ``"agreement"``, ``"relative_error"``, ``"spearman"``, ``"disagreements"``.
        methods: method labels to draw (default every method of the first point).
        ax_title: the axes' title.
        ylabel: the y axis' label (default the metric's name).

    Returns:
        The figure; one error-bar series per method, offset a little along x so they do not
        hide each other.

    Raises:
        ValueError: for a summary without points, an unknown method or metric.
    """
    points = list(summary.get("points", []))
    if not points:
        raise ValueError("the summary has no points to draw")
    available = list(points[0]["methods"])
    methods = list(available if methods is None else methods)
    unknown = [m for m in methods if m not in available]
    if unknown or not methods:
        raise ValueError(f"`methods` must be some of {available}, got {methods}")
    if metric not in points[0]["methods"][methods[0]]:
        known = [k for k, v in points[0]["methods"][methods[0]].items() if isinstance(v, Mapping)]
        raise ValueError(f"unknown metric {metric!r}; the summary has {known}")
    figure = Figure(figsize=(6.4, 3.4), layout="constrained")
    ax = figure.subplots()
    x = np.arange(len(points), dtype=float)
    width = 0.5 / max(len(methods), 1)
    for index, label in enumerate(methods):
        rows = [p["methods"][label][metric] for p in points]
        mean = np.array([r["mean"] for r in rows], dtype=float)
        low = np.array([r["low"] for r in rows], dtype=float)
        high = np.array([r["high"] for r in rows], dtype=float)
        err = np.vstack([np.nan_to_num(mean - low), np.nan_to_num(high - mean)])
        offset = (index - (len(methods) - 1) / 2) * width
        ax.errorbar(
            x + offset,
            mean,
            yerr=err,
            fmt=_MARKERS[index % len(_MARKERS)] + "-",
            ms=4,
            lw=1,
            capsize=3,
            label=label,
        )
    ax.set_xticks(x, [p["label"] for p in points], fontsize=8)
    ax.set_ylabel(ylabel or metric.replace("_", " "))
    ax.set_xlabel("point of the search")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    if ax_title:
        ax.set_title(ax_title, fontsize=10)
    return figure
