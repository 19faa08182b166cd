"""Output folders of every command: atomic files, stale temporaries, nothing created before a refusal.

A run killed at any moment must leave its folder resumable: each file whole or absent, the atomic
writer's temporaries removed when the next run starts there, and a run that refuses (missing data,
a missing checkpoint, a broken genotype) must not leave an empty folder behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.figure
import pytest

from bayesnas_book.atomic import atomic_write_bytes
from bayesnas_book.cli import main
from bayesnas_book.compress import CompressionError, run_compress
from bayesnas_book.config import load_config
from bayesnas_book.evaluation import train_genotype
from bayesnas_book.search import SearchError, run_search
from bayesnas_book.space.genotype import get_genotype
from bayesnas_book.study import StudyError, run_study
from bayesnas_book.train import TrainError
from bayesnas_book.transfer import TransferError, train_transfer

SEARCH = ["search.channels=4", 'search.layout="NR"', "search.cutout=0", "search.warmup_epochs=1", "search.switch_epochs=1",
          "search.rounds=1", "search.curvature_batches=1", "search.max_batches_per_epoch=2", "data.batch_size=32",
          "search.reference_batch_size=32"]
TRAIN = ["train.epochs=2", "train.max_batches_per_epoch=2", "network.channels=4", "network.num_cells=3"]
COMPRESS = ["compress.pretrain_epochs=1", "compress.gate_epochs=1", "compress.rounds=1", "compress.finetune_epochs=1",
            "compress.max_batches_per_epoch=2"]
STUDY_NET = {"channels": 2, "num_cells": 3}
STALE = (".checkpoint.pt.k1ll3d_x.tmp", ".metrics.jsonl.a8b7c6d5.tmp")
KEPT = ("notes.tmp", ".checkpoint.pt.tmp", "checkpoint.pt.a8b7c6d5.tmp")  # not the writer's pattern: never touched


def _search(out: Path | None, resume: bool = False, stop_after: int | None = None):
    return run_search(load_config("quick", overrides=SEARCH), out=out, resume=resume, stop_after=stop_after)


def _train(out: Path | None, resume: bool = False, stop_after: int | None = None):
    config = load_config("quick", overrides=[*SEARCH, *TRAIN])
    return train_genotype(get_genotype("bayesnas_cifar10_lambda0.01"), config, out=out, resume=resume, stop_after=stop_after)


def _compress(out: Path | None, resume: bool = False, stop_after: int | None = None):
    return run_compress(load_config("quick", overrides=COMPRESS), out=out, resume=resume, stop_after=stop_after)


def _study(out: Path, resume: bool = False, stop_after: int | None = None):
    config = load_config("quick", overrides=[*SEARCH, *TRAIN])
    return run_study(config, [0], [0.5], out, resume=resume, **STUDY_NET)


RUNS = {"search": _search, "train": _train, "compress": _compress, "study": _study}


@pytest.fixture
def replaced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every destination :func:`os.replace` renamed a file onto (the atomic writer's last step)."""
    destinations: list[Path] = []
    original = os.replace

    def record(source, destination, *args, **kwargs):
        destinations.append(Path(destination))
        return original(source, destination, *args, **kwargs)

    monkeypatch.setattr(os, "replace", record)
    return destinations


@pytest.mark.parametrize("command", RUNS)
def test_every_file_a_run_writes_goes_through_the_atomic_writer(command: str, tmp_path, replaced: list[Path]) -> None:
    out = tmp_path / "run"
    RUNS[command](out)
    written = sorted(path.name for path in out.iterdir())
    assert written and all(not name.endswith(".tmp") for name in written)
    assert sorted({path.name for path in replaced if path.parent == out}) == written


def test_bench_writes_its_json_atomically_and_removes_its_stale_temporaries(tmp_path, replaced: list[Path],
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import bayesnas_book.bench_suites as suites

    monkeypatch.setattr(suites, "_measure_cpu_isolated", lambda *args, **kwargs: ({"rows": []}, None))
    monkeypatch.setitem(suites._FORMATS, "search", lambda result: "no rows")
    out = tmp_path / "bench"
    out.mkdir()
    for name in (".bench.json.k1ll3d_x.tmp", *KEPT):
        (out / name).write_bytes(b"partial")
    suites.run_suite("search", load_config("quick", overrides=['device="cpu"']), out, repeats=1)
    assert sorted(path.name for path in out.iterdir()) == sorted(["bench.json", *KEPT])
    assert out / "bench.json" in replaced


def test_a_kill_while_the_cells_are_drawn_leaves_no_partial_png(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Killed(BaseException):
        pass

    def killed_savefig(figure, target, *args, **kwargs):
        handle = open(target, "wb") if isinstance(target, (str, os.PathLike)) else target  # noqa: SIM115
        handle.write(b"\x89PNG")  # the first bytes are out when the process dies
        handle.flush()
        raise Killed

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(matplotlib.figure.Figure, "savefig", killed_savefig)
        with pytest.raises(Killed):
            _search(out)
    assert (out / "genotype.json").exists()
    assert not (out / "cells.png").exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    result = _search(out, resume=True)  # the resumed run writes what the killed one did not
    assert result.genotype is not None and (out / "cells.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("command", ["search", "train", "compress"])
def test_stale_temporaries_are_removed_when_a_run_starts_or_resumes(command: str, tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    for name in (*STALE, *KEPT):
        (out / name).write_bytes(b"partial")
    RUNS[command](out, stop_after=1)  # a fresh run in a folder a killed run left only temporaries in
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == sorted(KEPT)
    for name in STALE:
        (out / name).write_bytes(b"partial")
    RUNS[command](out, resume=True)
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == sorted(KEPT)


def test_a_study_killed_while_writing_its_first_setting_starts_again(tmp_path) -> None:
    out = tmp_path / "study"
    out.mkdir()
    (out / ".settings.jsonl.q1w2e3r4.tmp").write_bytes(b"{")
    _study(out)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert (out / "study.json").exists()


def test_remove_stale_temporaries_keeps_everything_else(tmp_path) -> None:
    from bayesnas_book.atomic import remove_stale_temporaries

    atomic_write_bytes(tmp_path / "checkpoint.pt", b"whole")
    for name in (*STALE, *KEPT, ".history.json.abcdefgh.tmp"):
        (tmp_path / name).write_bytes(b"partial")
    removed = remove_stale_temporaries(tmp_path, ["checkpoint.pt", "metrics.jsonl"])
    assert sorted(p.name for p in removed) == sorted(STALE)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["checkpoint.pt", *KEPT, ".history.json.abcdefgh.tmp"])
    assert remove_stale_temporaries(tmp_path / "missing", ["checkpoint.pt"]) == []


@pytest.mark.parametrize(
    ("command", "error", "message"),
    [
        ("search", SearchError, "no checkpoint at .*start a new run without --resume"),
        ("train", TrainError, "no checkpoint at .*start a new run without --resume"),
        ("compress", CompressionError, "no checkpoint at .*start a new run without --resume"),
        ("study", StudyError, r"cannot resume: .*missing.* does not exist; start the study without --resume"),
    ],
)
def test_resume_into_a_missing_folder_creates_nothing(command: str, error: type, message: str, tmp_path) -> None:
    out = tmp_path / "missing" / "run"
    with pytest.raises(error, match=message):
        RUNS[command](out, resume=True)
    assert not (tmp_path / "missing").exists()


def test_transfer_resume_into_a_missing_folder_creates_nothing(tmp_path) -> None:
    out = tmp_path / "missing" / "run"
    with pytest.raises(TransferError, match="no checkpoint at .*start a new run without --resume"):
        train_transfer(get_genotype("bayesnas_imagenet"), load_config("quick"), tmp_path / "imagenet", out=out, resume=True)
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["search", "--dataset", "cifar10", *[a for o in SEARCH for a in ("--set", o)]],
        ["search", "--dataset", "mnist", *[a for o in SEARCH for a in ("--set", o)]],
        ["compress", "--model", "lenet5", "--dataset", "mnist", *[a for o in COMPRESS for a in ("--set", o)]],
        ["compress", "--model", "vgg", "--dataset", "cifar10", *[a for o in COMPRESS for a in ("--set", o)]],
        ["train", "--genotype", "bayesnas_cifar10_lambda0.01", "--dataset", "cifar10"],
        ["transfer", "--genotype", "bayesnas_imagenet", "--imagenet", "no-such-folder"],
    ],
    ids=["search-cifar10", "search-mnist", "compress-mnist", "compress-cifar10", "train-cifar10", "transfer"],
)
def test_a_run_without_its_data_creates_no_folder(args: list[str], tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs" / "run"
    assert main([*args, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err or "bayesnas-book data" in err, err
    assert not (tmp_path / "runs").exists()


def test_resume_from_the_command_line_creates_nothing(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs" / "run"
    sets = [a for o in SEARCH for a in ("--set", o)]
    for args in (["search", *sets], ["compress", *[a for o in COMPRESS for a in ("--set", o)]],
                 ["train", "--genotype", "bayesnas_cifar10_lambda0.01", *[a for o in TRAIN for a in ("--set", o)]]):
        assert main([*args, "--out", str(out), "--resume", "--no-progress"]) == 2
        assert "no checkpoint at" in capsys.readouterr().err
        assert not (tmp_path / "runs").exists()
    assert main(["study", "--seeds", "0", "--lambdas", "0.5", "--out", str(out), "--resume", *sets]) == 2
    assert "does not exist; start the study without --resume" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_assignments_build_writes_every_file_atomically(tmp_path, replaced: list[Path]) -> None:
    from bayesnas_book.assignments import build_assignments
    from tests.conftest import REPO_ROOT

    build_assignments(REPO_ROOT, tmp_path / "out", names=["00_preface"])
    written = {path for path in (tmp_path / "out").rglob("*") if path.is_file()}
    assert written and not [path for path in written if path.name.endswith(".tmp")]
    assert sorted(written - set(replaced)) == []
