"""Every command the README shows is exercised: `bayesnas-book` lines parse and `.ci/run` runs the rest."""

from __future__ import annotations

import re
import shlex

import pytest

from bayesnas_book.cli import build_parser
from tests.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
CI_SCRIPT = (REPO_ROOT / ".ci" / "run").read_text()


def _shell_lines() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line]


def _commands(prefix: str) -> list[list[str]]:
    found = []
    for line in _shell_lines():
        for part in re.split(r"&&", line):
            words = shlex.split(part)
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]  # environment assignments such as BAYESNAS_PROFILE=paper
            if words and words[0] == prefix:
                found.append(words[1:])
            elif prefix == "bayesnas-book" and words[:1] == ["torchrun"] and "bayesnas_book.cli" in words:
                found.append(words[words.index("bayesnas_book.cli") + 1:])  # torchrun ... -m bayesnas_book.cli ARGS
    return found


def test_readme_has_the_two_setup_commands() -> None:
    lines = _shell_lines()
    assert 'pip install -e ".[test]" && pytest' in lines
    main_job = [line for line in lines if line.startswith("pip install -e . && bayesnas-book ")]
    assert main_job == ["pip install -e . && bayesnas-book search"]


@pytest.mark.parametrize("arguments", _commands("bayesnas-book"), ids=" ".join)
def test_every_readme_cli_command_parses(arguments: list[str]) -> None:
    build_parser().parse_args(arguments)  # SystemExit on any unknown command or option


def test_ci_runs_the_readme_commands() -> None:
    lines = _shell_lines()
    main_job = next(line for line in lines if line.startswith("pip install -e . && bayesnas-book "))
    assert main_job in CI_SCRIPT
    assert 'pip install -e ".[test]"' in CI_SCRIPT and "\npytest\n" in CI_SCRIPT
