"""Tables a reader compares, shown as real tables: HTML on a page, aligned text in a terminal.

A chapter that prints a table with f-strings gives the rendered book one long ``<pre>`` line per
row, which is clipped or wraps mid-column on a narrow page. :class:`Table` is the last expression
of a cell instead: Jupyter stores both ``text/html`` (the book-theme and JupyterLab render a table
that fits the column) and ``text/plain`` (the same table as aligned text; nbval compares both).
:meth:`Table.markdown` gives the Markdown form for files and notes.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Table"]


def _escape(cell: str) -> str:
    """A cell's text safe inside a Markdown table row (``|`` and newlines would end the cell)."""
    return cell.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _markdown_row(cells: Sequence[object]) -> str:
    return f"| {' | '.join(_escape(str(c)) for c in cells)} |"


@dataclass(frozen=True)
class Table:
    """A table of strings with a header.

    Args:
        header: column titles, ``(C,)``.
        rows: the rows, each ``(C,)``; numbers are formatted by the caller, as printed.
        align: one letter per column, ``"l"`` or ``"r"`` (default: first column left, others right).
        caption: an optional line shown above the table.

    Raises:
        ValueError: a row or ``align`` whose length is not the header's, or an unknown alignment.
    """

    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    align: str | None = None
    caption: str = ""

    def __post_init__(self) -> None:
        width = len(self.header)
        if width == 0:
            raise ValueError("a table needs at least one column in `header`")
        for index, row in enumerate(self.rows):
            if len(row) != width:
                raise ValueError(
                    f"row {index} has {len(row)} cells, the header {width}: {list(row)!r}"
                )
        if self.align is not None and (len(self.align) != width or set(self.align) - {"l", "r"}):
            raise ValueError(
                f"`align` needs one of 'l'/'r' per column ({width}), got {self.align!r}"
            )

    @property
    def alignment(self) -> str:
        """One letter per column: the given ``align``, or left then right."""
        return self.align or "l" + "r" * (len(self.header) - 1)

    def markdown(self) -> str:
        """The table as GitHub/MyST Markdown (pipes escaped)."""
        rule = ["---:" if a == "r" else ":---" for a in self.alignment]
        lines = [_markdown_row(self.header), f"| {' | '.join(rule)} |"]
        lines += [_markdown_row(row) for row in self.rows]
        return (f"{self.caption}\n\n" if self.caption else "") + "\n".join(lines)

    def text(self) -> str:
        """The table as aligned plain text, columns separated by two spaces."""
        cells = [[str(c) for c in self.header], *[[str(c) for c in row] for row in self.rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.header))]

        def line(row: list[str]) -> str:
            return "  ".join(
                c.rjust(w) if a == "r" else c.ljust(w)
                for c, w, a in zip(row, widths, self.alignment, strict=True)
            ).rstrip()

        body = [line(cells[0]), "  ".join("-" * w for w in widths), *map(line, cells[1:])]
        return (f"{self.caption}\n" if self.caption else "") + "\n".join(body)

    def html(self) -> str:
        """The table as an HTML ``<table>`` (cells escaped, numbers right-aligned as asked)."""

        def cells(row: Sequence[object], tag: str) -> str:
            return "".join(
                f'<{tag} style="text-align:{"right" if a == "r" else "left"}">'
                f"{html.escape(str(c))}</{tag}>"
                for c, a in zip(row, self.alignment, strict=True)
            )

        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in self.rows)
        head = f"<thead><tr>{cells(self.header, 'th')}</tr></thead>"
        return f"<table>{caption}{head}<tbody>{body}</tbody></table>"

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return self.text()

    __str__ = __repr__
