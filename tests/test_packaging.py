"""pyproject.toml and environment.yml declare the same dependencies, as ranges."""

from __future__ import annotations

import re
import sys

import yaml

from tests.conftest import REPO_ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONDA_NAMES = {"torch": "pytorch", "jupyter-server": "jupyter_server"}
PIP_ONLY = {"tomli"}  # a backport needed by Python 3.10 only
REQUIREMENT = re.compile(r"^([A-Za-z0-9_.\-]+)\s*([<>=!~][^;]*)?(;.*)?$")


def _split(requirement: str) -> tuple[str, str]:
    match = REQUIREMENT.match(requirement.strip())
    assert match, f"cannot parse requirement {requirement!r}"
    return match.group(1).lower(), (match.group(2) or "").replace(" ", "")


def _pyproject() -> dict:
    with open(REPO_ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)


def test_dependencies_are_ranges_not_pins() -> None:
    project = _pyproject()["project"]
    every = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    for requirement in every:
        name, spec = _split(requirement)
        assert spec.startswith(">="), f"{name} should be a lower-bounded range, got {spec!r}"
        assert "==" not in spec, f"{name} is pinned"


def test_environment_yml_matches_pyproject() -> None:
    project = _pyproject()["project"]
    wanted = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["test"] + project["optional-dependencies"]["lab"]:
        name, spec = _split(requirement)
        if name not in PIP_ONLY:
            wanted[CONDA_NAMES.get(name, name)] = spec
    environment = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    conda = {}
    pip_entries: list[str] = []
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            pip_entries += entry["pip"]
            continue
        name, spec = _split(entry)
        conda[name] = spec
    for name, spec in wanted.items():
        assert name in conda, f"environment.yml lacks {name} (pyproject requires it)"
        assert conda[name] == spec, f"{name}: environment.yml says {conda[name]!r}, pyproject {spec!r}"
    extra = set(conda) - set(wanted) - {"python", "nodejs", "pip"}
    assert not extra, f"environment.yml has dependencies pyproject.toml lacks: {sorted(extra)}"
    python = project["requires-python"].replace(" ", "")
    assert conda["python"] == python
    assert pip_entries == ["-e .[test,lab]"]


def test_console_script_and_package_data() -> None:
    project = _pyproject()
    assert project["project"]["scripts"]["bayesnas-book"] == "bayesnas_book.cli:main"
    assert {"configs/*.toml", "space/*.json"} <= set(project["tool"]["setuptools"]["package-data"]["bayesnas_book"])
    assert "configs/*.toml" in project["tool"]["setuptools"]["package-data"]["bayesnas_book"]
