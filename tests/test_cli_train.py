"""`bayesnas-book train` and `evaluate`: a genotype's network trained on the digits, then tested."""

from __future__ import annotations

import json

import pytest

from bayesnas_book.cli import main
from bayesnas_book.config import load_config
from bayesnas_book.evaluation import evaluate_run, train_genotype
from bayesnas_book.space.genotype import get_genotype

TINY = ["train.epochs=1", "train.max_batches_per_epoch=3", "network.channels=4", "network.num_cells=3"]


def test_train_then_evaluate(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["train", "--genotype", "bayesnas_cifar10_lambda0.01", "--out", str(out), "--no-progress"]
    args += [a for o in TINY for a in ("--set", o)]
    assert main(args) == 0
    assert "test top-1 error" in capsys.readouterr().out
    for name in ("model.pt", "genotype.json", "metrics.jsonl", "provenance.json", "checkpoint.pt"):
        assert (out / name).exists(), name
    report = evaluate_run(out)
    final = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert report.top1_error == pytest.approx(1 - final["eval_top1"])
    assert report.params > 0 and report.input_shape == (1, 8, 8)
    assert main(["evaluate", str(out)]) == 0
    assert "top-1 error" in capsys.readouterr().out
    assert main(args) == 2  # the folder holds a run now: refused, nothing overwritten
    assert "already holds a training run" in capsys.readouterr().err


def test_a_searched_genotype_file_trains(tmp_path) -> None:
    genotype = get_genotype("bayesnas_imagenet")
    config = load_config("quick", overrides=TINY)
    result = train_genotype(genotype, config)
    assert result.finished and 0.0 <= result.final["top1"] <= 1.0


def test_bad_inputs_are_clear(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--genotype", str(tmp_path / "none.json"), "--no-progress"]) == 2
    assert "is neither a genotype file nor a known name" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "model.pt is missing" in capsys.readouterr().err
    assert main(["train", "--genotype", "bayesnas_cifar10_lambda0.01", "--set", "network.num_cells=2"]) == 2
    assert "`network.num_cells` must be >= 3, got 2" in capsys.readouterr().err


def test_a_normal_cell_with_stride_2_is_refused_before_training(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    data = get_genotype("bayesnas_cifar10_lambda0.01").to_dict()
    data["normal"]["nodes"][2][0]["stride"] = 2
    path = tmp_path / "strided.json"
    path.write_text(json.dumps(data))
    out = tmp_path / "run"
    args = ["train", "--genotype", str(path), "--out", str(out), "--no-progress"] + [a for o in TINY for a in ("--set", o)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "strided.json, normal cell: node_2 input 'c_{k-1}'" in err and 'set "stride": 1' in err
    assert not out.exists()
