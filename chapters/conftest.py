"""The chapters' nbval run: printed numbers compared to their last digit, not as strings.

nbval compares each cell's sanitised stored output with the fresh one by ``!=``; wrapping the
sanitised text in :class:`~bayesnas_book.output_compare.NumericText` makes that comparison follow
the stated tolerance (one unit in the last printed digit of a decimal, integers exact, text exact).
"""

from __future__ import annotations

import pytest

from bayesnas_book.output_compare import NumericText


def pytest_collection_modifyitems(items) -> None:
    """Every chapter cell is part of the slow set: ``pytest -m "not slow"`` is the quick check without them."""
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.fspath).startswith(here) and str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.slow)


def pytest_configure(config) -> None:
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:  # nbval absent: nothing to compare
        return
    if getattr(IPyNbCell.sanitize, "numeric_text", False):
        return
    plain_sanitize = IPyNbCell.sanitize

    def sanitize(self, s):
        text = plain_sanitize(self, s)
        return NumericText(text) if isinstance(text, str) else text

    sanitize.numeric_text = True
    IPyNbCell.sanitize = sanitize
