"""Static checks of the book's configuration, fast and without Node.js.

* ``myst.yml``'s explicit ``toc`` lists every chapter ``chapters/NN_slug.md`` that exists, in
  chapter order, and nothing that does not exist;
* every citation a chapter makes (``{cite}``/``{cite:p}``/``{cite:t}`` roles, ``[@key]`` and
  ``@key``) names an entry of ``references.bib``, whose keys are unique;
* the files ``myst.yml`` points at exist, the notation macros are defined, and the offline stub
  theme (``tests/myst_stub_theme/template.yml``) declares every site option ``myst.yml`` sets
  (an undeclared option would be dropped silently by the content build).

``tests/test_book_build.py`` runs MyST itself on the same files.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CHAPTER_NAME = re.compile(r"^(\d{2})_[a-z0-9]+(?:_[a-z0-9]+)*\.md$")
BIB_ENTRY = re.compile(r"^\s*@(\w+)\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)
CITE_ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]*)`")
# A MyST citation ``@key``: not inside a word (e-mail addresses), key chars as mystmd parses them.
AT_CITATION = re.compile(r"(?<![\w@])@([A-Za-z0-9_](?:[\w:.#$%&+?<>~/-]*\w)?)")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
INLINE_CODE = re.compile(r"`+[^`]*`+")
CODE_FENCE_INFOS = ("{code-cell}", "{code}", "{code-block}", "{sourcecode}")
NOTATION_MACROS = ("\\E", "\\R", "\\N", "\\diag", "\\Hs", "\\sv", "\\wv", "\\gv", "\\ov")


def load_config(root: Path = REPO_ROOT) -> dict:
    """``myst.yml`` as a dictionary."""
    return yaml.safe_load((root / "myst.yml").read_text(encoding="utf-8"))


def toc_files(entries: list[dict]) -> list[str]:
    """Every ``file`` of a myst.yml ``toc``, depth first, in order (``children`` included)."""
    files: list[str] = []
    for entry in entries:
        if "file" in entry:
            files.append(entry["file"])
        files.extend(toc_files(entry.get("children", [])))
    return files


def chapter_files(root: Path = REPO_ROOT) -> list[str]:
    """The chapter sources ``chapters/NN_slug.md`` that exist, as repository-relative paths."""
    return sorted(
        f"chapters/{path.name}"
        for path in (root / "chapters").glob("*.md")
        if CHAPTER_NAME.match(path.name)
    )


def bib_keys(text: str) -> list[str]:
    """The keys of a BibTeX file's entries, in file order (``@comment`` etc. skipped)."""
    return [
        key
        for kind, key in BIB_ENTRY.findall(text)
        if kind.lower() not in ("comment", "preamble", "string")
    ]


def strip_code(markdown: str) -> str:
    """``markdown`` without code blocks (``{code-cell}``, plain and language fences).

    Directive fences such as ``{exercise}`` or ``{note}`` hold MyST text and are kept.
    """
    kept: list[str] = []
    fence: str | None = None
    skipping = False
    for line in markdown.splitlines():
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(2)
                info = match.group(3).strip()
                skipping = not info.startswith("{") or info.startswith(CODE_FENCE_INFOS)
                continue
            kept.append(line)
        else:
            closes = (
                match is not None
                and match.group(2)[0] == fence[0]
                and len(match.group(2)) >= len(fence)
                and not match.group(3).strip()
            )
            if closes:
                fence = None
                skipping = False
            elif not skipping:
                kept.append(line)
    return "\n".join(kept)


def cited_keys(markdown: str) -> set[str]:
    """Every citation key a MyST page uses, outside code."""
    text = strip_code(markdown)
    keys = {
        key.strip()
        for role in CITE_ROLE.findall(text)
        for key in re.split(r"[,;]", role)
        if key.strip()
    }
    prose = INLINE_CODE.sub(" ", CITE_ROLE.sub(" ", text))
    keys.update(AT_CITATION.findall(prose))
    return keys


# ------------------------------------------------------------------------------ the helpers


def test_cited_keys_finds_every_citation_form_and_skips_code() -> None:
    page = "\n".join(
        [
            "Roles {cite:p}`alpha2001, beta2002` and {cite}`gamma2003`; {cite:t}`delta2004`.",
            "Brackets [@eps2005; @zeta2006, p. 3] and narrative @eta2007.",
            "Mail me@example.com, inline `@notakey` code.",
            "```{code-cell} ipython3",
            "@torch.no_grad()",
            "```",
            "```python",
            "@dataclass",
            "```",
            "```{exercise}",
            "Read {cite:p}`theta2008`.",
            "```",
        ]
    )
    assert cited_keys(page) == {
        "alpha2001",
        "beta2002",
        "gamma2003",
        "delta2004",
        "eps2005",
        "zeta2006",
        "eta2007",
        "theta2008",
    }


def test_bib_keys_reads_entries_only() -> None:
    text = "@comment{x,}\n@article{a2001,\n title={A}}\n @Book{ b-2, title={B}}\n"
    assert bib_keys(text) == ["a2001", "b-2"]


def test_toc_files_walks_children() -> None:
    toc = [{"file": "a.md", "children": [{"file": "b.md"}, {"title": "part"}]}, {"file": "c.md"}]
    assert toc_files(toc) == ["a.md", "b.md", "c.md"]


# ------------------------------------------------------------------------------- the book


def test_toc_lists_exactly_the_existing_chapters_in_order() -> None:
    config = load_config()
    listed = toc_files(config["project"]["toc"])
    missing_files = [path for path in listed if not (REPO_ROOT / path).is_file()]
    assert missing_files == [], f"myst.yml toc lists files that do not exist: {missing_files}"
    duplicates = [path for path, count in Counter(listed).items() if count > 1]
    assert duplicates == [], f"myst.yml toc lists files twice: {duplicates}"
    existing = chapter_files()
    assert existing, "no chapters/NN_slug.md found"
    unlisted = [path for path in existing if path not in listed]
    assert unlisted == [], f"chapters missing from myst.yml toc: {unlisted}"
    listed_chapters = [path for path in listed if path in existing]
    assert listed_chapters == existing, "myst.yml toc is not in chapter-number order"


def test_every_citation_is_in_the_bibliography() -> None:
    keys = bib_keys((REPO_ROOT / "references.bib").read_text(encoding="utf-8"))
    duplicates = [key for key, count in Counter(keys).items() if count > 1]
    assert duplicates == [], f"references.bib defines keys twice: {duplicates}"
    unknown = {
        path: sorted(cited_keys((REPO_ROOT / path).read_text(encoding="utf-8")) - set(keys))
        for path in chapter_files()
    }
    unknown = {path: missing for path, missing in unknown.items() if missing}
    assert unknown == {}, f"citations not in references.bib: {unknown}"


def test_bibliography_holds_the_papers_the_book_builds_on() -> None:
    keys = set(bib_keys((REPO_ROOT / "references.bib").read_text(encoding="utf-8")))
    required = {
        "zhou2019bayesnas",
        "liu2019darts",
        "mackay1992practical",
        "tipping2001sparse",
        "wipf2008new",
        "botev2017practical",
        "martens2020new",
    }
    assert required <= keys, f"missing: {sorted(required - keys)}"


def test_config_points_at_existing_files() -> None:
    config = load_config()
    project, site = config["project"], config["site"]
    assert config["version"] == 1
    for bib in project["bibliography"]:
        assert (REPO_ROOT / bib).is_file(), f"bibliography {bib} does not exist"
    for option in ("logo", "favicon"):
        assert (REPO_ROOT / site["options"][option]).is_file(), f"site.options.{option}"
    assert site["template"] == "book-theme"
    assert "chapters/*.ipynb" in project["exclude"]


@pytest.mark.parametrize("macro", NOTATION_MACROS)
def test_notation_macro_is_defined(macro: str) -> None:
    macros = load_config()["project"]["math"]
    assert macro in macros and macros[macro].strip(), f"myst.yml project.math lacks {macro}"


def test_stub_theme_declares_every_site_option() -> None:
    stub = yaml.safe_load(
        (REPO_ROOT / "tests" / "myst_stub_theme" / "template.yml").read_text(encoding="utf-8")
    )
    assert stub["myst"] == "v1" and stub["kind"] == "site"
    declared = {option["id"]: option["type"] for option in stub.get("options", [])}
    used = load_config()["site"].get("options", {}) or {}
    undeclared = sorted(set(used) - set(declared))
    assert undeclared == [], (
        f"add these options to tests/myst_stub_theme/template.yml: {undeclared}"
    )
    assert declared["logo"] == declared["favicon"] == "file"


def test_every_chapter_selects_the_inline_backend_first() -> None:
    """Figures must be stored as images whatever MPLBACKEND the reader's shell sets."""
    import re

    for path in sorted((REPO_ROOT / "chapters").glob("[0-9][0-9]_*.md")):
        first = re.search(r"```\{code-cell\} ipython3\n(?:---\n.*?---\n)?(.*?)```", path.read_text(), flags=re.S)
        assert first and first.group(1).lstrip().startswith("%matplotlib inline"), f"{path.name}: first code cell must start with %matplotlib inline"


def front_matter(markdown: str) -> dict:
    """The YAML front matter of a MyST page (empty when it has none)."""
    match = re.match(r"---\n(.*?)\n---\n", markdown, flags=re.S)
    return (yaml.safe_load(match.group(1)) or {}) if match else {}


def test_front_matter_reads_the_leading_block_only() -> None:
    assert front_matter("---\na: 1\n---\n# T\n---\nb: 2\n---\n") == {"a": 1}
    assert front_matter("# T\n") == {}


def test_every_bibliography_entry_is_cited() -> None:
    """No dead entries: each key of references.bib is cited by some chapter."""
    keys = bib_keys((REPO_ROOT / "references.bib").read_text(encoding="utf-8"))
    cited = set().union(
        *(cited_keys((REPO_ROOT / path).read_text(encoding="utf-8")) for path in chapter_files())
    )
    unused = sorted(set(keys) - cited)
    assert unused == [], f"references.bib entries no chapter cites (cite them or remove them): {unused}"


@pytest.mark.parametrize("chapter", chapter_files())
def test_every_chapter_offers_its_notebook_and_source_for_download(chapter: str) -> None:
    """Front matter ``downloads:`` lists the chapter's own .ipynb and .md, each with a title.

    A page's ``downloads`` replace mystmd's default download (the page source), so both are
    listed; paths are relative to the page. mystmd 1.11 has no per-page setting at project
    level: ``project.downloads`` in myst.yml adds the *same* files to every page.
    """
    downloads = front_matter((REPO_ROOT / chapter).read_text(encoding="utf-8")).get("downloads")
    stem = Path(chapter).stem
    fix = (
        f"add to the front matter of {chapter}:\ndownloads:\n  - file: {stem}.ipynb\n"
        f"    title: Jupyter notebook (.ipynb)\n  - file: {stem}.md\n"
        "    title: MyST Markdown source (.md)"
    )
    assert isinstance(downloads, list), fix
    files = [entry.get("file") for entry in downloads if isinstance(entry, dict)]
    assert files == [f"{stem}.ipynb", f"{stem}.md"], f"got {downloads}; {fix}"
    assert all(str(entry.get("title", "")).strip() for entry in downloads), f"a download lacks a title: {downloads}"
