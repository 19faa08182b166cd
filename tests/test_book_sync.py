"""`bayesnas-book book sync`: pairs regenerated, executed, checked; nbval is strict."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from bayesnas_book.book import BookSyncError, chapter_sources, check_chapters, sync_chapters
from bayesnas_book.cli import main
from tests.conftest import REPO_ROOT, process_alive

CHAPTERS = REPO_ROOT / "chapters"

TINY = """---
jupytext:
  formats: ipynb,md:myst
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A tiny chapter

```{code-cell} ipython3
import os
print(6 * 7, os.environ["BAYESNAS_PROFILE"])
```
"""


@pytest.fixture()
def tiny_book(tmp_path: Path) -> Path:
    (tmp_path / "01_tiny.md").write_text(TINY)
    return tmp_path


def test_committed_chapters_are_in_sync_and_executed() -> None:
    assert chapter_sources(CHAPTERS), "the book has chapters"
    check_chapters(CHAPTERS)  # raises with the fix for every problem


def test_sync_executes_with_the_quick_profile(tiny_book: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAYESNAS_PROFILE", "paper")  # the stored outputs are always the quick ones
    (written,) = sync_chapters(tiny_book)
    notebook = nbformat.read(written, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code[0].outputs[0]["text"] == "42 quick\n"
    check_chapters(tiny_book)


def _cell_ids(path: Path) -> list[str]:
    return [cell.id for cell in nbformat.read(path, as_version=4).cells]


def test_sync_keeps_cell_ids_of_an_unchanged_chapter(tiny_book: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Cell ids are no diff: a re-sync keeps them, a fresh sync derives them from the sources."""
    (written,) = sync_chapters(tiny_book)
    first = _cell_ids(written)
    sync_chapters(tiny_book)
    assert _cell_ids(written) == first
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.copy(tiny_book / "01_tiny.md", elsewhere)
    (fresh,) = sync_chapters(elsewhere)
    assert _cell_ids(fresh) == first


def test_sync_keeps_the_ids_of_edited_and_moved_cells(tiny_book: Path) -> None:
    (written,) = sync_chapters(tiny_book)
    title, code = _cell_ids(written)
    source = tiny_book / "01_tiny.md"
    new_cell = "```{code-cell} ipython3\nprint('new')\n```\n\n"
    source.write_text(source.read_text().replace("6 * 7", "6 * 8").replace("```{code-cell}", new_cell + "```{code-cell}", 1))
    sync_chapters(tiny_book)
    ids = _cell_ids(written)
    assert ids[0] == title and ids[2] == code  # unchanged, and edited in place: the ids stay
    assert len(set(ids)) == 3 and re.fullmatch(r"[0-9a-f]{8}", ids[1])
    notebook = nbformat.read(written, as_version=4)
    notebook.cells[1].id = "stale"
    nbformat.write(notebook, written)
    sync_chapters(tiny_book)
    assert _cell_ids(written) == ["stale" if i == ids[1] else i for i in ids]


def test_missing_and_stale_pairs_are_named(tiny_book: Path) -> None:
    with pytest.raises(BookSyncError, match=r"01_tiny.ipynb is missing: run `bayesnas-book book sync 01_tiny`"):
        check_chapters(tiny_book)
    sync_chapters(tiny_book)
    source = tiny_book / "01_tiny.md"
    source.write_text(source.read_text().replace("6 * 7", "6 * 8"))
    with pytest.raises(BookSyncError, match=r"01_tiny.ipynb does not match 01_tiny.md \(cells differ\)"):
        check_chapters(tiny_book)


def test_unexecuted_and_error_cells_are_named(tiny_book: Path) -> None:
    sync_chapters(tiny_book)
    path = tiny_book / "01_tiny.ipynb"
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[-1].execution_count = None
    nbformat.write(notebook, path)
    with pytest.raises(BookSyncError, match=r"cell 1 was never executed"):
        check_chapters(tiny_book)
    notebook.cells[-1].execution_count = 1
    notebook.cells[-1].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="x", traceback=[])]
    nbformat.write(notebook, path)
    with pytest.raises(BookSyncError, match=r"cell 1 stores an error \(ValueError\)"):
        check_chapters(tiny_book)


def test_every_kernel_is_shut_down(tiny_book: Path) -> None:
    """A kernel left running holds the chapter's memory until the parent exits (also on error)."""
    source = tiny_book / "01_tiny.md"
    writes_pid = "import os\nfrom pathlib import Path\nPath('kernel.pid').write_text(str(os.getpid()))\n"
    source.write_text(source.read_text().replace("import os\n", writes_pid))
    sync_chapters(tiny_book)
    assert not process_alive(int((tiny_book / "kernel.pid").read_text()))
    source.write_text(source.read_text().replace("print(6 * 7", "raise RuntimeError('boom'); print(6 * 7"))
    with pytest.raises(BookSyncError, match="boom"):
        sync_chapters(tiny_book)
    assert not process_alive(int((tiny_book / "kernel.pid").read_text()))


def test_a_failing_chapter_leaves_its_notebook_untouched(tiny_book: Path) -> None:
    sync_chapters(tiny_book)
    path = tiny_book / "01_tiny.ipynb"
    before = path.read_bytes()
    source = tiny_book / "01_tiny.md"
    source.write_text(source.read_text().replace("print(6 * 7", "raise RuntimeError('boom'); print(6 * 7"))
    with pytest.raises(BookSyncError, match="01_tiny.md failed to execute; its .ipynb was left as it was"):
        sync_chapters(tiny_book)
    assert path.read_bytes() == before
    assert not list(tiny_book.glob("*.tmp"))


def test_unknown_chapter_and_folder(tiny_book: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BookSyncError, match="no chapter named 99_nope; chapters are: 01_tiny"):
        chapter_sources(tiny_book, ["99_nope"])
    assert main(["book", "sync", "--check", "--chapters", str(tiny_book / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_nbval_fails_when_a_stored_number_changes(tmp_path: Path) -> None:
    """The notebook tests are strict: one edited printed number is a failure."""
    chapter = CHAPTERS / "00_preface.ipynb"
    notebook = json.loads(chapter.read_text())
    edited = False
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", []))
            if not edited and re.search(r"images per class: \[\d+", text):
                output["text"] = [re.sub(r"images per class: \[(\d+)", lambda m: f"images per class: [{int(m[1]) + 1}", text)]
                edited = True
    assert edited, "chapter 00 prints the class counts"
    target = tmp_path / "00_preface.ipynb"
    target.write_text(json.dumps(notebook))
    shutil.copy(CHAPTERS / "nbval_sanitize.cfg", tmp_path)

    def run(path: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(tmp_path),
                   "--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(tmp_path / "nbval_sanitize.cfg"), str(path)]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, check=False)

    result = run(target)
    assert result.returncode == 1, result.stdout[-2000:]
    assert "images per class" in result.stdout
