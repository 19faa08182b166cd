"""Atomic checkpoints: round trip, no partial file on a failed write, RNG resume, foreign files."""

from __future__ import annotations

import json
import random

import pytest
import torch

from bayesnas_book.atomic import atomic_writer
from bayesnas_book.checkpoint import (
    CheckpointError,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from bayesnas_book.provenance import provenance_record, write_json


def test_round_trip_and_rng_resume(tmp_path) -> None:
    torch.manual_seed(1)
    random.seed(1)
    path = save_checkpoint(tmp_path / "c.pt", "search", {"seed": 1}, {"epoch": 2}, {"w": torch.arange(3)})
    expected = (torch.rand(2), random.random())
    payload = load_checkpoint(path, "search")
    assert payload["step"] == {"epoch": 2} and payload["config"] == {"seed": 1}
    assert torch.equal(payload["state"]["w"], torch.arange(3))
    restore_rng_state(payload["rng"])
    assert torch.equal(torch.rand(2), expected[0]) and random.random() == expected[1]


def test_an_interrupted_write_leaves_the_old_file(tmp_path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, "train", {}, {"epoch": 1}, {})
    before = path.read_bytes()

    with pytest.raises(KeyboardInterrupt), atomic_writer(path) as handle:
        handle.write(b"partial")
        raise KeyboardInterrupt
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_bad_checkpoints_are_named(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint at .*start a new run without --resume"):
        load_checkpoint(tmp_path / "none.pt", "search")
    path = save_checkpoint(tmp_path / "c.pt", "train", {}, {}, {})
    with pytest.raises(CheckpointError, match="is a 'train' checkpoint, not a 'search' one"):
        load_checkpoint(path, "search")
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="is not a readable checkpoint"):
        load_checkpoint(truncated, "train")
    foreign = tmp_path / "f.pt"
    torch.save({"model": 1}, foreign)
    with pytest.raises(CheckpointError, match="was not written by bayesnas-book"):
        load_checkpoint(foreign, "train")


def test_provenance_record(tmp_path) -> None:
    import time

    record = provenance_record({"seed": 0}, torch.device("cpu"), time.time() - 1.0, argv=["bayesnas-book", "search"])
    assert record["command"] == "bayesnas-book search" and record["wall_time_s"] >= 1.0
    assert record["versions"]["torch"] == torch.__version__
    assert set(record["git"]) == {"commit", "dirty"}
    path = write_json(tmp_path / "p.json", record)
    assert json.loads(path.read_text())["config"] == {"seed": 0}



def test_provenance_names_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import time
    from pathlib import Path

    from bayesnas_book import provenance

    def command() -> str:
        return provenance_record({}, torch.device("cpu"), time.time())["command"]

    monkeypatch.setattr(sys, "argv", ["/usr/bin/bayesnas-book", "search", "--seed", "1"])
    assert command() == "bayesnas-book search --seed 1"
    monkeypatch.setattr(sys, "argv", [str(Path(provenance.__file__).with_name("cli.py")), "train", "--resume"])
    assert command() == "python -m bayesnas_book.cli train --resume"  # python -m, as under torchrun
    monkeypatch.setattr(sys, "argv", ["ipykernel_launcher.py"])
    assert command() == "called from Python (no bayesnas-book command line)"
