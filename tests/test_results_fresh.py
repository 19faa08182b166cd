"""Stale records cannot hide: every record under data/results ran the library code there is now.

Each record stores the SHA-256 of the source of every library module its run loaded
(:func:`bayesnas_book.provenance.module_hashes`); :func:`bayesnas_book.results.stale_modules`
compares them with the sources now. Timing records (``bench-*``) are checked too: chapters show
them, and a timing of code that has changed since is a timing of other code. Each record must also
have its one exact regenerating command in ``data/results/README.md``'s table.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from bayesnas_book.results import (
    ResultRecord,
    iter_records,
    load_result,
    regenerate_command,
    results_folder,
    stale_modules,
)

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS = results_folder(REPOSITORY)
RECORDS = list(iter_records(root=RESULTS, strict=True)) if RESULTS is not None else []


def _readme_commands() -> dict[str, list[str]]:
    """``data/results/README.md``'s table: top folder -> the commands in its row(s)."""
    table: dict[str, list[str]] = {}
    for line in (RESULTS / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"`[^`]+/`", cells[0]):
            table.setdefault(cells[0].strip("`/"), []).extend(re.findall(r"`([^`]+)`", cells[1]))
    return table


def _top_folder(record: ResultRecord) -> str:
    return record.name.split("/")[0]


@pytest.mark.parametrize("record", RECORDS, ids=[r.name for r in RECORDS])
def test_record_ran_the_library_code_there_is_now(record: ResultRecord) -> None:
    changes = stale_modules(record)
    regenerate = f"regenerate it from the repository root with:\n    {regenerate_command(record)}"
    if changes is None:
        pytest.fail(f"data/results/{record.name} holds no module hashes (recorded before they were kept, "
                    f"commit {(record.commit or 'unknown')[:12]}): {regenerate}")
    if changes:
        listed = ", ".join(f"{name} ({how})" for name, how in changes.items())
        pytest.fail(f"data/results/{record.name} is stale: library code its run loaded has changed since "
                    f"it was recorded: {listed}; {regenerate}")


@pytest.mark.parametrize("record", RECORDS, ids=[r.name for r in RECORDS])
def test_readme_names_the_command_that_regenerates_each_record(record: ResultRecord) -> None:
    commands = _readme_commands().get(_top_folder(record))
    assert commands, (f"data/results/README.md's table has no row for `{_top_folder(record)}/`; "
                      f"add one with the command `{regenerate_command(record)}`")
    assert regenerate_command(record) in commands, (
        f"data/results/README.md's row for `{_top_folder(record)}/` shows {commands}, but the record was "
        f"written by `{regenerate_command(record)}`: show that command (or regenerate the record with the row's)")


def test_there_are_records_to_check() -> None:
    assert RESULTS is not None and RECORDS, "no record under data/results: the freshness check would check nothing"


# --- the check itself, on a copy of the package -----------------------------------------------------------


def _record(folder: Path, modules: dict[str, str] | None, command: str) -> ResultRecord:
    provenance = {"command": command, "config": {}, "git": {"commit": "0" * 40, "dirty": False},
                  "device": "cpu", "started": "2026-01-01T00:00:00+00:00", "wall_time_s": 1.0}
    if modules is not None:
        provenance["modules"] = modules
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "provenance.json").write_text(json.dumps(provenance))
    return load_result(folder)


def test_a_changed_module_makes_a_record_stale(tmp_path: Path) -> None:
    import bayesnas_book
    from bayesnas_book.provenance import source_hash

    package = Path(bayesnas_book.__file__).parent
    copy = tmp_path / "bayesnas_book"
    for relative in ("__init__.py", "config.py", "space/__init__.py", "space/ops.py"):
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package / relative, copy / relative)
    names = {"bayesnas_book": "__init__.py", "bayesnas_book.config": "config.py",
             "bayesnas_book.space": "space/__init__.py", "bayesnas_book.space.ops": "space/ops.py"}
    record = _record(tmp_path / "r", {n: source_hash(copy / f) for n, f in names.items()}, "bayesnas-book study")
    assert stale_modules(record, copy) == {}
    assert stale_modules(record) == {}  # the copy is of the installed sources

    ops = copy / "space" / "ops.py"
    ops.write_bytes(ops.read_bytes().replace(b"\n", b"\r\n"))  # a checkout with CRLF endings is not a change
    assert stale_modules(record, copy) == {}
    ops.write_text(ops.read_text() + "\n# edited\n")
    (copy / "config.py").unlink()
    assert stale_modules(record, copy) == {"bayesnas_book.config": "removed", "bayesnas_book.space.ops": "changed"}
    assert stale_modules(_record(tmp_path / "old", None, "bayesnas-book study"), copy) is None
    # bookkeeping modules (they write and find records) are not compared, even when a record holds them
    (copy / "results.py").write_text("changed")
    fake = {"bayesnas_book.results": "0" * 64, "bayesnas_book.provenance": "1" * 64}
    assert stale_modules(_record(tmp_path / "b", fake, "bayesnas-book study"), copy) == {}


def test_the_regenerating_command_is_the_recorded_one_run_from_the_repository(tmp_path: Path) -> None:
    record = _record(tmp_path / "r", {}, "python -m bayesnas_book.cli compress --model lenet300 "
                     "--out /somewhere/checkout/data/results/compress-x --set 'device=\"cpu\"'")
    assert regenerate_command(record) == ("bayesnas-book compress --model lenet300 --out data/results/compress-x "
                                          "--set 'device=\"cpu\"'")
