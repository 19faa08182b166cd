"""The chapters' output comparison: text exact, integers exact, decimals to one unit in their last digit."""

from __future__ import annotations

import shutil
import subprocess
import sys

import nbformat
import pytest

from bayesnas_book.output_compare import NumericText, numbers_agree, texts_agree
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize(("reference", "fresh", "agree"), [
    ("0.268", "0.268", True),
    ("0.268", "0.269", True),    # a float64 rounding-boundary flip
    ("0.268", "0.267", True),
    ("0.268", "0.270", False),   # two units: a real change
    ("0.268", "0.284", False),   # what another CPU printed in float32
    ("18", "19", False),         # counts are exact
    ("18", "18.0", False),
    ("1.5e-03", "1.6e-03", True),
    ("1.5e-03", "1.7e-03", False),
    ("-0.001", "0.000", True),
    ("2.293045088097", "2.293045229382", False),
    ("1.249e-16", "2.776e-16", True),    # rounding error itself: below 1e-12 on both sides
    ("8.0e-15", "7.1e-15", True),
    ("0", "1.0e-16", False),             # an integer stays exact
    ("1.2e-16", "1.0e-03", False),       # a real difference appeared
    ("3.0e-12", "1.0e-12", False),       # not below the roundoff level: the digit rule
])
def test_numbers_agree_to_their_last_printed_digit(reference: str, fresh: str, agree: bool) -> None:
    assert numbers_agree(reference, fresh) is agree


def test_text_around_the_numbers_is_exact() -> None:
    assert texts_agree("loss 0.268, accuracy 0.934 (18/128 pruned)", "loss 0.269, accuracy 0.933 (18/128 pruned)")
    assert not texts_agree("loss 0.268, accuracy 0.934", "loss 0.268, accuracy 0.934 ")
    assert not texts_agree("pruned 18/128", "pruned 12/128")
    assert not texts_agree("kept 1 2 3", "kept 1 2")
    assert NumericText("a 0.100") == "a 0.101" and NumericText("a 0.100") != "a 0.102"
    assert not (NumericText("a 0.100") != "a 0.099")


def _notebook_with_stored_outputs(path, pairs: list[tuple[str, str]]) -> None:
    """A notebook whose cells print ``fresh`` while their stored output says ``reference``."""
    cells = []
    for count, (reference, fresh) in enumerate(pairs, start=1):
        cell = nbformat.v4.new_code_cell(f"print({fresh!r})", execution_count=count)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=reference + "\n")]
        cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.slow
def test_the_chapters_nbval_run_fails_beyond_the_tolerance(tmp_path) -> None:
    folder = tmp_path / "chapters"
    folder.mkdir()
    shutil.copy(REPO_ROOT / "chapters" / "conftest.py", folder / "conftest.py")
    _notebook_with_stored_outputs(folder / "nb.ipynb", [
        ("loss 0.268, pruned 18/128", "loss 0.269, pruned 18/128"),   # within: passes
        ("loss 0.268, pruned 18/128", "loss 0.284, pruned 18/128"),   # beyond: fails
        ("loss 0.268, pruned 18/128", "loss 0.268, pruned 12/128"),   # a count: fails
    ])
    run = subprocess.run([sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "-p", "no:cacheprovider",
                          "-o", "addopts=", "-rA", str(folder / "nb.ipynb")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    summary = [line for line in run.stdout.splitlines() if line.startswith(("PASSED", "FAILED"))]
    assert [line.split()[0] for line in summary] == ["PASSED", "FAILED", "FAILED"], run.stdout[-3000:]
