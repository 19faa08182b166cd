"""How the cost of a search step and of the curvature grows with batch, width, depth and switches.

Starting from a profile, one factor changes at a time:

* ``batch``: the images per step (``data.batch_size``);
* ``channels``: ``C`` of the first stage (``search.channels``);
* ``cells``: the layout length (``search.layout``: the profile's layout, then with more normal cells);
* ``switches``: the search space (the BayesNAS 8-edge cell, 64 switches a cell, or the DARTS 14-edge
  cell, 112).

For each setting :func:`~bayesnas_book.bench.bench_search` times a switch step and the curvature
methods; the table reports seconds and each curvature's ratio to one forward+backward of the same
setting, so the growth of the curvature's *relative* cost is visible at a glance.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bayesnas_book.bench import bench_search
from bayesnas_book.config import RunConfig

__all__ = ["SCALING_FACTORS", "bench_scaling", "format_scaling", "scaling_settings"]

SCALING_FACTORS = ("batch", "channels", "cells", "switches")


def _deeper(layout: str, extra: int) -> str:
    """``layout`` with ``extra`` more normal cells, spread after each existing cell in turn."""
    cells = list(layout)
    for i in range(extra):
        cells.insert((2 * i + 1) % (len(cells) + 1), "N")
    return "".join(cells)


def _with(config: RunConfig, section: str, **values: Any) -> RunConfig:
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **values)})


def scaling_settings(config: RunConfig, factors: tuple[str, ...] = SCALING_FACTORS) -> list[tuple[str, str, RunConfig]]:
    """The settings of the sweep: ``(factor, shown value, config)``, the profile's own first.

    Raises:
        ValueError: for an unknown factor.
    """
    unknown = [f for f in factors if f not in SCALING_FACTORS]
    if unknown:
        raise ValueError(f"unknown scaling factor(s) {unknown}; choose from {', '.join(SCALING_FACTORS)}")
    search, B = config.search, config.data.batch_size
    settings: list[tuple[str, str, RunConfig]] = [("profile", "as configured", config)]
    for factor in factors:
        if factor == "batch":
            settings += [("batch", str(b), _with(config, "data", batch_size=b)) for b in (max(1, B // 2), 2 * B)]
        elif factor == "channels":
            settings += [("channels", str(c), _with(config, "search", channels=c))
                         for c in (max(1, search.channels // 2), 2 * search.channels)]
        elif factor == "cells":
            deeper = _deeper(search.layout, len(search.layout))
            settings.append(("cells", str(len(deeper)), _with(config, "search", layout=deeper)))
        else:
            other = "darts" if search.space == "bayesnas" else "bayesnas"
            settings.append(("switches", other, _with(config, "search", space=other)))
    return settings


def bench_scaling(config: RunConfig, repeats: int = 3, warmup: int = 1,
                  factors: tuple[str, ...] = SCALING_FACTORS) -> dict[str, Any]:
    """Time the profile and each one-factor change (module docstring).

    Args:
        config: the starting profile.
        repeats, warmup: passed to :func:`~bayesnas_book.bench.bench_search`.
        factors: which of :data:`SCALING_FACTORS` to vary.

    Returns:
        A JSON-ready dict: ``rows`` with factor, value, batch, channels, cells, switches, weights,
        switch-step seconds and images/s, and per curvature method its seconds and ratio to one
        forward+backward.
    """
    rows = []
    for factor, shown, setting in scaling_settings(config, factors):
        result = bench_search(setting, repeats=repeats, warmup=warmup, straightforward=False)
        by_name = {r["name"]: r for r in result["rows"]}
        rows.append({
            "factor": factor, "value": shown, "batch": result["batch_size"], "channels": setting.search.channels,
            "cells": len(setting.search.layout), "switches": result["switches"], "weights": result["weights"],
            "switch_step_s": by_name["switch step"]["median_s"], "images_per_s": by_name["switch step"]["images_per_s"],
            "forward_backward_s": by_name["forward+backward"]["median_s"],
            "curvature": {name.removeprefix("curvature "): {"median_s": row["median_s"],
                                                            "ratio_to_forward_backward": row["ratio_to_forward_backward"]}
                          for name, row in by_name.items() if name.startswith("curvature ")},
        })
    return {"device": result["device"], "profile": config.profile, "repeats": repeats, "rows": rows}


def format_scaling(result: dict[str, Any]) -> str:
    """The scaling sweep as a text table."""
    methods = list(result["rows"][0]["curvature"])
    header = f"{'factor':<10}{'value':>14}{'batch':>7}{'C':>5}{'cells':>7}{'switches':>10}{'step ms':>10}{'img/s':>8}"
    header += "".join(f"{m + ' x':>14}" for m in methods)
    lines = [f"scaling on {result['device']} (median of {result['repeats']}; curvature as x one forward+backward)", header]
    for row in result["rows"]:
        line = (f"{row['factor']:<10}{row['value']:>14}{row['batch']:>7}{row['channels']:>5}{row['cells']:>7}"
                f"{row['switches']:>10}{1e3 * row['switch_step_s']:>10.1f}{row['images_per_s']:>8.0f}")
        line += "".join(f"{row['curvature'][m]['ratio_to_forward_backward']:>14.2f}" for m in methods)
        lines.append(line)
    return "\n".join(lines)
