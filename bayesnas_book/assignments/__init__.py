"""Assignments from the chapters' exercises: nbgrader markers, student builds, autograding.

* :mod:`~bayesnas_book.assignments.markers`: the exercise convention of the MyST sources and
  the nbgrader cell metadata it stands for (``book sync`` writes it into every ``.ipynb``).
* :mod:`~bayesnas_book.assignments.student`: ``bayesnas-book assignments build OUT``: student
  notebooks (nbgrader's ``ClearSolutions``, ``ClearHiddenTests``, ``ClearOutput`` via
  nbconvert), the autograder's reference notebooks and the student MyST site.
* :mod:`~bayesnas_book.assignments.grading`: ``bayesnas-book assignments grade SUBMISSION``:
  the hidden tests run on a student's notebook, points per exercise.

How to mark an exercise: ``chapters/ASSIGNMENTS.md``.
"""

from bayesnas_book.assignments.grading import (
    ExerciseScore,
    GradeReport,
    grade_notebook,
    grade_submission,
    grading_notebook,
    score_notebook,
)
from bayesnas_book.assignments.markers import (
    AssignmentError,
    Exercise,
    exercise_blocks,
    mark_exercises,
)
from bayesnas_book.assignments.student import (
    AssignmentBuild,
    ClearSolutionBlocks,
    build_assignments,
    reference_notebook,
    student_markdown,
    student_notebook,
)

__all__ = [
    "AssignmentBuild",
    "AssignmentError",
    "ClearSolutionBlocks",
    "Exercise",
    "ExerciseScore",
    "GradeReport",
    "build_assignments",
    "exercise_blocks",
    "grade_notebook",
    "grade_submission",
    "grading_notebook",
    "mark_exercises",
    "reference_notebook",
    "score_notebook",
    "student_markdown",
    "student_notebook",
]
