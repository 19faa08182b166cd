"""Student notebooks, the autograder's reference notebooks and the student site.

:func:`build_assignments` reads every chapter's MyST source, derives nbgrader's metadata
(:func:`~bayesnas_book.assignments.markers.mark_exercises`) and writes, under ``OUT``::

    OUT/release/NN_slug.ipynb      for students: solutions stubbed, hidden tests gone, no outputs
    OUT/site/                      for students: a MyST book of the stripped chapters
        myst.yml, references.bib, chapters/NN_slug.md, chapters/images/
    OUT/autograder/NN_slug.ipynb   for the instructor only: the reference with hidden tests

The student notebook is made by nbgrader's own preprocessors, run through nbconvert
(``ClearSolutions``, ``ClearHiddenTests``, ``ClearOutput``). nbgrader lacks one step, which
:class:`ClearSolutionBlocks` adds before them: the *prose* of a gated MyST solution block
(```` ```{solution-start} ````...```` ```{solution-end} ````) and any ungraded code cell inside it
are removed, because MyST's ``dropdown``/``:hidden:`` only folds a solution away on a published
page; it stays in the page's data. The solution and tests cells stay, now after the exercise.

.. note::
   The student site is rendered from the stripped notebooks (jupytext ``md:myst``), never from
   the full sources, for the same reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
import yaml
from nbconvert.preprocessors import Preprocessor

from bayesnas_book.assignments.markers import (
    AssignmentError,
    Exercise,
    mark_exercises,
    solution_block_lines,
)
from bayesnas_book.atomic import atomic_write_bytes

__all__ = [
    "ASSIGNMENT_METADATA",
    "AssignmentBuild",
    "ClearSolutionBlocks",
    "build_assignments",
    "reference_notebook",
    "student_markdown",
    "student_notebook",
]

ASSIGNMENT_METADATA = "bayesnas_book"  # notebook metadata key: {"chapter": "NN_slug"}
STUDENT_TITLE_SUFFIX = " (student edition)"


class ClearSolutionBlocks(Preprocessor):
    """Remove gated MyST solution blocks, keeping only their nbgrader cells.

    Markdown lines from ```` ```{solution-start} LABEL ```` to the closing fence of
    ```` ```{solution-end} ```` are dropped (a block may span several cells); a code cell inside a
    block survives only if it is an nbgrader solution or grade cell. A markdown cell left empty
    is dropped.
    """

    def preprocess(self, nb: nbformat.NotebookNode, resources: dict) -> tuple[nbformat.NotebookNode, dict]:
        kept = []
        inside = False
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                lines = cell.source.split("\n")
                flags, inside = solution_block_lines(lines, inside)
                text = "\n".join(line for line, drop in zip(lines, flags, strict=True) if not drop)
                text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
                if text.strip():
                    cell.source = text
                    kept.append(cell)
            elif cell.cell_type == "code" and inside:
                if "nbgrader" in cell.get("metadata", {}):
                    kept.append(cell)
            else:
                kept.append(cell)
        nb.cells = kept
        return nb, resources


def reference_notebook(source: Path) -> tuple[nbformat.NotebookNode, list[Exercise]]:
    """A chapter's MyST source as a notebook with nbgrader metadata (no outputs).

    Raises:
        AssignmentError: if the chapter breaks the exercise convention.
    """
    notebook = jupytext.read(source, fmt="md:myst")
    exercises = mark_exercises(notebook, source.name)
    notebook.metadata[ASSIGNMENT_METADATA] = {"chapter": source.stem}
    return notebook, exercises


def student_notebook(reference: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version of a marked reference notebook (the reference is not modified).

    nbconvert runs :class:`ClearSolutionBlocks`, then nbgrader's ``ClearSolutions`` (solution
    regions become ``raise NotImplementedError()``), ``ClearHiddenTests`` and ``ClearOutput``.
    """
    from nbconvert.exporters import NotebookExporter
    from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions

    exporter = NotebookExporter()
    for preprocessor in (ClearSolutionBlocks(), ClearSolutions(), ClearHiddenTests(), ClearOutput()):
        exporter.register_preprocessor(preprocessor, enabled=True)
    body, _ = exporter.from_notebook_node(nbformat.from_dict(reference), resources={})
    return nbformat.reads(body, as_version=4)


def student_markdown(student: nbformat.NotebookNode) -> str:
    """A student notebook as a MyST page (nbgrader metadata dropped: mystmd would warn on it)."""
    page = nbformat.from_dict(student)
    for cell in page.cells:
        cell.get("metadata", {}).pop("nbgrader", None)
    page.metadata.pop(ASSIGNMENT_METADATA, None)
    # Keep the source's front matter (e.g. the preface's `numbering`), nothing else.
    keep = sorted(set(page.metadata) - {"jupytext"})
    page.metadata.setdefault("jupytext", {})["notebook_metadata_filter"] = ",".join(["-all", *keep])
    page.metadata["jupytext"]["cell_metadata_filter"] = "-all,tags"
    return jupytext.writes(page, fmt="md:myst")


def _copy_file(source: Path, destination: Path) -> None:
    """Copy one file atomically (a killed build leaves the old file or the new one, never half)."""
    atomic_write_bytes(destination, source.read_bytes())


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (text if text.endswith("\n") else text + "\n").encode("utf-8"))


def _write_site_config(book: Path, target: Path, stems: Sequence[str]) -> list[str]:
    """The student ``myst.yml``: the book's, with the toc cut to ``stems``; returns the toc files."""
    config = yaml.safe_load((book / "myst.yml").read_text(encoding="utf-8"))
    project = config.setdefault("project", {})
    toc = [entry for entry in project.get("toc", []) if Path(entry.get("file", "")).stem in stems]
    if not toc:
        raise AssignmentError(f"none of the chapters {', '.join(stems)} is in {book / 'myst.yml'}'s toc")
    project["toc"] = toc
    project["title"] = project.get("title", "") + STUDENT_TITLE_SUFFIX
    header = "# The student edition of the book: generated by `bayesnas-book assignments build`.\n"
    text = header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100)
    _write_text(target / "myst.yml", text)
    files = [entry["file"] for entry in toc]
    for relative in list(project.get("bibliography", []) or []) + [
        value for key, value in (config.get("site", {}).get("options", {}) or {}).items()
        if key in ("logo", "logo_dark", "favicon")
    ]:
        if (book / relative).is_file():
            _copy_file(book / relative, target / relative)
    return files


@dataclass(frozen=True)
class AssignmentBuild:
    """What :func:`build_assignments` wrote.

    Attributes:
        release: the student notebooks.
        autograder: the reference notebooks (with hidden tests).
        site: the student MyST book folder (its ``myst.yml`` lists the chapters in the toc).
        exercises: per chapter stem, its graded exercises.
    """

    release: list[Path]
    autograder: list[Path]
    site: Path
    exercises: dict[str, list[Exercise]]

    def describe(self) -> str:
        """One line per chapter with its graded exercises and points."""
        lines = []
        for stem, exercises in self.exercises.items():
            points = sum(e.points for e in exercises)
            lines.append(f"{stem}: {len(exercises)} graded exercises, {points:g} points")
        return "\n".join(lines)


def build_assignments(book: Path, out: Path, names: Sequence[str] | None = None) -> AssignmentBuild:
    """Write the student notebooks, the autograder's references and the student site.

    Args:
        book: the book's root (``myst.yml``, ``references.bib``, ``chapters/``).
        out: the output folder (created; files in it are overwritten).
        names: chapter stems (default: every ``chapters/NN_*.md``).

    Returns:
        The paths written and the exercises found.

    Raises:
        AssignmentError: if the book is missing, a chapter name is unknown, or a chapter breaks
            the exercise convention.
    """
    from bayesnas_book.book import BookSyncError, chapter_sources

    book = Path(book)
    chapters = book / "chapters"
    if not (book / "myst.yml").is_file():
        raise AssignmentError(f"`book` must be the book's root with a myst.yml, got {book}")
    try:
        sources = chapter_sources(chapters, names)
    except BookSyncError as error:
        raise AssignmentError(str(error)) from None
    release, autograder, exercises = [], [], {}
    site = out / "site"
    for source in sources:
        reference, found = reference_notebook(source)
        exercises[source.stem] = found
        student = student_notebook(reference)
        paths = (out / "release" / f"{source.stem}.ipynb", out / "autograder" / f"{source.stem}.ipynb")
        _write_text(paths[0], nbformat.writes(student))
        _write_text(paths[1], nbformat.writes(reference))
        _write_text(site / "chapters" / source.name, student_markdown(student))
        _write_text(site / "chapters" / f"{source.stem}.ipynb", nbformat.writes(student))  # the page's download
        release.append(paths[0])
        autograder.append(paths[1])
    toc_files = _write_site_config(book, site, [s.stem for s in sources])
    for relative in toc_files:
        if not (site / relative).is_file():
            raise AssignmentError(f"the student site lacks {relative}")
    images = chapters / "images"
    for image in sorted(images.rglob("*")) if images.is_dir() else []:
        if image.is_file():
            _copy_file(image, site / "chapters" / "images" / image.relative_to(images))
    return AssignmentBuild(release, autograder, site, exercises)
