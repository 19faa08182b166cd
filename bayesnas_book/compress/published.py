"""The published structured-compression results the paper compares with, as a data file.

``published_baselines.json`` (shipped beside this module) lists, per model (``lenet300``,
``lenet5``, ``vgg``), the results BayesNAS (Zhou et al., ICML 2019) puts beside its own
compression: units kept per layer (or a compression factor) and the test error in percent, with
the BibTeX key of the source paper and ``checked_against``: the public copy of the numbers each
entry was checked with. Entries that could not be checked were removed; the file's ``source`` and
``caveat`` say where the numbers come from and what was removed, and a chapter that prints the
table prints them too.

Units are written as in the papers, ``"278-98-13"``: one count per gated layer, in layer order
(for LeNet-300-100 the input pixels and the two hidden layers; for LeNet-5-Caffe the two conv
layers' filters, fc1's inputs and fc1's units), the same order as
:func:`~bayesnas_book.compress.physical.units_text`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["PublishedBaselines", "PublishedResult", "parse_units", "published_baselines"]

FILENAME = "published_baselines.json"


def parse_units(text: str) -> tuple[int, ...]:
    """``"278-98-13"`` -> ``(278, 98, 13)``: units kept per layer.

    Args:
        text: positive integers joined by ``-``.

    Returns:
        The counts, in layer order.

    Raises:
        ValueError: for text that is not positive integers joined by ``-`` (quoting it).
    """
    if not isinstance(text, str):
        raise ValueError(f"`units` must be text like '278-98-13', got {text!r}")
    parts = text.split("-")
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(
            f"`units` must be positive integers joined by '-', like '278-98-13', got {text!r}"
        )
    return tuple(int(p) for p in parts)


@dataclass(frozen=True)
class PublishedResult:
    """One published result.

    Attributes:
        model: our name of the network (``lenet300``, ``lenet5``, ``vgg``).
        dataset: ``mnist`` or ``cifar10``.
        method: the method's short name, e.g. ``"BC-GNJ"``.
        test_error: test error in percent.
        units: units kept per layer, or ``None`` where the paper gives a compression factor.
        compression: the compression factor, or ``None``.
        reference: the BibTeX key of the source (references.bib).
        checked_against: where the numbers were checked (a public copy of them).
    """

    model: str
    dataset: str
    method: str
    test_error: float
    units: tuple[int, ...] | None
    compression: float | None
    reference: str
    checked_against: str

    @property
    def units_text(self) -> str | None:
        """``"278-98-13"``, or ``None``."""
        return None if self.units is None else "-".join(str(u) for u in self.units)


@dataclass(frozen=True)
class PublishedBaselines:
    """The whole file: where it comes from, its caveat, the architectures and the results.

    Attributes:
        source: where the numbers come from.
        caveat: how far they are checked.
        architectures: units per layer of each uncompressed model (``None`` where not given).
        results: every result, in file order.
    """

    source: str
    caveat: str
    architectures: dict[str, tuple[int, ...] | None]
    results: tuple[PublishedResult, ...]

    def for_model(self, model: str) -> list[PublishedResult]:
        """The results for one model.

        Raises:
            ValueError: for a model the file does not list (naming the ones it does).
        """
        if model not in self.architectures:
            raise ValueError(
                f"no published results for model {model!r}; "
                f"listed models: {', '.join(self.architectures)}"
            )
        return [r for r in self.results if r.model == model]


def _result(
    model: str, dataset: str, architecture: tuple[int, ...] | None, entry: Any, where: str
) -> PublishedResult:
    needed = {"method", "test_error", "reference", "checked_against"}
    if not isinstance(entry, dict) or not needed <= set(entry) or not entry["checked_against"]:
        raise ValueError(
            f"{where}: each result needs 'method', 'test_error', 'reference' and 'checked_against' "
            f"(where its numbers were checked; drop an entry that cannot be checked), got {entry!r}"
        )
    has_units, has_factor = entry.get("units") is not None, entry.get("compression") is not None
    if has_units == has_factor:
        raise ValueError(
            f"{where}: result {entry['method']!r} needs exactly one of 'units' and 'compression'"
        )
    error = entry["test_error"]
    if isinstance(error, bool) or not isinstance(error, (int, float)) or not 0 <= error <= 100:
        raise ValueError(
            f"{where}: result {entry['method']!r} needs a test_error in [0, 100] (percent), "
            f"got {error!r}"
        )
    units = parse_units(entry["units"]) if has_units else None
    if units is not None and architecture is not None:
        if len(units) != len(architecture) or any(
            u > a for u, a in zip(units, architecture, strict=True)
        ):
            raise ValueError(
                f"{where}: result {entry['method']!r} keeps units {entry['units']!r}, "
                f"which do not fit the architecture {'-'.join(map(str, architecture))}"
            )
    factor = entry.get("compression")
    if has_factor and (
        isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 1
    ):
        raise ValueError(
            f"{where}: result {entry['method']!r} needs a compression factor >= 1, got {factor!r}"
        )
    return PublishedResult(
        model,
        dataset,
        str(entry["method"]),
        float(error),
        units,
        None if factor is None else float(factor),
        str(entry["reference"]),
        str(entry["checked_against"]),
    )


def published_baselines(path: str | Path | None = None) -> PublishedBaselines:
    """Load and check the published results (default: the file shipped with the package).

    Args:
        path: another file of the same layout (tests).

    Returns:
        A :class:`PublishedBaselines`.

    Raises:
        ValueError: for a file that is not valid JSON, lacks ``source``, ``caveat`` or
            ``models``, or holds a malformed result (the message names the model and method).
    """
    if path is None:
        text = (
            resources.files("bayesnas_book.compress").joinpath(FILENAME).read_text(encoding="utf-8")
        )
        where = FILENAME
    else:
        text, where = Path(path).read_text(encoding="utf-8"), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where} is not valid JSON ({error})") from None
    missing = [
        key
        for key in ("source", "caveat", "models")
        if not (isinstance(data, dict) and data.get(key))
    ]
    if missing:
        raise ValueError(
            f"{where} lacks {', '.join(repr(k) for k in missing)}: "
            "every published number needs its source and caveat"
        )
    architectures: dict[str, tuple[int, ...] | None] = {}
    results: list[PublishedResult] = []
    for model, block in data["models"].items():
        arch_text = block.get("architecture")
        architecture = parse_units(arch_text) if arch_text is not None else None
        architectures[model] = architecture
        for entry in block.get("results", []):
            results.append(
                _result(model, str(block.get("dataset")), architecture, entry, f"{where} [{model}]")
            )
    return PublishedBaselines(
        str(data["source"]), str(data["caveat"]), architectures, tuple(results)
    )
