"""The exercise convention of the chapters, and the nbgrader cell metadata it stands for.

A graded exercise lives in the chapter's MyST source (``chapters/NN_slug.md``) as its gated
solution block holds it for the reader of the full book::

    ```{solution-start} ex-preface-means      <- the exercise's label names the block
    :class: dropdown
    ```

    Prose of the worked solution (removed from the student version).

    ```{code-cell} ipython3                   <- a solution cell: it holds a solution region
    ### BEGIN SOLUTION
    means = ...                               <- replaced by `raise NotImplementedError()`
    ### END SOLUTION
    print(means.shape)                        <- kept: the student's skeleton
    ```

    ```{code-cell} ipython3                   <- the tests cell: tagged `points-N`
    :tags: [points-2]
    assert means.shape == (10, 1, 8, 8)       <- visible tests, kept for the student
    ### BEGIN HIDDEN TESTS
    assert ...                                <- hidden tests, only the autograder has them
    ### END HIDDEN TESTS
    ```

    ```{solution-end}
    ```

The MyST sources carry no ``nbgrader`` metadata themselves: mystmd (1.11) warns about every
code-cell option it does not know, and the book builds with zero warnings. :func:`mark_exercises`
derives the metadata from the markers above, and ``bayesnas-book book sync`` writes it into every
``.ipynb``, which instructors can then use with nbgrader directly:

* a solution cell: ``{grade: false, solution: true, locked: false, grade_id: "LABEL-solution",
  schema_version: 3}`` (``LABEL-solution-2``, ... for further solution cells of the block);
* the tests cell: ``{grade: true, solution: false, locked: true, points: N,
  grade_id: "LABEL-tests", schema_version: 3}``.

This module needs neither nbgrader nor a kernel: ``book sync --check`` uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import nbformat

__all__ = [
    "BEGIN_HIDDEN_TESTS",
    "BEGIN_SOLUTION",
    "END_HIDDEN_TESTS",
    "END_SOLUTION",
    "AssignmentError",
    "Exercise",
    "exercise_blocks",
    "mark_exercises",
    "solution_block_lines",
]

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN_TESTS = "### BEGIN HIDDEN TESTS"
END_HIDDEN_TESTS = "### END HIDDEN TESTS"
SCHEMA_VERSION = 3  # nbgrader's cell metadata schema
POINTS_TAG = re.compile(r"^points-(\d+(?:\.\d+)?)$")

_SOLUTION_START = re.compile(r"^(`{3,}|:{3,})\s*\{solution-start\}\s+(\S+)")
_SOLUTION_END = re.compile(r"^(`{3,}|:{3,})\s*\{solution-end\}")


class AssignmentError(ValueError):
    """A chapter breaks the exercise convention, or an assignment cannot be built or graded."""


@dataclass
class Exercise:
    """One graded exercise of a notebook.

    Attributes:
        label: the exercise's label, e.g. ``"ex-preface-means"``.
        solution_cells: indices of its solution cells in the notebook.
        tests_cell: index of its tests cell.
        points: what the tests cell is worth.
    """

    label: str
    solution_cells: list[int] = field(default_factory=list)
    tests_cell: int = -1
    points: float = 0.0

    @property
    def tests_id(self) -> str:
        """The tests cell's nbgrader ``grade_id``."""
        return f"{self.label}-tests"


def solution_block_lines(lines: list[str], inside: bool) -> tuple[list[bool], bool]:
    """Which markdown lines belong to a gated solution block (its fences included).

    Args:
        lines: the lines of one markdown cell.
        inside: whether the cell starts inside a block (a block may span cells).

    Returns:
        A flag per line (True: the line is part of a block) and whether the cell ends inside one.
    """
    flags = []
    fence: str | None = None  # the closing fence of the solution-start/end directive being read
    closing_end = False
    for line in lines:
        stripped = line.strip()
        if fence is not None:
            flags.append(True)
            if stripped == fence:
                fence = None
                if closing_end:
                    inside = False
            continue
        start, end = _SOLUTION_START.match(stripped), _SOLUTION_END.match(stripped)
        if start or (end and inside):
            fence, closing_end, inside = (start or end).group(1), bool(end), True
            flags.append(True)
            continue
        flags.append(inside)
    return flags, inside


def exercise_blocks(notebook: nbformat.NotebookNode) -> list[tuple[str, list[int]]]:
    """The gated solution blocks of a notebook: each label with the code cells inside it.

    Raises:
        AssignmentError: if a ``solution-start`` opens inside another block.
    """
    blocks: list[tuple[str, list[int]]] = []
    inside = False
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            if inside:
                blocks[-1][1].append(index)
            continue
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            start = _SOLUTION_START.match(line.strip())
            if start:
                if inside:
                    raise AssignmentError(f"cell {index}: solution block {start.group(2)} opens inside {blocks[-1][0]}")
                blocks.append((start.group(2), []))
                inside = True
            elif _SOLUTION_END.match(line.strip()):
                inside = False
    return blocks


def _count(source: str, marker: str) -> int:
    return sum(1 for line in source.splitlines() if marker in line)


def _points(cell: nbformat.NotebookNode) -> float | None:
    values = [m.group(1) for tag in cell.get("metadata", {}).get("tags", ()) if (m := POINTS_TAG.match(tag))]
    if len(values) > 1:
        raise AssignmentError(f"a tests cell has one `points-N` tag, got {values}")
    return float(values[0]) if values else None


def _check_region(source: str, begin: str, end: str, where: str) -> bool:
    """Whether ``source`` holds ``begin``/``end`` regions; they must alternate, none nested."""
    open_region = False
    found = False
    for line in source.splitlines():
        if begin in line:
            if open_region:
                raise AssignmentError(f"{where}: `{begin}` inside another region")
            open_region = found = True
        elif end in line:
            if not open_region:
                raise AssignmentError(f"{where}: `{end}` without `{begin}`")
            open_region = False
    if open_region:
        raise AssignmentError(f"{where}: `{begin}` without `{end}`")
    return found


def mark_exercises(notebook: nbformat.NotebookNode, name: str = "notebook") -> list[Exercise]:
    """Write nbgrader's metadata into the exercise cells of ``notebook`` (in place).

    Every code cell inside a gated solution block that holds a solution region becomes a
    solution cell; the cell tagged ``points-N`` becomes the block's tests cell. Code cells of a
    block without either stay ungraded (the student version drops them). Stale ``nbgrader``
    metadata is replaced, so the result depends on the markers alone.

    Args:
        notebook: a chapter read with jupytext (``md:myst``) or nbformat.
        name: how errors name the notebook.

    Returns:
        The graded exercises, in notebook order.

    Raises:
        AssignmentError: if a marker is outside a solution block or unbalanced, a block has
            solution cells but no tests cell (or tests before its solutions, or two tests
            cells), or a tests cell has a solution region.
    """
    for cell in notebook.cells:
        cell.get("metadata", {}).pop("nbgrader", None)
    blocks = exercise_blocks(notebook)
    inside = {index for _, cells in blocks for index in cells}
    for index, cell in enumerate(notebook.cells):
        if index in inside or cell.cell_type != "code":
            continue
        for marker in (BEGIN_SOLUTION, BEGIN_HIDDEN_TESTS):
            if _count(cell.source, marker):
                raise AssignmentError(f"{name} cell {index}: `{marker}` outside a solution block")
        if _points(cell) is not None:
            raise AssignmentError(f"{name} cell {index}: a `points-N` tag outside a solution block")
    exercises = []
    for label, cells in blocks:
        exercise = Exercise(label)
        for index in cells:
            cell = notebook.cells[index]
            where = f"{name} cell {index} ({label})"
            has_solution = _check_region(cell.source, BEGIN_SOLUTION, END_SOLUTION, where)
            has_hidden = _check_region(cell.source, BEGIN_HIDDEN_TESTS, END_HIDDEN_TESTS, where)
            points = _points(cell)
            if points is not None:
                if has_solution:
                    raise AssignmentError(f"{where}: a tests cell must not hold a solution region")
                if exercise.tests_cell >= 0:
                    raise AssignmentError(f"{where}: a second tests cell; one per exercise")
                if not exercise.solution_cells:
                    raise AssignmentError(f"{where}: the tests cell comes before any solution cell")
                if points <= 0:
                    raise AssignmentError(f"{where}: points must be > 0, got {points:g}")
                exercise.tests_cell, exercise.points = index, points
                cell.metadata["nbgrader"] = {
                    "grade": True, "grade_id": exercise.tests_id, "locked": True,
                    "points": int(points) if points.is_integer() else points,
                    "schema_version": SCHEMA_VERSION, "solution": False,
                }
            elif has_hidden:
                raise AssignmentError(f"{where}: hidden tests outside a tests cell (tag it `points-N`)")
            elif has_solution:
                if exercise.tests_cell >= 0:
                    raise AssignmentError(f"{where}: a solution cell after the tests cell")
                number = len(exercise.solution_cells) + 1
                suffix = "" if number == 1 else f"-{number}"
                exercise.solution_cells.append(index)
                cell.metadata["nbgrader"] = {
                    "grade": False, "grade_id": f"{label}-solution{suffix}", "locked": False,
                    "schema_version": SCHEMA_VERSION, "solution": True,
                }
        if exercise.solution_cells and exercise.tests_cell < 0:
            raise AssignmentError(f"{name}: exercise {label} has solution cells but no tests cell (tag one `points-N`)")
        if exercise.solution_cells:
            exercises.append(exercise)
    return exercises
