"""The command line: parsing, `info`, and clean errors (exit status 2, no traceback)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from bayesnas_book import __version__
from bayesnas_book.cli import build_parser, main


def test_info_prints_version_device_and_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--profile", "quick", "--set", "data.batch_size=16"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"bayesnas-book {__version__}"
    assert "device: cpu (" in out
    config = json.loads(out[out.index("{"):])
    assert config["data"]["batch_size"] == 16 and config["profile"] == "quick"


def test_config_errors_are_one_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--set", "data.batch_size=0", "--set", "nope=1"]) == 2
    err = capsys.readouterr().err
    assert "bayesnas-book info: error: invalid configuration:" in err
    assert "`data.batch_size` must be > 0, got 0" in err and "unknown key `nope`" in err
    assert "Traceback" not in err


def test_unknown_command_and_profile_exit_with_usage() -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["fly"])
    with pytest.raises(SystemExit):
        parser.parse_args(["info", "--profile", "huge"])


def test_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bayesnas_book.cli", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == f"bayesnas-book {__version__}"


# The modules the parser may import: argparse's answers (help, version, usage errors) come
# before torch, matplotlib and the library's heavy modules, which take seconds to import.
LIGHT_MODULES = {"bayesnas_book", "bayesnas_book.cli", "bayesnas_book.config", "bayesnas_book.results"}
HEAVY_PACKAGES = ("torch", "torchvision", "matplotlib", "numpy", "nbformat", "jupytext", "tqdm")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["search", "--help"], ["search", "--rounds", "many"],
                                  ["fly"]], ids=["help", "version", "search-help", "bad-value", "bad-command"])
def test_help_version_and_usage_errors_import_nothing_heavy(argv: list[str]) -> None:
    command = [sys.executable, "-X", "importtime", "-m", "bayesnas_book.cli", *argv]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == (0 if argv[-1] in ("--help", "--version") else 2), result.stderr[-2000:]
    imported = {m.group(1) for m in re.finditer(r"^import time:.*\|\s*(\S+)$", result.stderr, re.MULTILINE)}
    assert "bayesnas_book.config" in imported, "-X importtime lists the imports"
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY_PACKAGES)
    library = sorted(m for m in imported if m.split(".")[0] == "bayesnas_book" and m not in LIGHT_MODULES)
    assert not heavy and not library, f"`bayesnas-book {' '.join(argv)}` imported {heavy[:5]} {library[:5]}"
