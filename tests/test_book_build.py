"""Offline check of the MyST book: the content build of every chapter must be clean.

The real site needs the ``book-theme`` web application, which ``myst build --html`` downloads;
CI and this machine have no internet. The *content* build (``myst build --site``) does all the
checking that matters for the text (parses every page, resolves every cross-reference,
citation, image and include, typesets every equation with the project's macros, validates the
front matter and the site options) and needs from the theme only its ``template.yml``. So the
test copies the book into a temporary folder, puts the stub ``tests/myst_stub_theme/template.yml``
where mystmd caches the theme (``_build/templates/site/myst/book-theme/``) so that nothing is
downloaded, runs

    myst build --site --strict --ci

and fails on a non-zero exit status *or* on any warning or error in the output. Both are needed:
``--strict`` exits non-zero only for errors, while a broken cross-reference or an unknown
citation is a warning, and an unknown directive or role is logged without being counted at all
(mystmd 1.11.0). mystmd logs warnings and errors on stderr, with a ⚠️ or ⛔ marker, and its
``--strict`` summary repeats them on stdout.

The second group of tests proves the check can fail: a copy of the book with one broken page
per kind of mistake, built once, must report every mistake, each on its own page; copies with a
missing logo or a broken bibliography, built separately, must report those.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
STUB_THEME = Path(__file__).resolve().parent / "myst_stub_theme"
CHAPTERS = "chapters"
BUILD_TIMEOUT_S = 180  # measured: about 2 s for the preface on a 2-core CPU
PROBLEM_MARKERS = ("\u26a0", "\u26d4")  # ⚠ (warning) and ⛔ (error), as mystmd prints them
OFFLINE = "http://127.0.0.1:9"  # a closed local port: any download attempt fails at once


def _myst_executable() -> str | None:
    """The ``myst`` next to this interpreter (a venv need not be on PATH), else the one on PATH."""
    beside = Path(sys.executable).with_name("myst")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("myst")


def _require_myst() -> str:
    """The ``myst`` executable; skips the test when it or Node.js is missing."""
    myst = _myst_executable()
    if myst is None:
        pytest.skip("the `myst` executable is missing: pip install mystmd (the [test] extra)")
    if shutil.which("node") is None:
        pytest.skip("Node.js is missing: mystmd needs `node` >= 18 on PATH")
    return myst


def _offline_env() -> dict[str, str]:
    """The environment for mystmd: plain text, no Node.js runtime notices, no network.

    ``API_URL`` is where mystmd looks up templates and ``npm_config_registry`` where it checks
    for a newer version of itself; pointing both at a closed local port keeps the build offline
    (a template lookup would then fail loudly instead of downloading the theme).
    """
    env = dict(os.environ)
    env.update(
        {
            "API_URL": OFFLINE,
            "npm_config_registry": OFFLINE,
            "NODE_NO_WARNINGS": "1",
            "FORCE_COLOR": "0",
            "NO_COLOR": "1",
            "CI": "true",
        }
    )
    return env


@cache
def _build_flags(myst: str) -> tuple[str, ...]:
    """``--site --strict`` plus ``--ci`` where this mystmd has it (it is newer than --strict)."""
    help_text = subprocess.run(
        [myst, "build", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_offline_env(),
        check=False,
    ).stdout
    flags = ["--site", "--strict"]
    if "--ci" in help_text:
        flags.append("--ci")
    return tuple(flags)


def _myst_version(myst: str) -> str:
    """``myst --version`` as printed, e.g. ``v1.11.0``."""
    result = subprocess.run(
        [myst, "--version"], capture_output=True, text=True, timeout=60, env=_offline_env()
    )
    return result.stdout.strip()


def _load_config(book: Path) -> dict:
    """``myst.yml`` of ``book`` as a dictionary."""
    return yaml.safe_load((book / "myst.yml").read_text(encoding="utf-8"))


def _theme_cache_dir(book: Path, config: dict) -> Path:
    """Where mystmd looks for the site template of ``book`` before it tries to download it.

    mystmd (myst-templates ``defaultPath``) caches template ``NAME`` of kind ``site`` under
    ``<project>/_build/templates/site/myst/NAME``; ``ORG/NAME`` goes to ``site/ORG/NAME``.
    """
    template = config.get("site", {}).get("template", "book-theme")
    parts = template.split("/")
    if len(parts) == 1:
        parts = ["myst", *parts]
    return book.joinpath("_build", "templates", "site", *parts)


def copy_book(source: Path, destination: Path) -> Path:
    """Copy what the book build reads into ``destination``; returns it.

    That is ``myst.yml``, the bibliography files it lists, the local files its site options
    name (logo, favicon) and the whole ``chapters/`` folder except checkpoints and caches. The
    executed ``.ipynb`` twins are copied too: they are no pages (``myst.yml`` excludes them), but
    each chapter offers its notebook for download (front matter ``downloads:``), and mystmd
    reports a download whose file is missing. Never ``_build/``: each test builds from a fresh
    copy, so no stale cache can hide a problem.

    Args:
        source: the repository root.
        destination: an empty or missing folder.
    """
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "myst.yml", destination / "myst.yml")
    shutil.copytree(
        source / CHAPTERS,
        destination / CHAPTERS,
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "_build"),
    )
    config = _load_config(source)
    project = config.get("project", {})
    options = config.get("site", {}).get("options", {}) or {}
    extra = list(project.get("bibliography", []) or [])
    extra += [value for key, value in options.items() if key in ("logo", "logo_dark", "favicon")]
    for relative in extra:
        target = destination / relative
        if (source / relative).is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / relative, target)
    return destination


def install_stub_theme(book: Path) -> Path:
    """Put the stub ``template.yml`` into ``book``'s theme cache; returns the folder."""
    folder = _theme_cache_dir(book, _load_config(book))
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(STUB_THEME / "template.yml", folder / "template.yml")
    return folder


@dataclass(frozen=True)
class BuildResult:
    """What one ``myst build`` run printed and returned."""

    command: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def problems(self) -> list[str]:
        """Every line that reports a warning or an error (empty for a clean build)."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        lines += [
            line.strip()
            for line in self.stdout.splitlines()
            if any(marker in line for marker in PROBLEM_MARKERS)
        ]
        if self.returncode != 0:
            lines.append(f"exit status {self.returncode}")
        return lines

    def report(self) -> str:
        """The command and its whole output, for a failure message."""
        return (
            f"$ {' '.join(self.command)}  (exit {self.returncode}, {self.seconds:.1f} s)\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


def run_content_build(book: Path, myst: str) -> BuildResult:
    """Run the MyST content build in ``book`` (a prepared copy) and collect its output."""
    command = (myst, "build", *_build_flags(myst))
    start = time.perf_counter()
    try:
        completed = subprocess.run(
            command,
            cwd=book,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            env=_offline_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"`{' '.join(command)}` ran over {BUILD_TIMEOUT_S} s in {book}: {error}")
    seconds = time.perf_counter() - start
    return BuildResult(command, completed.returncode, completed.stdout, completed.stderr, seconds)


def _prepared_book(tmp_path: Path) -> Path:
    """A fresh copy of the repository's book with the stub theme installed."""
    book = copy_book(REPO_ROOT, tmp_path / "book")
    install_stub_theme(book)
    return book


# ------------------------------------------------------------------------------ the real book


def test_book_content_build_is_clean(tmp_path: Path) -> None:
    myst = _require_myst()
    book = _prepared_book(tmp_path)
    result = run_content_build(book, myst)
    print(f"{_myst_version(myst)}: {' '.join(result.command)} took {result.seconds:.1f} s")
    assert result.problems == [], result.report()
    pages = sorted((book / "_build" / "site" / "content").glob("*.json"))
    toc = _load_config(book)["project"]["toc"]
    assert len(pages) >= len(toc), f"expected a page per toc entry, got {pages}\n{result.report()}"
    # The stub theme was used, nothing was downloaded: only our template.yml is in the cache.
    cache_dir = _theme_cache_dir(book, _load_config(book))
    assert sorted(p.name for p in cache_dir.iterdir()) == ["template.yml"]
    # The site options that name files were found and copied into the site.
    public = {p.name.split("-")[0] for p in (book / "_build" / "site" / "public").iterdir()}
    assert {"logo", "favicon"} <= public, sorted(public)
    # Every chapter page offers its executed notebook and its MyST source for download.
    assert page_downloads(book) == {
        entry["file"]: [Path(entry["file"]).with_suffix(".ipynb").name, Path(entry["file"]).name]
        for entry in toc
    }, result.report()


def page_downloads(book: Path) -> dict[str, list[str]]:
    """Per built page (its source, e.g. ``chapters/00_preface.md``), the files it offers.

    Reads the site's page JSON (``_build/site/content/*.json``): ``frontmatter.downloads`` lists
    each download's ``filename`` and its ``url`` in the site's ``public/`` folder, where the
    file must have been copied.
    """
    offered: dict[str, list[str]] = {}
    public = book / "_build" / "site" / "public"
    for page in sorted((book / "_build" / "site" / "content").glob("*.json")):
        data = json.loads(page.read_text(encoding="utf-8"))
        downloads = data["frontmatter"].get("downloads") or []
        for download in downloads:
            copied = public / download["url"].lstrip("/")
            assert copied.is_file(), f"{page.name}: download {download} was not copied to {copied}"
        offered[data["location"].lstrip("/")] = [download["filename"] for download in downloads]
    return offered


def test_build_without_stub_theme_fails_offline(tmp_path: Path) -> None:
    """Without the stub, mystmd tries to download the theme: proof the stub is what it reads."""
    myst = _require_myst()
    book = copy_book(REPO_ROOT, tmp_path / "book")
    result = run_content_build(book, myst)
    assert result.returncode != 0, result.report()
    assert "templates/site/myst/book-theme" in result.stdout + result.stderr, result.report()


# ------------------------------------------------------------------- the check can fail

BROKEN_PAGE = """---
kernelspec:
  name: python3
  display_name: Python 3
  language: python
---

# A broken page: {name}

(sec-{name})=
## A section

Text that refers to [the section](#sec-{name}).

{text}
"""

# name: (the offending text, put on a page of its own, and what the report must contain)
PAGE_BREAKAGES = {
    "cross-reference": ("See [](#no-such-label).", "no-such-label"),
    "citation": ("As shown by {cite:p}`nosuchkey2020`.", "nosuchkey2020"),
    "citation-at-syntax": ("As shown by [@nosuchkey2021].", "nosuchkey2021"),
    "math": ("$$\n\\frac{1}{\n$$", "\\frac{1}{"),
    "math-macro": ("$\\undefinedmacro{x}$", "undefinedmacro"),
    "directive": ("```{nosuchdirective}\nbody\n```", "nosuchdirective"),
    "role": ("A {nosuchrole}`x` here.", "nosuchrole"),
    "image": ("![a plot](images/no_such_figure.png)", "no_such_figure.png"),
    "include": ("```{include} no_such_part.md\n```", "no_such_part.md"),
    "duplicate-label": ("(sec-duplicate-label)=\n## The same label again", "sec-duplicate-label"),
}


def toc_chapters() -> list[str]:
    """The repository's toc files, e.g. ``["chapters/00_preface.md"]``."""
    return [entry["file"] for entry in _load_config(REPO_ROOT)["project"]["toc"]]


def add_page(book: Path, name: str, text: str) -> str:
    """Add ``chapters/99_broken_<name>.md`` holding ``text`` to the book copy and to its toc.

    Returns:
        The page's path relative to the book.
    """
    relative = f"{CHAPTERS}/99_broken_{name.replace('-', '_')}.md"
    (book / relative).write_text(BROKEN_PAGE.format(name=name, text=text), encoding="utf-8")
    config_path = book / "myst.yml"
    config = config_path.read_text(encoding="utf-8")
    last = f"    - file: {_load_config(book)['project']['toc'][-1]['file']}\n"
    assert last in config, f"toc entry {last!r} not found in the copied myst.yml"
    config_path.write_text(config.replace(last, last + f"    - file: {relative}\n", 1), "utf-8")
    return relative


@pytest.fixture(scope="module")
def broken_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[BuildResult, dict[str, str]]:
    """One build of a book copy with every page breakage, one page each.

    One build instead of one per breakage keeps the suite fast; each breakage sits on its own
    page, so every report line can be traced to the breakage that caused it.
    """
    myst = _require_myst()
    book = _prepared_book(tmp_path_factory.mktemp("broken"))
    pages = {name: add_page(book, name, text) for name, (text, _) in PAGE_BREAKAGES.items()}
    return run_content_build(book, myst), pages


@pytest.mark.parametrize("breakage", sorted(PAGE_BREAKAGES))
def test_broken_page_is_reported(
    broken_build: tuple[BuildResult, dict[str, str]], breakage: str
) -> None:
    result, pages = broken_build
    expected = PAGE_BREAKAGES[breakage][1]
    page = pages[breakage]
    hits = [line for line in result.problems if expected in line]
    assert hits, f"the {breakage} error ({expected!r} in {page}) went unnoticed\n{result.report()}"
    assert any(page in line for line in result.stderr.splitlines() if expected in line), (
        f"the {breakage} error was not attributed to {page}:\n{result.report()}"
    )


def test_missing_logo_is_reported(tmp_path: Path) -> None:
    """A site option that names a missing file is reported.

    It gets a build of its own: mystmd checks site options only once every page is free of
    errors (``--strict`` stops before that step).
    """
    myst = _require_myst()
    book = _prepared_book(tmp_path)
    (book / CHAPTERS / "images" / "logo.svg").unlink()
    result = run_content_build(book, myst)
    assert any("logo.svg" in line for line in result.problems), result.report()


def test_missing_download_is_reported(tmp_path: Path) -> None:
    """A chapter whose notebook is missing cannot offer it: mystmd reports the download.

    Built on a one-page copy (the first chapter only) to keep it fast.
    """
    myst = _require_myst()
    book = _prepared_book(tmp_path)
    first = toc_chapters()[0]
    config_path = book / "myst.yml"
    config = config_path.read_text(encoding="utf-8")
    entries = "".join(f"    - file: {chapter}\n" for chapter in toc_chapters())
    assert entries in config, "the toc entries of myst.yml are not one line each"
    config_path.write_text(config.replace(entries, f"    - file: {first}\n"), encoding="utf-8")
    notebook = Path(first).with_suffix(".ipynb")
    (book / notebook).unlink()
    result = run_content_build(book, myst)
    assert any(notebook.name in line for line in result.problems), result.report()


def test_the_real_pages_of_a_broken_book_stay_clean(
    broken_build: tuple[BuildResult, dict[str, str]],
) -> None:
    """Every problem of the broken build comes from a breakage: no false alarm on real pages."""
    result, _ = broken_build
    for chapter in toc_chapters():
        assert not any(chapter in line for line in result.problems), result.report()


def test_broken_bibliography_is_reported(tmp_path: Path) -> None:
    myst = _require_myst()
    book = _prepared_book(tmp_path)
    bib = book / "references.bib"
    bib.write_text(bib.read_text(encoding="utf-8") + "\n@article{unterminated,\n  title = {x\n")
    result = run_content_build(book, myst)
    assert any("references.bib" in line for line in result.problems), result.report()


def test_problem_markers_cover_mystmd_log_format() -> None:
    """The parser's two rules, on output captured from mystmd 1.11.0."""
    clean = BuildResult(
        ("myst",), 0, "\U0001f4d6 Built chapters/05_errors.md in 9 ms.\n", "\n", 1.0
    )
    assert clean.problems == []  # a page named "errors" is no error
    warned = BuildResult(
        ("myst",),
        0,
        'chapters/x.md\n  - \u26a0\ufe0f  No target for internal reference "#a" was found.\n',
        "",
        1.0,
    )
    assert len(warned.problems) == 1 and re.search(r"#a", warned.problems[0])
    logged = BuildResult(("myst",), 0, "", "\u26d4\ufe0f x.md:3 unknown role: nosuchrole\n", 1.0)
    assert logged.problems == ["\u26d4\ufe0f x.md:3 unknown role: nosuchrole"]
    failed = BuildResult(("myst",), 1, "", "", 1.0)
    assert failed.problems == ["exit status 1"]
