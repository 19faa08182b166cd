"""The compression run: the quick profile's measured result, resume, bad inputs, the command."""

from __future__ import annotations

import json

import pytest
import torch

from bayesnas_book.checkpoint import save_checkpoint
from bayesnas_book.cli import main
from bayesnas_book.compress import CompressionData, CompressionError, run_compress
from bayesnas_book.config import load_config

SMALL = ["compress.pretrain_epochs=2", "compress.gate_epochs=1", "compress.rounds=1", "compress.finetune_epochs=1",
         "compress.max_batches_per_epoch=3"]


@pytest.fixture(scope="module")
def quick_result():
    return run_compress(load_config("quick"))


def test_quick_run_sparsity_and_error(quick_result) -> None:
    report = quick_result.report
    methods = report["methods"]
    assert report["before"]["units_text"] == "64-300-100" and report["before"]["params"] == 50_610
    bayes = methods["bayes"]
    # measured (CPU, 1 thread): units 40-78-31 (68% of the units removed), 8.5x fewer params,
    # test error 4.5% before, 5.3% Bayes, 3.1% magnitude, 3.1% group lasso
    assert 0.5 < bayes["units_removed"] < 0.85
    assert bayes["compression"] > 4.0
    assert methods["pretrained"]["test_error"] < 0.08
    assert bayes["test_error"] < 0.09
    for method in ("magnitude", "group_lasso"):  # matched: the same units per layer
        assert methods[method]["units"] == bayes["units"]
        assert methods[method]["test_error"] < 0.07
    for entry in methods.values():  # the physically pruned networks compute the same function
        assert entry["pruned_test_error"] == pytest.approx(entry["test_error"], abs=1e-9)
        assert entry["max_logit_difference"] < 1e-4
    kept = [record["layers"] for record in quick_result.history]
    assert [layer["kept"] for layer in kept[-1].values()] == [int(v) for v in bayes["units"].values()]
    # pruning only removes: kept units never grow from round to round
    for earlier, later in zip(kept, kept[1:], strict=False):
        assert all(later[name]["kept"] <= earlier[name]["kept"] for name in earlier)


def test_resume_equals_uninterrupted(tmp_path, quick_result) -> None:
    config = load_config("quick")
    out = tmp_path / "run"
    partial = run_compress(config, out=out, stop_after=19)  # killed inside the second round's gate epochs
    assert not partial.finished and not (out / "report.json").exists()
    resumed = run_compress(config, out=out, resume=True)
    assert resumed.finished
    assert resumed.report["methods"]["bayes"]["units"] == quick_result.report["methods"]["bayes"]["units"]
    for method, entry in quick_result.report["methods"].items():
        assert resumed.report["methods"][method]["test_error"] == pytest.approx(entry["test_error"])
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["resumed_from_step"] == 19


def test_refusals(tmp_path) -> None:
    config = load_config("quick", overrides=SMALL)
    out = tmp_path / "run"
    run_compress(config, out=out, stop_after=1)
    with pytest.raises(CompressionError, match="already holds a compression run"):
        run_compress(config, out=out)
    with pytest.raises(CompressionError, match=r"its configuration differs \(compress.lambda_gate"):
        run_compress(load_config("quick", overrides=[*SMALL, "compress.lambda_gate=0.2"]), out=out, resume=True)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    save_checkpoint(foreign / "checkpoint.pt", "train", {}, {"epoch": 1}, {})
    with pytest.raises(CompressionError, match="is a 'train' checkpoint, not a 'compress' one"):
        run_compress(config, out=foreign, resume=True)
    with pytest.raises(CompressionError, match="no checkpoint at"):
        run_compress(config, out=tmp_path / "empty", resume=True)


def test_dataset_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"model 'vgg' reads 3x32x32 colour images \(CIFAR-10\), got input shape \(1, 8, 8\)"):
        run_compress(load_config("quick", overrides=[*SMALL, 'compress.model="vgg"']))
    images = torch.zeros(20, 1, 28, 28)
    data = torch.utils.data.TensorDataset(images, torch.arange(20) % 10)
    with pytest.raises(ValueError, match=r"the dataset's images have shape \(1, 28, 28\) but model 'lenet300' was built for \(1, 8, 8\)"):
        run_compress(load_config("quick", overrides=SMALL), data=CompressionData(data, data, data, (1, 8, 8)))


def test_command_end_to_end(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    args = ["compress", "--model", "lenet5", "--dataset", "digits", "--profile", "quick", "--out", str(out), "--no-progress"]
    args += [a for o in [*SMALL, "compress.width=0.25", "compress.lambda_gate=1.0"] for a in ("--set", o)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "before: units 5-12-48-125" in printed and "bayes: units" in printed and "group_lasso: units" in printed
    for name in ("checkpoint.pt", "report.json", "history.json", "metrics.jsonl", "provenance.json", "pruned_bayes.pt"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "lenet5" and report["dataset"] == "digits"
    assert json.loads((out / "provenance.json").read_text())["config"]["compress"]["model"] == "lenet5"
    assert main(args) == 2
    assert "already holds a compression run" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # finished: resuming only rewrites the report
    assert main(["compress", "--model", "vgg", "--dataset", "digits", "--out", str(tmp_path / "vgg")]) == 2
    assert "model 'vgg' reads 3x32x32" in capsys.readouterr().err
    assert main(["compress", "--set", "compress.baseline_sparsity=2.0", "--out", str(tmp_path / "bad")]) == 2
    assert "`compress.baseline_sparsity` must be in [0, 1), got 2.0" in capsys.readouterr().err
