"""Published compression results: the file loads, its units parse and fit, bad files are named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bayesnas_book.compress import build_model, gate_groups, parse_units, published_baselines
from tests.conftest import REPO_ROOT


def test_shipped_file_loads_with_source_and_caveat() -> None:
    table = published_baselines()
    assert "Zhou et al., ICML 2019" in table.source and "memory" not in table.caveat
    assert "removed" in table.caveat  # it says which entries could not be checked
    assert all(r.checked_against for r in table.results)
    assert set(table.architectures) == {"lenet300", "lenet5", "vgg"}
    assert table.architectures["lenet300"] == (784, 300, 100)
    assert table.architectures["lenet5"] == (20, 50, 800, 500)
    methods = {model: [r.method for r in table.for_model(model)] for model in table.architectures}
    assert methods == {
        "lenet300": [],  # no checkable copy of its rows was found
        "lenet5": ["SBP", "BC-GNJ", "L0"],
        "vgg": ["BC-GNJ", "BC-GHS"],
    }


def test_units_parse_and_fit_our_networks() -> None:
    """Every units string parses, has one count per gate layer of our network, each within it."""
    table = published_baselines()
    for model in ("lenet300", "lenet5"):
        ours = tuple(g.num_units for g in gate_groups(build_model(model, (1, 28, 28))))
        assert ours == table.architectures[model]  # the papers count units as our gate layers do
        for result in table.for_model(model):
            assert result.units is not None and len(result.units) == len(ours)
            assert all(0 < u <= c for u, c in zip(result.units, ours, strict=True)), result
            assert parse_units(result.units_text) == result.units and 0 < result.test_error < 5
    for result in table.for_model("vgg"):
        assert result.units is None and result.compression is not None and result.compression > 1


def test_references_are_in_the_bibliography() -> None:
    keys = set(
        re.findall(
            r"^@\w+\{([^,]+),", (REPO_ROOT / "references.bib").read_text(encoding="utf-8"), re.M
        )
    )
    assert {r.reference for r in published_baselines().results} <= keys


@pytest.mark.parametrize("text", ["278--13", "278-98-x", "", "0-5", "-3"])
def test_bad_units_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"`units` must be positive integers joined by '-'"):
        parse_units(text)
    with pytest.raises(ValueError, match=r"`units` must be text like '278-98-13', got 278"):
        parse_units(278)  # type: ignore[arg-type]


def test_unknown_model_is_named() -> None:
    with pytest.raises(
        ValueError,
        match=r"no published results for model 'resnet'; listed models: lenet300, lenet5, vgg",
    ):
        published_baselines().for_model("resnet")


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "table.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def _file(results: list[dict], architecture: str | None = "10-5") -> dict:
    return {
        "source": "s",
        "caveat": "c",
        "models": {"net": {"dataset": "mnist", "architecture": architecture, "results": results}},
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", r"is not valid JSON"),
        ({"source": "s", "models": {}}, r"lacks 'caveat', 'models'"),
        (
            _file([{"method": "A", "test_error": 1.0}]),
            r"\[net\]: each result needs 'method', 'test_error', 'reference' and 'checked_against'",
        ),
        (
            _file([{"method": "A", "test_error": 1.0, "reference": "k", "checked_against": "c"}]),
            r"result 'A' needs exactly one of 'units' and 'compression'",
        ),
        (
            _file([{"method": "A", "units": "3-2", "test_error": 1.0, "reference": "k", "checked_against": ""}]),
            r"drop an entry that cannot be checked",
        ),
        (
            _file(
                [
                    {
                        "method": "A",
                        "units": "3-2",
                        "compression": 2,
                        "test_error": 1.0,
                        "reference": "k",
                        "checked_against": "c",
                    }
                ]
            ),
            r"exactly one of",
        ),
        (
            _file([{"method": "A", "units": "3-2", "test_error": 120, "reference": "k", "checked_against": "c"}]),
            r"needs a test_error in \[0, 100\] \(percent\), got 120",
        ),
        (
            _file([{"method": "A", "units": "11-2", "test_error": 1.0, "reference": "k", "checked_against": "c"}]),
            r"keeps units '11-2', which do not fit the architecture 10-5",
        ),
        (
            _file([{"method": "A", "units": "3-2-1", "test_error": 1.0, "reference": "k", "checked_against": "c"}]),
            r"which do not fit",
        ),
        (
            _file([{"method": "A", "compression": 0.5, "test_error": 1.0, "reference": "k", "checked_against": "c"}]),
            r"needs a compression factor >= 1, got 0.5",
        ),
    ],
)
def test_malformed_files_are_refused(tmp_path: Path, data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        published_baselines(_write(tmp_path, data))


def test_a_well_formed_file_of_our_own(tmp_path: Path) -> None:
    table = published_baselines(
        _write(
            tmp_path,
            _file([{"method": "A", "units": "7-5", "test_error": 2.5, "reference": "k", "checked_against": "c"}]),
        )
    )
    (result,) = table.for_model("net")
    assert (result.units, result.units_text, result.test_error, result.compression) == (
        (7, 5),
        "7-5",
        2.5,
        None,
    )
