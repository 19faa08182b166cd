"""Provenance names the code a run started from, not a commit made while it ran."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pytest
import torch

from bayesnas_book import provenance
from bayesnas_book.cli import main


def test_git_state_is_the_one_at_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    states = iter([{"commit": "a" * 40, "dirty": False}, {"commit": "b" * 40, "dirty": True}])
    monkeypatch.setattr(provenance, "git_commit", lambda: next(states))
    with provenance.git_state_at_start():  # reads "a"
        record = provenance.provenance_record({}, torch.device("cpu"), 0.0)
    assert record["git"] == {"commit": "a" * 40, "dirty": False}
    # outside a run, the state is read when the record is written
    assert provenance.provenance_record({}, torch.device("cpu"), 0.0)["git"]["commit"] == "b" * 40


def test_the_command_line_records_the_state_it_started_with(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def changing_tree() -> dict:  # the tree moves on every time it is asked
        calls.append(len(calls))
        return {"commit": f"{len(calls):040d}", "dirty": False}

    monkeypatch.setattr(provenance, "git_commit", changing_tree)
    assert main(["bench", "--suite", "search", "--repeats", "1", "--set", "search.channels=2",
                 "--set", 'search.layout="NR"',
                 "--set", "data.batch_size=4", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "bench.json").read_text())
    assert calls == [0] and record["provenance"]["git"]["commit"] == f"{1:040d}"


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, path) -> None:
    module = types.ModuleType(name)
    module.__file__ = str(path)
    monkeypatch.setitem(sys.modules, name, module)


def test_records_hash_the_library_modules_loaded(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every loaded bayesnas_book module's source, hashed with LF line endings; others are not."""
    record = provenance.provenance_record({}, torch.device("cpu"), 0.0)
    modules = record["modules"]
    import bayesnas_book.config as config_module

    assert "bayesnas_book.config" in modules and "bayesnas_book" in modules
    assert all(name == "bayesnas_book" or name.startswith("bayesnas_book.") for name in modules)
    assert not set(modules) & provenance.BOOKKEEPING_MODULES  # they compute no result
    assert modules["bayesnas_book.config"] == hashlib.sha256(
        Path(config_module.__file__).read_bytes().replace(b"\r\n", b"\n")).hexdigest()
    lf, crlf = tmp_path / "lf.py", tmp_path / "crlf.py"
    lf.write_bytes(b"x = 1\ny = 2\n")
    crlf.write_bytes(b"x = 1\r\ny = 2\r\n")
    assert provenance.source_hash(lf) == provenance.source_hash(crlf) == hashlib.sha256(b"x = 1\ny = 2\n").hexdigest()
    # `python -m bayesnas_book.cli` runs the command-line module as __main__: it is hashed under its name
    main_module = types.ModuleType("__main__")
    main_module.__file__ = str(lf)
    main_module.__spec__ = importlib.machinery.ModuleSpec("bayesnas_book.fake_cli", None)
    monkeypatch.setitem(sys.modules, "__main__", main_module)
    _fake_module(monkeypatch, "bayesnas_bookish", lf)  # another package whose name starts alike
    hashes = provenance.module_hashes()
    assert hashes["bayesnas_book.fake_cli"] == provenance.source_hash(lf)
    assert "bayesnas_bookish" not in hashes and "__main__" not in hashes


def test_hashes_are_those_of_the_code_when_the_run_started(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module edited while a run works keeps, in its record, the hash of the source it loaded."""
    source = tmp_path / "mod.py"
    source.write_text("A = 1\n")
    _fake_module(monkeypatch, "bayesnas_book.fake_mod", source)
    before = provenance.source_hash(source)
    with provenance.git_state_at_start():
        source.write_text("A = 2\n")  # edited during the run
        late = tmp_path / "late.py"
        late.write_text("B = 1\n")
        _fake_module(monkeypatch, "bayesnas_book.fake_late", late)  # imported during the run
        record = provenance.provenance_record({}, torch.device("cpu"), 0.0)
    assert record["modules"]["bayesnas_book.fake_mod"] == before
    assert record["modules"]["bayesnas_book.fake_late"] == provenance.source_hash(late)
    assert provenance.module_hashes()["bayesnas_book.fake_mod"] == provenance.source_hash(source) != before


def test_the_recorded_command_line_pastes_into_a_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/x/bin/bayesnas-book", "bench", "--set", 'device="cpu"'])
    assert provenance._command_line(None) == """bayesnas-book bench --set 'device="cpu"'"""
    monkeypatch.setattr(sys, "argv", ["/x/bayesnas_book/cli.py", "study", "--seeds", "0"])
    assert provenance._command_line(None) == "python -m bayesnas_book.cli study --seeds 0"
