"""Grade a student's chapter notebook: the hidden tests run, points per exercise.

The grading notebook is the submission with each tests cell (nbgrader ``grade: true``) replaced
by the reference's, hidden tests included, matched by ``grade_id``; a tests cell the student
deleted is put back after the last cell of the submission that precedes it in the reference.
It runs top to bottom in one kernel of the current environment, in the chapters folder, with
the quick profile (as ``book sync`` runs the chapters), and **with errors allowed**: a stub
that raises ``NotImplementedError`` fails its own exercise only, and every later cell still runs.
A cell that runs past the timeout is interrupted and counts as failed.

Points come from nbgrader's own rule (``nbgrader.utils.determine_grade``): a tests cell whose
output holds an error (or anything on stderr) earns 0, otherwise its full points.

.. note::
   Exercises must not depend on one another's solutions (each reads only the chapter's cells
   before the exercises): then a failed exercise cannot cost another its points. The round-trip
   test (``tests/test_assignments.py``) runs every stub first and every reference solution after
   it, in one kernel, which checks that independence.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from bayesnas_book.assignments.markers import AssignmentError
from bayesnas_book.assignments.student import ASSIGNMENT_METADATA

__all__ = ["ExerciseScore", "GradeReport", "execute_for_grading", "grade_notebook", "grade_submission",
           "grading_notebook", "score_notebook"]

DEFAULT_TIMEOUT_S = 300


@dataclass(frozen=True)
class ExerciseScore:
    """The outcome of one tests cell.

    Attributes:
        grade_id: the tests cell's id, ``LABEL-tests``.
        points: points earned.
        max_points: points possible.
        error: ``"ename: evalue"`` of the tests cell's error ("" when it passed).
    """

    grade_id: str
    points: float
    max_points: float
    error: str = ""

    @property
    def exercise(self) -> str:
        """The exercise's label."""
        return self.grade_id.removesuffix("-tests")


@dataclass
class GradeReport:
    """Points per exercise of one submission."""

    chapter: str
    scores: list[ExerciseScore] = field(default_factory=list)

    @property
    def points(self) -> float:
        return sum(s.points for s in self.scores)

    @property
    def max_points(self) -> float:
        return sum(s.max_points for s in self.scores)

    def to_dict(self) -> dict:
        """A JSON-ready dictionary: chapter, per-exercise scores, total and maximum."""
        return {
            "chapter": self.chapter,
            "exercises": [{"exercise": s.exercise, **asdict(s)} for s in self.scores],
            "points": self.points,
            "max_points": self.max_points,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def describe(self) -> str:
        """One line per exercise, then the total."""
        width = max([len(s.exercise) for s in self.scores] + [8])
        lines = [f"{self.chapter}"]
        for s in self.scores:
            note = f"  ({s.error})" if s.error else ""
            lines.append(f"  {s.exercise:<{width}}  {s.points:g} / {s.max_points:g}{note}")
        lines.append(f"  {'total':<{width}}  {self.points:g} / {self.max_points:g}")
        return "\n".join(lines)


def _grade_cells(notebook: nbformat.NotebookNode) -> dict[str, int]:
    return {
        cell.metadata["nbgrader"]["grade_id"]: index
        for index, cell in enumerate(notebook.cells)
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade")
    }


def grading_notebook(submission: nbformat.NotebookNode, reference: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The submission with the reference's tests cells (hidden tests included), outputs cleared.

    Raises:
        AssignmentError: if the reference has no tests cells.
    """
    reference_cells = _grade_cells(reference)
    if not reference_cells:
        raise AssignmentError("the reference notebook has no tests cells (nbgrader `grade: true`)")
    graded = nbformat.from_dict(submission)
    for cell in graded.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    present = _grade_cells(graded)
    for grade_id, index in present.items():
        if grade_id in reference_cells:
            graded.cells[index] = nbformat.from_dict(reference.cells[reference_cells[grade_id]])
            graded.cells[index].outputs, graded.cells[index].execution_count = [], None
    # A deleted tests cell goes back after its reference predecessor (or at the end).
    for grade_id, ref_index in reference_cells.items():
        if grade_id in _grade_cells(graded):
            continue
        cell = nbformat.from_dict(reference.cells[ref_index])
        cell.outputs, cell.execution_count = [], None
        anchor = len(graded.cells)
        previous_ids = [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in reference.cells[:ref_index]]
        positions = {c.get("metadata", {}).get("nbgrader", {}).get("grade_id"): i for i, c in enumerate(graded.cells)}
        for previous in reversed(previous_ids):
            if previous is not None and previous in positions:
                anchor = positions[previous] + 1
                break
        graded.cells.insert(anchor, cell)
    return graded


def execute_for_grading(notebook: nbformat.NotebookNode, cwd: Path, timeout: int = DEFAULT_TIMEOUT_S) -> None:
    """Run every cell in place, errors allowed, each cell interrupted after ``timeout`` seconds.

    The kernel is shut down when the notebook is done (:func:`bayesnas_book.book.execute_notebook`).
    """
    from bayesnas_book.book import execute_notebook, quick_profile_environment

    if timeout <= 0:
        raise AssignmentError(f"`timeout` must be > 0 seconds, got {timeout}")
    with quick_profile_environment():
        execute_notebook(notebook, cwd, timeout, allow_errors=True, interrupt_on_timeout=True)


def _error_of(cell: nbformat.NotebookNode) -> str:
    """``"ename: first line of evalue"`` of a cell's first error, "output on stderr", or ""."""
    for output in cell.get("outputs", ()):
        if output.get("output_type") == "error":
            lines = str(output.get("evalue", "")).strip().splitlines()
            return f"{output.get('ename')}: {lines[0][:120]}" if lines else str(output.get("ename"))
    if any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in cell.get("outputs", ())):
        return "output on stderr"
    return ""


def score_notebook(notebook: nbformat.NotebookNode, chapter: str = "") -> GradeReport:
    """Points per tests cell of an executed grading notebook (nbgrader's ``determine_grade``)."""
    from nbgrader.utils import determine_grade

    report = GradeReport(chapter)
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not meta.get("grade"):
            continue
        points, max_points = determine_grade(cell)
        report.scores.append(ExerciseScore(meta["grade_id"], float(points or 0.0), float(max_points), _error_of(cell)))
    return report


def grade_notebook(submission: nbformat.NotebookNode, reference: nbformat.NotebookNode, cwd: Path,
                   chapter: str = "", timeout: int = DEFAULT_TIMEOUT_S) -> tuple[GradeReport, nbformat.NotebookNode]:
    """Grade a submission against a reference; returns the report and the executed notebook."""
    graded = grading_notebook(submission, reference)
    execute_for_grading(graded, cwd, timeout)
    return score_notebook(graded, chapter), graded


def _chapter_of(path: Path, notebook: nbformat.NotebookNode) -> str:
    return notebook.metadata.get(ASSIGNMENT_METADATA, {}).get("chapter") or path.stem


def grade_submission(submission: Path, reference_dir: Path = Path("chapters"), timeout: int = DEFAULT_TIMEOUT_S,
                     cwd: Path | None = None) -> GradeReport:
    """Grade a student's notebook with the hidden tests of its chapter.

    Args:
        submission: the student's ``NN_slug.ipynb`` (from ``assignments build``'s ``release/``).
        reference_dir: a folder holding the reference ``NN_slug.ipynb`` with nbgrader metadata:
            ``chapters/`` (after ``book sync``) or ``assignments build``'s ``autograder/``.
        timeout: seconds allowed per cell.
        cwd: where the kernel runs (default: ``reference_dir``).

    Returns:
        The points per exercise.

    Raises:
        AssignmentError: if a file is missing or unreadable, or the reference has no tests.
    """
    submission, reference_dir = Path(submission), Path(reference_dir)
    if not submission.is_file():
        raise AssignmentError(f"`submission` must be a notebook file, got {submission} (not found)")
    try:
        notebook = nbformat.read(submission, as_version=4)
    except Exception as error:  # nbformat raises several kinds for a broken file
        raise AssignmentError(f"{submission} is not a readable notebook: {error}") from None
    chapter = _chapter_of(submission, notebook)
    reference_path = reference_dir / f"{chapter}.ipynb"
    if not reference_path.is_file():
        raise AssignmentError(
            f"no reference notebook {reference_path} for chapter {chapter}: pass the `chapters/` folder "
            "or the autograder/ folder of `bayesnas-book assignments build`"
        )
    reference = nbformat.read(reference_path, as_version=4)
    report, _ = grade_notebook(notebook, reference, Path(cwd or reference_dir), chapter, timeout)
    return report
