"""Keep the paired chapter notebooks in sync with their MyST sources, and executed.

Every chapter is a pair (``chapters/jupytext.toml``): ``NN_slug.md`` is the MyST notebook a
person edits, ``NN_slug.ipynb`` is generated from it, executed, and committed with its
outputs so that ``pytest --nbval`` can compare a fresh run against them.

* :func:`sync_chapters` regenerates each ``.ipynb`` from its ``.md`` and executes it in a kernel
  of the *current* Python environment, in the chapters folder, with the quick profile.
  Cell ids stay what the previous ``.ipynb`` had (:func:`keep_cell_ids`), so a re-sync is no diff.
* :func:`check_chapters` fails when a pair is out of sync (cell sources, types, tags or nbgrader
  metadata differ), when a code cell was never executed, or when a stored output is an error.

The ``.ipynb`` carries nbgrader's cell metadata for the exercises, derived from the markers of the
MyST source (:func:`bayesnas_book.assignments.markers.mark_exercises`; the source itself holds
none, since mystmd warns about code-cell options it does not know).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import jupytext
import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from bayesnas_book.assignments.markers import AssignmentError, mark_exercises
from bayesnas_book.atomic import atomic_write_bytes

__all__ = ["BookSyncError", "chapter_sources", "check_chapters", "execute_notebook", "keep_cell_ids",
           "sync_chapters"]

ALLOWED_ERROR_TAG = "raises-exception"
_CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # nbformat 4.5's rule for a cell id


class BookSyncError(RuntimeError):
    """A chapter pair is missing, out of sync, unexecuted, or failed to execute."""


class CurrentEnvironmentKernels(KernelSpecManager):
    """Every kernel name resolves to an IPython kernel of this very interpreter.

    A ``python3`` kernelspec found on the path may belong to another environment (one without
    torch); chapters must run against the installed ``bayesnas_book``.
    """

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3 (bayesnas-book)",
            language="python",
        )


def chapter_sources(chapters_dir: Path, names: Sequence[str] | None = None) -> list[Path]:
    """The MyST notebook sources ``NN_*.md`` in ``chapters_dir``, sorted, optionally filtered.

    Raises:
        BookSyncError: if the folder does not exist or a requested name matches no chapter.
    """
    if not chapters_dir.is_dir():
        raise BookSyncError(f"chapters folder {chapters_dir} does not exist; run from the repository root")
    sources = sorted(p for p in chapters_dir.glob("[0-9][0-9]_*.md"))
    if names:
        wanted = {Path(n).stem for n in names}
        unknown = wanted - {p.stem for p in sources}
        if unknown:
            valid = ", ".join(p.stem for p in sources)
            raise BookSyncError(f"no chapter named {', '.join(sorted(unknown))}; chapters are: {valid}")
        sources = [p for p in sources if p.stem in wanted]
    return sources


def _cell_signature(cell: nbformat.NotebookNode) -> tuple[str, str, tuple[str, ...], str]:
    tags = tuple(cell.get("metadata", {}).get("tags", ()))
    grading = json.dumps(cell.get("metadata", {}).get("nbgrader"), sort_keys=True)
    return cell.cell_type, cell.source.strip(), tags, grading


def _read_source(source: Path) -> nbformat.NotebookNode:
    """A chapter's MyST source as a notebook, with nbgrader metadata on its exercise cells."""
    notebook = jupytext.read(source, fmt="md:myst")
    try:
        mark_exercises(notebook, source.name)
    except AssignmentError as error:
        raise BookSyncError(f"{source.name} breaks the exercise convention (chapters/ASSIGNMENTS.md): {error}") from None
    return notebook


def _derived_cell_id(cell: nbformat.NotebookNode, taken: set[str]) -> str:
    """A cell id from the cell's type and source (8 hex digits), salted until no cell has it."""
    for salt in range(len(taken) + 1):
        digest = hashlib.sha256(f"{cell.cell_type}\n{salt}\n{cell.source}".encode()).hexdigest()[:8]
        if digest not in taken:
            return digest
    raise AssertionError("unreachable: len(taken) + 1 salts cannot all be taken")


def _pair_edited(old: Sequence[nbformat.NotebookNode], new: Sequence[nbformat.NotebookNode]) -> list[tuple[int, int]]:
    """Which edited cell (index in ``new``) replaced which (index in ``old``) in a changed run.

    Runs of one length pair by position; otherwise each new cell, in order, takes the most
    similar later old cell of its type (source similarity at least ``0.5``), or none.
    """
    if len(old) == len(new):
        return [(k, k) for k in range(len(old)) if old[k].cell_type == new[k].cell_type]
    pairs: list[tuple[int, int]] = []
    start = 0
    for j, cell in enumerate(new):
        ratios = {i: difflib.SequenceMatcher(None, old[i].source, cell.source).ratio()
                  for i in range(start, len(old)) if old[i].cell_type == cell.cell_type}
        best = max(ratios, key=ratios.__getitem__, default=None)  # the first on a tie
        if best is not None and ratios[best] >= 0.5:
            pairs.append((best, j))
            start = best + 1
    return pairs


def keep_cell_ids(notebook: nbformat.NotebookNode, previous: nbformat.NotebookNode | None) -> None:
    """Give ``notebook``'s cells the ids of ``previous``'s, in place, so that a re-sync is no diff.

    jupytext draws a random id for every cell it reads. Instead, a cell whose type and source
    appear unchanged in ``previous`` (aligned in order, as ``difflib`` aligns lines) keeps that
    cell's id; an edited cell keeps the id of the cell it replaced (:func:`_pair_edited`); any
    other cell gets an id derived from its type and source, so a first sync gives the same ids
    on every machine.

    Args:
        notebook: the notebook regenerated from the MyST source.
        previous: the ``.ipynb`` it replaces, or ``None`` for a first sync.
    """
    old = previous.cells if previous is not None else []
    matcher = difflib.SequenceMatcher(
        None, [(c.cell_type, c.source) for c in old], [(c.cell_type, c.source) for c in notebook.cells], autojunk=False
    )
    ids: list[str | None] = [None] * len(notebook.cells)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pairs = list(zip(range(i1, i2), range(j1, j2)))
        elif tag == "replace":
            pairs = [(i1 + i, j1 + j) for i, j in _pair_edited(old[i1:i2], notebook.cells[j1:j2])]
        else:
            pairs = []
        for i, j in pairs:
            ids[j] = old[i].get("id")
    taken: set[str] = set()
    for j, cell_id in enumerate(ids):
        if cell_id is None or cell_id in taken or not _CELL_ID.fullmatch(str(cell_id)):
            ids[j] = None
        else:
            taken.add(cell_id)
    for cell, cell_id in zip(notebook.cells, ids):
        if cell_id is None:
            cell_id = _derived_cell_id(cell, taken)
            taken.add(cell_id)
        cell.id = cell_id


def _read_previous(target: Path) -> nbformat.NotebookNode | None:
    """The stored ``.ipynb`` whose cell ids a sync keeps, or ``None`` when missing or unreadable."""
    try:
        return nbformat.read(target, as_version=4)
    except (OSError, ValueError):  # nbformat's read errors are ValueErrors
        return None


@contextmanager
def quick_profile_environment() -> Iterator[None]:
    """Chapters are stored as executed in the quick profile, whatever the caller's shell says."""
    saved = {key: os.environ.get(key) for key in ("BAYESNAS_PROFILE", "PYTHONHASHSEED")}
    os.environ["BAYESNAS_PROFILE"] = "quick"
    os.environ["PYTHONHASHSEED"] = "0"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _write_atomically(notebook: nbformat.NotebookNode, path: Path) -> None:
    text = nbformat.writes(notebook)
    atomic_write_bytes(path, (text if text.endswith("\n") else text + "\n").encode("utf-8"))


def execute_notebook(notebook: nbformat.NotebookNode, cwd: Path, timeout: int, **options: object) -> None:
    """Run every cell of ``notebook`` in place, in a new kernel of this environment, then end it.

    nbclient keeps a kernel whose manager the caller passed (it assumes the caller reuses it),
    until the parent process exits: each executed chapter held its memory (18 graded notebooks
    under pytest, about 14 GB). Here the kernel is shut down when the notebook is done, on
    success, on a cell's error and on an interrupt.

    Args:
        notebook: the notebook to execute; its outputs are written into it.
        cwd: the kernel's working folder.
        timeout: seconds allowed per cell.
        **options: further ``nbclient.NotebookClient`` options (``allow_errors``, ...).

    Raises:
        nbclient.exceptions.CellExecutionError: when a cell fails (unless ``allow_errors``).
    """
    kernel_manager = KernelManager(kernel_name="python3", kernel_spec_manager=CurrentEnvironmentKernels())
    client = NotebookClient(
        notebook,
        km=kernel_manager,
        timeout=timeout,
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
        **options,
    )
    try:
        client.execute(cleanup_kc=True)  # shuts the kernel down and closes the client's channels
    finally:
        if kernel_manager.has_kernel:  # it failed before nbclient could clean up
            kernel_manager.shutdown_kernel(now=True)


def sync_chapters(chapters_dir: Path, names: Sequence[str] | None = None, timeout: int = 600) -> list[Path]:
    """Regenerate and execute ``NN_slug.ipynb`` from each ``NN_slug.md``.

    The notebook is written only after every cell ran, atomically, so a failing chapter leaves
    the previously committed ``.ipynb`` untouched. Cell ids are kept from that ``.ipynb``
    (:func:`keep_cell_ids`): syncing an unchanged chapter changes no id.

    Args:
        chapters_dir: the folder holding the pairs (``chapters/``).
        names: chapter stems to sync (e.g. ``["00_preface"]``); default all.
        timeout: seconds allowed per cell.

    Returns:
        The paths of the notebooks written.

    Raises:
        BookSyncError: naming the chapter and the failing cell's error.
    """
    written = []
    for source in chapter_sources(chapters_dir, names):
        notebook = _read_source(source)
        target = source.with_suffix(".ipynb")
        keep_cell_ids(notebook, _read_previous(target))
        with quick_profile_environment():
            try:
                execute_notebook(notebook, chapters_dir, timeout)
            except CellExecutionError as error:
                raise BookSyncError(f"{source.name} failed to execute; its .ipynb was left as it was:\n{error}") from None
        _write_atomically(notebook, target)
        written.append(target)
    return written


def _pair_problems(source: Path) -> list[str]:
    target = source.with_suffix(".ipynb")
    if not target.exists():
        return [f"{target.name} is missing: run `bayesnas-book book sync {source.stem}`"]
    expected = _read_source(source)
    stored = nbformat.read(target, as_version=4)
    fix = f"run `bayesnas-book book sync {source.stem}`"
    if [_cell_signature(c) for c in expected.cells] != [_cell_signature(c) for c in stored.cells]:
        return [f"{target.name} does not match {source.name} (cells differ): {fix}"]
    problems = []
    for index, cell in enumerate(stored.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        if cell.get("execution_count") is None:
            problems.append(f"{target.name} cell {index} was never executed: {fix}")
        tags = cell.get("metadata", {}).get("tags", ())
        errors = [o for o in cell.get("outputs", ()) if o.get("output_type") == "error"]
        if errors and ALLOWED_ERROR_TAG not in tags:
            problems.append(f"{target.name} cell {index} stores an error ({errors[0].get('ename')}): {fix}")
    return problems


def check_chapters(chapters_dir: Path, names: Sequence[str] | None = None) -> None:
    """Check that every chapter pair is in sync and executed.

    Raises:
        BookSyncError: listing every problem found, each with the command that fixes it.
    """
    problems = [p for source in chapter_sources(chapters_dir, names) for p in _pair_problems(source)]
    if problems:
        raise BookSyncError("chapter notebooks out of sync:\n" + "\n".join(f"  - {p}" for p in problems))
