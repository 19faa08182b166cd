"""The public site's sources (``bayesnas-book book site OUT``): no grading markup, committed outputs.

The public site is built from the executed notebooks, so ``myst build --html`` needs no
``--execute``; a reader must see neither the nbgrader markers nor the autograder's hidden tests.
The content build reuses the offline stub-theme machinery of ``tests/test_book_build.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from bayesnas_book.assignments.public import FOLD_TAG, build_public_site, public_source
from bayesnas_book.cli import main
from tests.test_book_build import (
    REPO_ROOT,
    _require_myst,
    copy_book,
    install_stub_theme,
    page_downloads,
    run_content_build,
    toc_chapters,
)

FORBIDDEN = ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS")
# A line chapter 00 prints in its exercise's solution cell (its committed output).
PREFACE_OUTPUT = "closest class means:"


def _code_outputs(notebook: nbformat.NotebookNode) -> list[list[dict]]:
    return [cell.outputs for cell in notebook.cells if cell.cell_type == "code"]


def check_public_tree(book: Path) -> list[str]:
    """Every way ``book`` (a public-site tree) fails the public site's contract; empty when none."""
    problems = []
    for chapter in toc_chapters():
        notebook_path = Path(chapter).with_suffix(".ipynb")
        committed = nbformat.read(REPO_ROOT / notebook_path, as_version=4)
        public = nbformat.read(book / notebook_path, as_version=4)
        for index, cell in enumerate(public.cells):
            hits = [marker for marker in FORBIDDEN if marker in cell.source]
            if hits:
                problems.append(f"{notebook_path} cell {index}: {hits}")
        if _code_outputs(public) != _code_outputs(committed):
            problems.append(f"{notebook_path}: outputs differ from the committed notebook's")
    return problems


@pytest.fixture(scope="module")
def public_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("public") / "site"
    build_public_site(REPO_ROOT, out)
    return out


def test_public_tree_has_no_grading_markup_and_the_committed_outputs(public_tree: Path) -> None:
    assert check_public_tree(public_tree) == []
    # The committed notebooks do have the markup: the check above is not vacuous.
    committed = [nbformat.read(REPO_ROOT / Path(c).with_suffix(".ipynb"), as_version=4) for c in toc_chapters()]
    sources = "\n".join(cell.source for nb in committed for cell in nb.cells)
    assert all(marker in sources for marker in FORBIDDEN)


def test_the_check_fails_on_a_naive_copy(tmp_path: Path) -> None:
    """A plain copy of the chapters (markup and all) is caught, chapter by chapter."""
    naive = copy_book(REPO_ROOT, tmp_path / "naive")
    problems = check_public_tree(naive)
    assert problems
    assert {p.split(" ")[0] for p in problems} == {str(Path(c).with_suffix(".ipynb")) for c in toc_chapters()}


def test_the_check_fails_when_outputs_change(public_tree: Path, tmp_path: Path) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(public_tree, changed)
    path = changed / Path(toc_chapters()[0]).with_suffix(".ipynb")
    notebook = nbformat.read(path, as_version=4)
    next(cell for cell in notebook.cells if cell.cell_type == "code" and cell.outputs).outputs = []
    nbformat.write(notebook, path)
    assert check_public_tree(changed) == [f"{path.relative_to(changed)}: outputs differ from the committed notebook's"]


def test_solution_cells_are_folded_and_keep_their_code(public_tree: Path) -> None:
    notebook = nbformat.read(public_tree / "chapters" / "00_preface.ipynb", as_version=4)
    folded = [cell for cell in notebook.cells if FOLD_TAG in cell.metadata.get("tags", [])]
    assert folded and all("means = torch.stack" in cell.source for cell in folded[:1])
    tests_cell = next(cell for cell in notebook.cells if "points-2" in cell.metadata.get("tags", []))
    assert tests_cell.source.startswith("assert means.shape")  # visible tests kept, hidden ones gone
    assert "assert_close(means[c]" not in tests_cell.source


def test_public_tree_config_and_downloads(public_tree: Path) -> None:
    import yaml

    config = yaml.safe_load((public_tree / "myst.yml").read_text(encoding="utf-8"))
    original = yaml.safe_load((REPO_ROOT / "myst.yml").read_text(encoding="utf-8"))
    assert [e["file"] for e in config["project"]["toc"]] == [
        str(Path(c).with_suffix(".ipynb")) for c in toc_chapters()
    ]
    assert config["site"] == original["site"]
    assert config["project"]["math"] == original["project"]["math"]
    for relative in ("references.bib", "chapters/images/logo.svg", "chapters/images/favicon.ico",
                     config["site"]["options"]["style"]):
        assert (public_tree / relative).is_file(), relative
    for chapter in toc_chapters():  # the .md offered for download carries no grading markup either
        text = (public_tree / chapter).read_text(encoding="utf-8")
        assert not any(marker in text for marker in FORBIDDEN), chapter


def test_public_source_keeps_the_solution() -> None:
    source = "a = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION\nassert b\n### BEGIN HIDDEN TESTS\nassert secret\n### END HIDDEN TESTS"
    assert public_source(source) == "a = 1\nb = 2\nassert b"


def test_cli_book_site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["book", "site", str(tmp_path / "out"), "--book", str(REPO_ROOT), "--chapters", "00_preface"]) == 0
    assert (tmp_path / "out" / "chapters" / "00_preface.ipynb").is_file()
    assert not (tmp_path / "out" / "chapters" / "01_one_shot_nas.ipynb").exists()
    assert main(["book", "site", str(tmp_path / "bad"), "--book", str(REPO_ROOT), "--chapters", "no_such_chapter"]) == 2


@pytest.mark.slow
def test_public_site_content_build_is_clean_and_shows_outputs(public_tree: Path, tmp_path: Path) -> None:
    myst = _require_myst()
    book = tmp_path / "site"
    shutil.copytree(public_tree, book)
    install_stub_theme(book)
    result = run_content_build(book, myst)
    print(f"{' '.join(result.command)} on the public tree took {result.seconds:.1f} s")
    assert result.problems == [], result.report()
    pages = sorted((book / "_build" / "site" / "content").glob("*.json"))
    assert len(pages) == len(toc_chapters()), result.report()
    text = "\n".join(page.read_text(encoding="utf-8") for page in pages)
    assert not any(marker in text for marker in ("BEGIN SOLUTION", "HIDDEN TESTS", "END SOLUTION"))
    assert "solution-start" not in text and "solution-end" not in text
    # tables a reader compares are tables on the page (bayesnas_book.tables.Table), not printed text
    assert '>question</th>' in text and '>status</th>' in text, "chapter 11's summary table is no table"
    preface = json.loads((book / "_build" / "site" / "content" / "index.json").read_text(encoding="utf-8"))
    assert PREFACE_OUTPUT in json.dumps(preface), "the preface page shows no committed output"
    # The notebooks' metadata keeps the front matter: the preface stays unnumbered, and every
    # page offers its (public) notebook and source for download.
    assert preface["frontmatter"]["numbering"]["title"] == {"enabled": False}
    assert page_downloads(book) == {
        str(Path(c).with_suffix(".ipynb")): [Path(c).with_suffix(".ipynb").name, Path(c).name] for c in toc_chapters()
    }


def test_printed_outputs_wrap_at_the_column() -> None:
    """The site stylesheet makes the theme's stream outputs wrap (issue 15: 2,600 px provenance lines)."""
    import re

    import yaml

    style = yaml.safe_load((REPO_ROOT / "myst.yml").read_text(encoding="utf-8"))["site"]["options"]["style"]
    css = (REPO_ROOT / style).read_text(encoding="utf-8")
    rule = re.search(r"pre\.myst-jp-stream-output\s*\{([^}]*)\}", css)
    assert rule, f"{style} has no rule for the theme's stream outputs (pre.myst-jp-stream-output)"
    assert re.search(r"white-space:\s*pre-wrap", rule.group(1)), rule.group(1)


def test_code_cells_fit_88_characters_in_the_narrowest_column() -> None:
    """Chapters keep code lines within 88 characters; the stylesheet's code font must hold them in
    a folded solution at 1024 px (638 px wide, measured in the real book-theme with Chromium)."""
    import re

    import yaml

    from tests.test_chapter_lint import CODE_WIDTH

    style = yaml.safe_load((REPO_ROOT / "myst.yml").read_text(encoding="utf-8"))["site"]["options"]["style"]
    css = (REPO_ROOT / style).read_text(encoding="utf-8")
    rule = re.search(r"\.myst-code-body pre,\s*\.myst-code-body code\s*\{[^}]*font-size:\s*([\d.]+)px", css)
    assert rule, f"{style} sets no px font size for the theme's code cells (.myst-code-body pre/code)"
    monospace_advance = 0.602  # DejaVu Sans Mono, the theme's fallback monospace font, per em
    assert CODE_WIDTH * monospace_advance * float(rule.group(1)) <= 638
