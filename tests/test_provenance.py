"""Provenance names the code a run started from, not a commit made while it ran."""

from __future__ import annotations

import json

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
    assert main(["bench", "--suite", "search", "--repeats", "1", "--set", "search.channels=2", "--set", 'search.layout="NR"',
                 "--set", "data.batch_size=4", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "bench.json").read_text())
    assert calls == [0] and record["provenance"]["git"]["commit"] == f"{1:040d}"
