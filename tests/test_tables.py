"""Tables shown as Markdown on a page and as aligned text elsewhere."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from bayesnas_book.tables import Table
from tests.conftest import REPO_ROOT


def test_markdown_has_a_header_rule_with_the_alignment_and_escapes_pipes() -> None:
    table = Table(["method", "error %"], [["a|b", "1.50"], ["c", "12.00"]])
    assert table.markdown().splitlines() == [
        "| method | error % |",
        "| :--- | ---: |",
        "| a\\|b | 1.50 |",
        "| c | 12.00 |",
    ]
    assert not hasattr(table, "_repr_markdown_")  # one rich form: the page shows the HTML


def test_html_is_a_table_with_escaped_cells() -> None:
    table = Table(["a", "b"], [["<x>", "1"]], caption="c & d")
    assert table._repr_html_() == table.html() == (
        '<table><caption>c &amp; d</caption><thead><tr><th style="text-align:left">a</th>'
        '<th style="text-align:right">b</th></tr></thead><tbody><tr><td style="text-align:left">'
        '&lt;x&gt;</td><td style="text-align:right">1</td></tr></tbody></table>')


def test_text_aligns_columns_as_asked() -> None:
    table = Table(["x", "value"], [["long name", "1"], ["y", "22"]], align="lr", caption="cap")
    assert table.text().splitlines() == ["cap", "x          value", "---------  -----",
                                         "long name      1", "y             22"]
    assert repr(table) == str(table) == table.text()


@pytest.mark.parametrize(("rows", "align", "message"), [
    ([["only one"]], None, "row 0 has 1 cells"),
    ([["a", "b"]], "l", "one of 'l'/'r' per column"),
    ([["a", "b"]], "lc", "one of 'l'/'r' per column"),
])
def test_bad_tables_say_what_is_wrong(rows, align, message) -> None:
    with pytest.raises(ValueError, match=message):
        Table(["a", "b"], rows, align=align)


def test_a_table_needs_a_column() -> None:
    with pytest.raises(ValueError, match="at least one column"):
        Table([], [])


# The tables a reader compares across rows, by chapter: each header must head a Table output
# (text/html) of the committed notebook, not a printed fixed-width block that a narrow page clips.
COMPARED_TABLES = {
    "05_fast_hessian": [
        ["convolution", "H_out", "H_in = conv^T(H_out, W^2)"],
        ["term", "curvature of the switch"],
        ["switch", "Hessian", "GGN"],
        ["method", "BN", "rel. error", "norm ratio", "Pearson", "Spearman", "agreement",
         "keep agr.", "pruned"],
        ["method", "cost (x forward+backward)"],
        ["method", "groups decided differently", "rel. error", "Spearman"],
        ["method", "step 0", "step 4", "step 7"],
        ["method", "agreement", "interval half-width", "cost"],
    ],
    "07_cifar10_search": [
        ["key", "paper", "quick"],
        ["edge", "parent", "sep3", "sep5", "dil3", "dil5", "max", "avg", "skip"],
        ["phase", "round", "epoch", "images", "loss", "penalty", "train acc", "val acc"],
        ["lambda_o", "params", "official", "paper (M)", "in range", "MACs (M)",
         "official MACs (M)", "paper error %"],
    ],
    "08_training_found_cells": [
        ["lambda_o", "paper error %", "paper params M", "our error %", "our params M"],
    ],
    "14_practitioners": [
        ["key", "paper", "quick"],
        ["", "paper (cpu)", "quick (cpu)"],
        ["factor", "value", "batch", "C", "cells", "switches", "step ms", "img/s",
         "recursion x", "mc_ggn x"],
        ["record", "batch", "device", "switch step", "recursion", "ops fused", "ops plain"],
        ["dtype", "eps", "largest", "rel. error of 1/3", "70000 becomes"],
        ["record", "network", "variant", "images/s", "speed"],
    ],
    "06_bayesnas_algorithm": [
        ["round", "normal pairs", "reduction pairs", "supernet val. acc."],
        ["seed", "lambda", "cell", "pairs", "derived", "dangling", "dangling w/o node rule",
         "nodes"],
        ["cells", "rows", "pairs (normal)", "params (C=4, 3 cells)", "one-shot test top-1",
         "sd"],
        ["cells", "n", "test top-1", "95% interval", "params", "params / BayesNAS"],
        ["BayesNAS minus", "mean", "95% interval", "BayesNAS better in"],
        ["threshold", "normal pairs kept", "reduction pairs kept"],
    ],
    "10_compression": [
        ["gate", "before", "threshold", "after prox"],
        ["network", "gate", "kind", "units", "producer", "consumer", "incoming", "outgoing",
         "group size"],
        ["layer", "units", "recursion rel. error", "recursion corr", "MC GGN rel. error",
         "MC GGN corr"],
        ["method", "misclassified"],
        ["round", "layer", "before", "pruned, gate at 0", "pruned by gamma", "after",
         "mean kept |s|", "median kept omega"],
        ["method", "units or compression", "test error %"],
        ["method", "units", "params", "test error %"],
        ["lambda", "gate0 kept", "gate1 kept", "gate2 kept", "units kept"],
        ["||v||", "closed form", "grid"],
    ],
    "11_reproduction_report": [
        ["record under data/results/", "kind", "dataset", "profile", "device", "wall time"],
        ["seed", "lambda", "cell", "kept pairs", "live nodes", "dangling",
         "dangling w/o node rule"],
        ["model", "test error %", "params M", "search GPU days"],
        ["lambda_o", "paper error %", "our error %"],
        ["", "top-1 error %", "top-5 error %"],
        ["step", "median s", "min..max s", "x fwd+bwd"],
        ["step", "median s", "x fwd+bwd"],
        ["method", "wrong images vs dense", "binomial se of one error rate (images)"],
        ["lambda", "cell", "mean kept pairs", "searches dangling w/o node rule"],
        ["BayesNAS minus", "sign test p", "95% bootstrap interval of the mean"],
        ["BayesNAS minus", "paired se", "unpaired se", "correlation"],
        ["question", "paper", "ours", "status"],
    ],
}


def _table_headers(notebook: Path) -> list[list[str]]:
    """The header row of every HTML table among the notebook's code-cell outputs."""
    headers = []
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        for output in cell.get("outputs", []):
            page = "".join(output.get("data", {}).get("text/html", ""))
            for head in re.findall(r"<thead><tr>(.*?)</tr></thead>", page):
                headers.append([html.unescape(h) for h in re.findall(r">([^<]*)</th>", head)])
    return headers


@pytest.mark.parametrize("chapter", sorted(COMPARED_TABLES))
def test_compared_tables_are_tables_in_the_notebooks(chapter: str) -> None:
    found = _table_headers(REPO_ROOT / "chapters" / f"{chapter}.ipynb")
    missing = [header for header in COMPARED_TABLES[chapter] if header not in found]
    assert not missing, f"{chapter}: no Table output headed {missing}"
