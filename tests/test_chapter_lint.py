"""What a reader sees in the rendered site: markdown that MyST renders wrong, wording around
cross-references, and references to files that are not part of the repository.

The chapter checks read ``chapters/*.md`` (the jupytext sources) and look only at markdown: code
cells, other fenced blocks and ``$$`` display math are skipped.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

CHAPTERS = sorted((REPO_ROOT / "chapters").glob("[0-9][0-9]_*.md"))
NOTEBOOKS = sorted((REPO_ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
THIS_FILE = Path(__file__).resolve()

# A line that markdown reads as a list item (or, after a number, an ordered one).
LIST_MARKER = re.compile(r"^\s*(?:[-+*]|\d+[.)])\s")
# Text that names a file outside the repository (internal notes that do not ship).
OUTSIDE_FILES = re.compile(r"PAPER\.md|\.\./shared|shared/PAPER")
ABSOLUTE_PATH = re.compile(r"/work/|/home/|/root/")


def markdown_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, line)`` of the markdown of a chapter source, outside fences and ``$$`` math."""
    lines, fence, display = [], None, False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if fence is not None:
            if stripped.startswith(fence) and stripped.strip(fence[0]) == "":
                fence = None
            continue
        match = re.match(r"^(`{3,}|~{3,})", stripped)
        if match:
            fence = match.group(1)
            continue
        if display:
            display = "$$" not in stripped  # the closing $$ ends the block
            continue
        if stripped.startswith("$$"):
            display = stripped.count("$$") == 1  # an opening $$ without its closing one
            continue
        lines.append((number, line))
    return lines


def _dollars(line: str) -> int:
    """The number of single ``$`` (inline-math delimiters) of a line, outside inline code."""
    line = re.sub(r"`[^`]*`", "", line).replace(r"\$", "").replace("$$", "")
    return line.count("$")


def inline_math_list_markers(text: str) -> list[int]:
    """Lines that start like a list item while an inline ``$...$`` opened on an earlier line is open.

    MyST accepts them but renders the paragraph as a list and the math as broken text.
    """
    found, open_math, previous = [], False, None
    for number, line in markdown_lines(text):
        if not line.strip() or (previous is not None and number != previous + 1):
            open_math = False  # a blank line (or a skipped block) ends the paragraph
        if open_math and LIST_MARKER.match(line):
            found.append(number)
        if _dollars(line) % 2:
            open_math = not open_math
        previous = number
    return found


def prose(text: str) -> str:
    """The markdown of a chapter with its lines joined by single spaces (phrases can wrap)."""
    return re.sub(r"\s+", " ", " ".join(line for _, line in markdown_lines(text)))


def test_the_checks_see_the_faults() -> None:
    broken = "Text with $a\n+ b$ and more.\n\nFine $a +\nb$ here.\n\n```python\nx = $y\n- z\n```\n"
    assert inline_math_list_markers(broken) == [2]
    assert inline_math_list_markers("A $x$\n- item\n") == []
    assert inline_math_list_markers("$$\na\n- b\n$$\n") == []


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_list_marker_inside_inline_math(path: Path) -> None:
    lines = inline_math_list_markers(path.read_text())
    assert not lines, ("a line inside inline $...$ starts like a list item; reflow it: "
                       + ", ".join(f"{path.relative_to(REPO_ROOT)}:{n}" for n in lines))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_cross_reference_wording(path: Path) -> None:
    """An equation reference renders with its parentheses, an exercise or chapter one with its name."""
    text = prose(path.read_text())
    faults = {
        "([](#eq-...)) renders as ((N))": r"\(\[\]\(#eq-",
        "(exercise {ref}`ex-...`) renders as (exercise Exercise N)": r"[Ee]xercise \{ref\}`ex-|[Ee]xercise \[\]\(#ex-",
        "chapter [](#ch-...) renders as 'chapter <title>'": r"[Cc]hapter \[\]\(#ch-",
    }
    found = [f"{name}: ...{text[max(0, m.start() - 30):m.end() + 30]}..."
             for name, pattern in faults.items() for m in re.finditer(pattern, text)]
    assert not found, f"{path.name}: " + "; ".join(found)


def _tracked_text_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                               check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    paths = []
    for name in names:
        path = REPO_ROOT / name
        if path.suffix == ".ipynb" or not path.is_file() or path.resolve() == THIS_FILE:
            continue
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        paths.append(path)
    return paths


def test_no_tracked_file_names_files_outside_the_repository() -> None:
    found = [f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()[:100]}"
             for path in _tracked_text_files()
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
             if OUTSIDE_FILES.search(line)]
    assert not found, "cite the paper by section, equation or table instead:\n" + "\n".join(found)


def _notebook_outputs_naming_outside_files() -> list[str]:
    found = []
    for path in NOTEBOOKS:
        for index, cell in enumerate(json.loads(path.read_text())["cells"]):
            for output in cell.get("outputs", []):
                text = json.dumps(output)
                for match in (*OUTSIDE_FILES.finditer(text), *ABSOLUTE_PATH.finditer(text)):
                    found.append(f"{path.name} cell {index}: ...{text[max(0, match.start() - 60):match.end() + 30]}...")
    return found


def test_no_notebook_output_names_outside_files_or_absolute_paths() -> None:
    found = _notebook_outputs_naming_outside_files()
    assert not found, "\n".join(found)


def test_no_widget_repr_shows_on_a_static_page() -> None:
    """A widget's output carries its view only: a page without a kernel must not print ``VBox(children=...``."""
    found = [f"{path.name} cell {index}"
             for path in NOTEBOOKS
             for index, cell in enumerate(json.loads(path.read_text())["cells"])
             for output in cell.get("outputs", [])
             if "application/vnd.jupyter.widget-view+json" in output.get("data", {})
             and "".join(output["data"].get("text/plain", "")).strip()]
    assert not found, "widget outputs with a text repr: " + ", ".join(found)


# -- page width: code cells and display equations that would scroll or be clipped (issue 15) ---------
CODE_WIDTH = 88  # characters the rendered page's code column shows without sideways scrolling
# Rendered width of one display-math line, in ordinary glyphs (tests/display_math.py). Measured in
# the real book-theme (Chromium, 1024 px): eq-search-stacking (47.6) and every wider equation ran
# past the column; eq-hard-counts and eq-ard-posterior (44.0) fitted. So at most 45.
MATH_WIDTH = 45


def long_code_cell_lines(text: str, width: int = CODE_WIDTH) -> list[int]:
    """Lines of ```{code-cell}, python and shell (```bash, console, sh, shell) blocks longer than
    ``width`` characters (``#|`` cell options skipped: they do not render)."""
    found, fence = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if fence is None:
            match = re.match(r"^(`{3,})(\{code-cell\}|(python|bash|console|sh|shell)\s*$)", stripped)
            if match:
                fence = match.group(1)
            continue
        if stripped.startswith(fence) and stripped.strip("`") == "":
            fence = None
            continue
        if len(line) > width and not line.startswith("#|"):  # cell options do not render
            found.append(number)
    return found


def math_macros() -> dict[str, str]:
    import yaml

    return yaml.safe_load((REPO_ROOT / "myst.yml").read_text(encoding="utf-8"))["project"]["math"]


def wide_equations(text: str, width: float = MATH_WIDTH) -> list[tuple[int, float]]:
    """``(line, rendered width)`` of the display equations of a page wider than ``width``."""
    from tests.display_math import display_equations, rendered_width

    macros = math_macros()
    return [(line, round(rendered_width(body, macros), 1)) for line, body in display_equations(text)
            if rendered_width(body, macros) > width]


def test_the_width_checks_see_the_faults() -> None:
    from tests.display_math import display_equations, rendered_width

    long = "x = " + "1 + " * 30 + "1"
    assert long_code_cell_lines(f"```{{code-cell}} ipython3\n{long}\nok\n```\n{long}\n") == [2]
    assert long_code_cell_lines(f"```{{code-cell}} ipython3\n#| caption: {long}\n```\n") == []
    assert long_code_cell_lines(f"```python\n{long}\n```\n") == [2]
    assert long_code_cell_lines(f"```text\n{long}\n```\n") == []
    assert long_code_cell_lines(f"```bash\nok \\\n{long}\n```\n") == [3]
    # the equation the issue found clipped, as it was, and broken over two lines
    evidence = (r"\log p(\yv \mid \gv, \sigma^2) = \log \N(\yv \mid \mathbf{0}, \mathbf{C})"
                "\n"
                r"= -\frac{1}{2}\Big(N\log 2\pi + \log|\mathbf{C}| + \yv\T\mathbf{C}^{-1}\yv\Big),"
                r" \qquad \mathbf{C} = \sigma^2\Id + \Phim\Gammam\Phim\T.")
    broken = evidence.replace("\n=", r"\\ =").replace(r"\qquad", r"\\")
    assert wide_equations(f"$$\n{evidence}\n$$ (eq-evidence)\n") == [(1, 64.0)]
    assert wide_equations(f"$$\n{broken}\n$$ (eq-evidence)\n") == []
    # a fraction is as wide as its wider part; limits sit under a sum; macros expand to one glyph
    assert rendered_width(r"\frac{abcdef}{ab}") == rendered_width(r"\frac{ab}{abcdef}") < 7
    assert rendered_width(r"\sum_{i=1}^{n} x", {}) < rendered_width(r"x_{i=1}^{n} x", {})
    assert rendered_width(r"\gv", math_macros()) == rendered_width(r"\gamma")
    page = "```{math}\n:label: eq-a\na + b\n```\n$$x$$ (eq-b)\n"
    assert display_equations(page) == [(1, "a + b"), (5, "x")]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_code_cell_lines_fit_the_page(path: Path) -> None:
    lines = long_code_cell_lines(path.read_text(encoding="utf-8"))
    assert not lines, (f"code lines over {CODE_WIDTH} characters scroll sideways on the page "
                       "(break a shell command with ' \\'): "
                       + ", ".join(f"{path.relative_to(REPO_ROOT)}:{n}" for n in lines))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_display_equations_fit_the_page(path: Path) -> None:
    wide = wide_equations(path.read_text(encoding="utf-8"))
    assert not wide, (f"display equations wider than {MATH_WIDTH} glyphs run under their number "
                      "and are clipped; break them with aligned/gathered: "
                      + ", ".join(f"{path.relative_to(REPO_ROOT)}:{n} ({w})" for n, w in wide))
