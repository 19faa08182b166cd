"""The paper's reported numbers, as data: what the book's results are put beside.

Zhou, Yang, Wang, Pan, "BayesNAS", ICML 2019, as reported in the paper: the CIFAR-10
table (test error, parameters, search cost), the ImageNet mobile result and the search cost.
They ship as ``paper_results.json`` so that chapters print them from one place instead of typing
them in; the compression baselines the paper compares with are in
:func:`bayesnas_book.compress.published_baselines`.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["paper_cifar10", "paper_imagenet", "paper_results", "paper_search_cost"]


@cache
def paper_results() -> dict[str, Any]:
    """The whole record: ``source``, ``cifar10`` (rows), ``imagenet``, ``search``."""
    text = resources.files("bayesnas_book").joinpath("paper_results.json").read_text()
    return json.loads(text)


def paper_cifar10(lambda_o: float | None = None) -> list[dict[str, Any]] | dict[str, Any]:
    """The CIFAR-10 rows; with ``lambda_o``, the BayesNAS row of that penalty.

    Raises:
        KeyError: when no row has that ``lambda_o`` (the message lists those that exist).
    """
    rows = paper_results()["cifar10"]
    if lambda_o is None:
        return rows
    for row in rows:
        if row["lambda_o"] is not None and abs(row["lambda_o"] - lambda_o) < 1e-12:
            return row
    known = [row["lambda_o"] for row in rows if row["lambda_o"] is not None]
    raise KeyError(f"the paper reports no CIFAR-10 row for lambda_o = {lambda_o}; it reports {known}")


def paper_imagenet() -> dict[str, Any]:
    """``{"model", "top1_error", "top5_error", "params_m"}`` (errors in %, params in millions)."""
    return paper_results()["imagenet"]


def paper_search_cost() -> dict[str, Any]:
    """``{"gpu_days", "card", "batch_size", "note"}`` of the paper's CIFAR-10 search."""
    return paper_results()["search"]
