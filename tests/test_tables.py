"""Tables shown as Markdown on a page and as aligned text elsewhere."""

from __future__ import annotations

import pytest

from bayesnas_book.tables import Table


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
