"""Assignments: nbgrader markers in every chapter, student builds without solutions, grading.

The round trip runs each chapter once (module-scoped per chapter): the student notebook with
the hidden tests put back, then every exercise's reference solution and tests appended, all in
one kernel. Every stub must fail its tests, every reference must pass them after the stubs ran
(so exercises do not depend on one another), and nothing else in the student notebook may fail.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jupytext
import nbformat
import pytest

from bayesnas_book.assignments import (
    AssignmentError,
    build_assignments,
    exercise_blocks,
    grading_notebook,
    mark_exercises,
    reference_notebook,
    score_notebook,
    student_markdown,
    student_notebook,
)
from bayesnas_book.assignments.grading import execute_for_grading
from bayesnas_book.assignments.markers import (
    BEGIN_HIDDEN_TESTS,
    BEGIN_SOLUTION,
    END_HIDDEN_TESTS,
    END_SOLUTION,
    solution_block_lines,
)
from bayesnas_book.book import chapter_sources, quick_profile_environment
from bayesnas_book.cli import main
from tests.conftest import REPO_ROOT, process_alive

CHAPTERS = REPO_ROOT / "chapters"
SOURCES = chapter_sources(CHAPTERS)
SECRET_MIN_CHARS = 12  # shorter lines ("return on", ")") may legitimately occur elsewhere
REFERENCE_SUFFIX = "-reference"
ROUND_TRIP_WORKERS = 2  # kernels at once


# ------------------------------------------------------------------------------ helpers


def _split_regions(source: str) -> tuple[set[str], set[str]]:
    """(lines inside solution or hidden-test regions, lines outside them), stripped."""
    inside, hidden, shown = False, set(), set()
    for line in source.splitlines():
        if BEGIN_SOLUTION in line or BEGIN_HIDDEN_TESTS in line:
            inside = True
        elif END_SOLUTION in line or END_HIDDEN_TESTS in line:
            inside = False
        else:
            (hidden if inside else shown).add(line.strip())
    return hidden, shown


def secret_lines(reference: nbformat.NotebookNode) -> set[str]:
    """Lines only the reference may hold: solution regions, hidden tests, solution prose."""
    secret, public = set(), set()
    inside = False
    in_block = {i for _, cells in exercise_blocks(reference) for i in cells}
    for index, cell in enumerate(reference.cells):
        lines = cell.source.splitlines()
        if cell.cell_type == "markdown":
            flags, inside = solution_block_lines(lines, inside)
            for line, hidden in zip(lines, flags, strict=True):
                (secret if hidden and "{solution-" not in line and line.strip() != "```" else public).add(line.strip())
            continue
        if index in in_block and "nbgrader" not in cell.metadata:
            secret |= {line.strip() for line in lines}  # an ungraded solution cell is dropped whole
            continue
        hidden, shown = _split_regions(cell.source)
        secret |= hidden
        public |= shown
    return {line for line in secret - public if len(line) >= SECRET_MIN_CHARS}


def _all_lines(notebook: nbformat.NotebookNode) -> set[str]:
    return {line.strip() for cell in notebook.cells for line in cell.source.splitlines()}


# ------------------------------------------------------------------------------ the convention

TINY = """---
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Tiny

```{{exercise}}
:label: ex-tiny

Compute six times seven.
```

```{{solution-start}} ex-tiny
:class: dropdown
```

The product is the answer to everything.

```{{code-cell}} ipython3
{solution}
```

```{{code-cell}} ipython3
{tests}
```

```{{solution-end}}
```
"""
SOLUTION = "### BEGIN SOLUTION\nanswer = 6 * 7\n### END SOLUTION\nprint(answer)"
TESTS = ":tags: [points-3]\n\nassert isinstance(answer, int)\n### BEGIN HIDDEN TESTS\nassert answer == 42\n### END HIDDEN TESTS"


def _tiny(solution: str = SOLUTION, tests: str = TESTS) -> nbformat.NotebookNode:
    return jupytext.reads(TINY.format(solution=solution, tests=tests), fmt="md:myst")


def test_markers_become_nbgrader_metadata() -> None:
    notebook = _tiny()
    (exercise,) = mark_exercises(notebook)
    assert (exercise.label, exercise.points, exercise.tests_id) == ("ex-tiny", 3.0, "ex-tiny-tests")
    solution, tests = (notebook.cells[i].metadata["nbgrader"] for i in (*exercise.solution_cells, exercise.tests_cell))
    assert solution == {"grade": False, "grade_id": "ex-tiny-solution", "locked": False, "schema_version": 3, "solution": True}
    assert tests == {"grade": True, "grade_id": "ex-tiny-tests", "locked": True, "points": 3, "schema_version": 3,
                     "solution": False}


@pytest.mark.parametrize(
    ("solution", "tests", "message"),
    [
        (SOLUTION, "assert answer == 42", r"ex-tiny has solution cells but no tests cell"),
        (SOLUTION, ":tags: [points-0]\n\nassert answer", r"points must be > 0, got 0"),
        (SOLUTION, ":tags: [points-1, points-2]\n\nassert answer", r"one `points-N` tag, got \['1', '2'\]"),
        (SOLUTION, ":tags: [points-1]\n\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION", r"must not hold a solution region"),
        (SOLUTION, "### BEGIN HIDDEN TESTS\nassert answer\n### END HIDDEN TESTS", r"hidden tests outside a tests cell"),
        ("### BEGIN SOLUTION\nanswer = 42", TESTS, r"`### BEGIN SOLUTION` without `### END SOLUTION`"),
        ("### END SOLUTION\nanswer = 42", TESTS, r"`### END SOLUTION` without `### BEGIN SOLUTION`"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", TESTS, r"inside another region"),
        (TESTS, SOLUTION, r"the tests cell comes before any solution cell"),
    ],
)
def test_broken_conventions_are_named(solution: str, tests: str, message: str) -> None:
    with pytest.raises(AssignmentError, match=message):
        mark_exercises(_tiny(solution, tests), "tiny.md")


def test_markers_outside_a_solution_block_are_refused() -> None:
    notebook = _tiny()
    notebook.cells.insert(0, nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION"))
    with pytest.raises(AssignmentError, match=r"tiny.md cell 0: `### BEGIN SOLUTION` outside a solution block"):
        mark_exercises(notebook, "tiny.md")
    notebook.cells[0] = nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["points-1"]})
    with pytest.raises(AssignmentError, match=r"a `points-N` tag outside a solution block"):
        mark_exercises(notebook, "tiny.md")


def test_student_version_of_the_tiny_chapter() -> None:
    reference = _tiny()
    mark_exercises(reference)
    student = student_notebook(reference)
    text = nbformat.writes(student)
    for secret in ("6 * 7", "answer == 42", "HIDDEN TESTS", "SOLUTION", "answer to everything", "solution-start"):
        assert secret not in text, secret
    sources = [c.source for c in student.cells if c.cell_type == "code"]
    assert sources == ["# YOUR CODE HERE\nraise NotImplementedError()\nprint(answer)", "assert isinstance(answer, int)"]
    assert "Compute six times seven." in text  # the exercise itself stays
    page = student_markdown(student)
    assert "nbgrader" not in page and "{exercise}" in page and "points-3" in page
    # The reference is untouched.
    assert "answer = 6 * 7" in reference.cells[1].source or any("6 * 7" in c.source for c in reference.cells)


def test_every_code_solution_is_graded() -> None:
    """Every exercise of every chapter whose solution has code is marked (chapters/ASSIGNMENTS.md)."""
    ungraded = []
    for source in SOURCES:
        notebook = jupytext.read(source, fmt="md:myst")
        graded = {e.label for e in mark_exercises(notebook, source.name)}
        ungraded += [f"{source.stem}: {label}" for label, cells in exercise_blocks(notebook) if cells and label not in graded]
    assert not ungraded, f"exercises with code solutions but no nbgrader markers: {ungraded}"


def test_grade_cells_get_back_when_deleted() -> None:
    reference = _tiny()
    mark_exercises(reference)
    student = student_notebook(reference)
    student.cells = [c for c in student.cells if not c.metadata.get("nbgrader", {}).get("grade")]
    graded = grading_notebook(student, reference)
    tests = [c for c in graded.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(tests) == 1 and "answer == 42" in tests[0].source
    with pytest.raises(AssignmentError, match="the reference notebook has no tests cells"):
        grading_notebook(student, student)


# ------------------------------------------------------------------------------ every chapter


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    return build_assignments(REPO_ROOT, tmp_path_factory.mktemp("assignments"))


def _round_trip(source: Path) -> tuple[dict, dict, list[str]]:
    """Run the student notebook (hidden tests back) and then every reference solution."""
    reference, exercises = reference_notebook(source)
    graded = grading_notebook(student_notebook(reference), reference)
    for exercise in exercises:
        for index in (*exercise.solution_cells, exercise.tests_cell):
            cell = nbformat.from_dict(reference.cells[index])
            cell.metadata["nbgrader"]["grade_id"] += REFERENCE_SUFFIX
            cell.outputs, cell.execution_count = [], None
            graded.cells.append(cell)
    execute_for_grading(graded, CHAPTERS, timeout=600)
    scores = {s.grade_id: s for s in score_notebook(graded).scores}
    stubs = {s: v for s, v in scores.items() if not s.endswith(REFERENCE_SUFFIX)}
    references = {s.removesuffix(REFERENCE_SUFFIX): v for s, v in scores.items() if s.endswith(REFERENCE_SUFFIX)}
    stray = [
        f"cell {i}: {o.get('ename')}: {o.get('evalue')}"
        for i, cell in enumerate(graded.cells)
        if cell.cell_type == "code" and "nbgrader" not in cell.metadata
        for o in cell.get("outputs", ())
        if o.get("output_type") == "error"
    ]
    return stubs, references, stray


@pytest.fixture(scope="module")
def round_trips() -> dict[str, tuple[dict, dict, list[str]] | BaseException]:
    """Every chapter's round trip, two kernels at a time (each chapter runs single-threaded).

    Measured on the shared 2-core CPU: about 3 minutes for chapters 00-08 (each chapter runs
    once, about as long as its `book sync`).
    """
    with quick_profile_environment():  # set once here: no thread unsets it
        graded = [s for s in SOURCES if reference_notebook(s)[1]]
        with ThreadPoolExecutor(max_workers=ROUND_TRIP_WORKERS) as pool:
            futures = {s.stem: pool.submit(_round_trip, s) for s in graded}
        return {stem: f.exception() or f.result() for stem, f in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_round_trip(round_trips, source: Path) -> None:
    """Per exercise: the student stub fails its tests, the reference solution passes them."""
    _, exercises = reference_notebook(source)
    if not exercises:
        pytest.skip(f"{source.stem} has no graded exercises")
    outcome = round_trips[source.stem]
    if isinstance(outcome, BaseException):
        raise outcome
    stubs, references, stray = outcome
    labels = {f"{e.label}-tests" for e in exercises}
    assert set(stubs) == set(references) == labels
    for grade_id in sorted(labels):
        assert stubs[grade_id].points == 0, f"{grade_id}: the stub passes its tests"
        assert references[grade_id].points == references[grade_id].max_points, (
            f"{grade_id}: the reference solution fails its tests after the stubs ran: {references[grade_id].error}"
        )
    assert not stray, f"{source.stem}: cells outside the exercises fail in the student notebook: {stray}"


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_no_solution_survives_in_student_files(built, source: Path) -> None:
    reference, _ = reference_notebook(source)
    secrets = secret_lines(reference)
    release = nbformat.read(built.release[[p.stem for p in built.release].index(source.stem)], as_version=4)
    page = (built.site / "chapters" / source.name).read_text(encoding="utf-8")
    for name, lines in (("release notebook", _all_lines(release)), ("site page", {x.strip() for x in page.splitlines()})):
        leaked = sorted(secrets & lines)
        assert not leaked, f"{source.stem} {name} leaks: {leaked[:5]}"
    text = nbformat.writes(release) + page
    for marker in ("BEGIN SOLUTION", "HIDDEN TESTS", "{solution-start}", "{solution-end}", "nbgrader:"):
        assert marker not in text, f"{source.stem}: {marker!r} in the student files"
    assert not any(c.get("outputs") for c in release.cells if c.cell_type == "code"), "outputs cleared"
    # The autograder's reference keeps everything.
    autograder = nbformat.read(built.autograder[[p.stem for p in built.autograder].index(source.stem)], as_version=4)
    assert secrets <= _all_lines(autograder) | {x.strip() for c in reference.cells for x in c.source.splitlines()}


def test_committed_notebooks_carry_the_nbgrader_metadata() -> None:
    """`book sync` wrote the metadata the markers stand for (so nbgrader can use the .ipynb)."""
    for source in SOURCES:
        target = source.with_suffix(".ipynb")
        if not target.exists():
            continue
        stored = nbformat.read(target, as_version=4)
        expected, _ = reference_notebook(source)
        assert [c.metadata.get("nbgrader") for c in stored.cells] == [c.metadata.get("nbgrader") for c in expected.cells], source.stem


# ------------------------------------------------------------------------------ the commands


@pytest.mark.slow
def test_grade_command_on_stub_and_solved_submissions(built, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chapter = "00_preface"
    release = built.release[[p.stem for p in built.release].index(chapter)]
    autograder = release.parent.parent / "autograder"
    assert main(["assignments", "grade", str(release), "--reference", str(autograder), "--cwd", str(CHAPTERS)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"ex-preface-means\s+0 / 2\s+\(NameError", out), out
    assert re.search(r"total\s+0 / 2", out), out
    # A student who solves the exercise: the reference solution typed into the stub's cell.
    reference = nbformat.read(autograder / f"{chapter}.ipynb", as_version=4)
    solved = nbformat.read(release, as_version=4)
    solutions = {c.metadata["nbgrader"]["grade_id"]: c.source for c in reference.cells if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in solved.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in solutions:
            cell.source = solutions[grade_id].replace("### BEGIN SOLUTION\n", "").replace("### END SOLUTION\n", "")
    submission = tmp_path / "my_work.ipynb"  # any file name: the chapter is in the metadata
    nbformat.write(solved, submission)
    assert main(["assignments", "grade", str(submission), "--reference", str(autograder), "--cwd", str(CHAPTERS), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["chapter"] == chapter and report["points"] == report["max_points"] == 2.0
    assert report["exercises"] == [{"exercise": "ex-preface-means", "grade_id": "ex-preface-means-tests",
                                    "points": 2.0, "max_points": 2.0, "error": ""}]


def test_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assignments", "grade", str(tmp_path / "nope.ipynb")]) == 2
    assert "`submission` must be a notebook file" in capsys.readouterr().err
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "99_unknown.ipynb")
    (tmp_path / "empty").mkdir()
    assert main(["assignments", "grade", str(tmp_path / "99_unknown.ipynb"), "--reference", str(tmp_path / "empty")]) == 2
    assert "no reference notebook" in capsys.readouterr().err
    (tmp_path / "broken.ipynb").write_text("{not json")
    assert main(["assignments", "grade", str(tmp_path / "broken.ipynb")]) == 2
    assert "is not a readable notebook" in capsys.readouterr().err
    assert main(["assignments", "build", str(tmp_path / "out"), "--book", str(tmp_path)]) == 2
    assert "`book` must be the book's root with a myst.yml" in capsys.readouterr().err
    assert main(["assignments", "build", str(tmp_path / "out"), "--book", str(REPO_ROOT), "--chapters", "99_nope"]) == 2
    assert "no chapter named 99_nope" in capsys.readouterr().err
    with pytest.raises(AssignmentError, match=r"`timeout` must be > 0 seconds, got 0"):
        execute_for_grading(nbformat.v4.new_notebook(), tmp_path, timeout=0)


def test_grading_shuts_its_kernel_down(tmp_path: Path) -> None:
    """Each graded notebook's kernel ends with it, even when a cell fails."""
    cells = ["import os\nprint(os.getpid())", "raise RuntimeError('boom')"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    execute_for_grading(notebook, tmp_path, timeout=60)
    assert notebook.cells[1].outputs[0]["ename"] == "RuntimeError"
    assert not process_alive(int(notebook.cells[0].outputs[0]["text"]))


def test_build_command_prints_the_exercises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assignments", "build", str(tmp_path / "out"), "--chapters", "00_preface"]) == 0
    out = capsys.readouterr().out
    assert "00_preface: 1 graded exercises, 2 points" in out
    assert (tmp_path / "out" / "release" / "00_preface.ipynb").is_file()
    assert (tmp_path / "out" / "site" / "chapters" / "00_preface.md").is_file()


# ------------------------------------------------------------------------------ the student site


def _strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


def _types(node) -> set[str]:
    if isinstance(node, dict):
        own = {node["type"]} if isinstance(node.get("type"), str) else set()
        return own | {t for v in node.values() for t in _types(v)}
    if isinstance(node, list):
        return {t for v in node for t in _types(v)}
    return set()


def test_student_site_builds_clean_and_holds_no_solution(built) -> None:
    from tests.test_book_build import _require_myst, install_stub_theme, run_content_build

    myst = _require_myst()
    install_stub_theme(built.site)
    result = run_content_build(built.site, myst)
    assert result.problems == [], result.report()
    pages = sorted((built.site / "_build" / "site" / "content").glob("*.json"))
    assert pages, result.report()
    text = " ".join(s for page in pages for s in _strings(json.loads(page.read_text(encoding="utf-8"))))
    flat = re.sub(r"\s+", " ", text)
    types = {t for page in pages for t in _types(json.loads(page.read_text(encoding="utf-8")))}
    assert "solution" not in types, "a solution node reached the student site"
    # Words a stripped page says itself (the same phrase in the chapter's own text) are public.
    public = re.sub(r"\s+", " ", " ".join(p.read_text(encoding="utf-8") for p in (built.site / "chapters").glob("*.md")))
    for source in SOURCES:
        reference, _ = reference_notebook(source)
        for line in secret_lines(reference):
            if not line.startswith(("$", "\\", "*", "(", "```")) and line not in public:
                assert line not in text, f"{source.stem}: {line!r} is in the student site"
            for run in re.findall(r"(?:[A-Za-z][A-Za-z,;'-]* ){5,}[A-Za-z][A-Za-z,;'-]*", line):
                if run not in public:
                    assert run not in flat, f"{source.stem}: the solution's words {run!r} are in the student site"
