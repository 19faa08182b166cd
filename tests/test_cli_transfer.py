"""`bayesnas-book transfer`: the ImageNet mobile net on an ImageFolder tree, resume, evaluate, bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bayesnas_book.checkpoint import load_checkpoint
from bayesnas_book.cli import main
from bayesnas_book.config import ConfigError, load_config
from bayesnas_book.data import DatasetError, write_imagefolder_fixture
from bayesnas_book.evaluation import MOBILE_MACS, EvaluationError, evaluate_run, train_genotype
from bayesnas_book.models.counting import count_macs, count_parameters
from bayesnas_book.space.genotype import GenotypeError, get_genotype, load_genotype, save_genotype
from bayesnas_book.transfer import (
    MOBILE_INPUT,
    PAPER_IMAGENET,
    TransferError,
    build_transfer_network,
    train_transfer,
    transfer_data,
    transfer_transforms,
)

TINY = ["transfer.train.epochs=2", "transfer.train.batch_size=8", "transfer.channels=4", "transfer.num_cells=3"]
GENOTYPE = "bayesnas_imagenet"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_imagefolder_fixture(tmp_path_factory.mktemp("imagenet"), classes=3, images_per_class=8, size=36)


def cli(*args: str, overrides: list[str] = TINY) -> list[str]:
    return ["transfer", *args, "--no-progress", *[a for o in overrides for a in ("--set", o)]]


def test_transfer_trains_resumes_and_evaluates(tree, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(cli("--genotype", GENOTYPE, "--imagenet", str(tree), "--out", str(whole))) == 0
    assert "val top-1 error" in capsys.readouterr().out
    for name in ("checkpoint.pt", "genotype.json", "metrics.jsonl", "model.pt", "provenance.json"):
        assert (whole / name).exists(), name
    # a job stopped after one epoch and resumed ends with the uninterrupted run's weights
    assert main(cli("--genotype", GENOTYPE, "--imagenet", str(tree), "--out", str(parts), "--stop-after", "1")) == 0
    assert "stopped after epoch 1" in capsys.readouterr().out and not (parts / "model.pt").exists()
    assert main(cli("--genotype", GENOTYPE, "--imagenet", str(tree), "--out", str(parts), "--resume")) == 0
    a = torch.load(whole / "model.pt", weights_only=True)
    b = torch.load(parts / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    record = load_checkpoint(whole / "checkpoint.pt", "train")["config"]
    assert record["train"]["label_smoothing"] == 0.1 and record["train"]["grad_clip"] == 5.0
    assert record["run"]["command"] == "transfer" and record["run"]["transfer"]["root"] == str(tree.resolve())
    report = evaluate_run(whole)
    final = json.loads((whole / "metrics.jsonl").read_text().splitlines()[-1])
    assert report.top1_error == pytest.approx(1 - final["eval_top1"])
    assert report.top5_error == pytest.approx(1 - final["eval_top5"])
    assert report.input_shape == MOBILE_INPUT and 0 < report.macs < MOBILE_MACS
    assert main(["evaluate", str(whole)]) == 0
    out = capsys.readouterr().out
    assert "multiply-adds at (3, 224, 224)" in out and "mobile setting (< 600M multiply-adds): within" in out


def test_the_paper_profile_builds_the_official_mobile_net() -> None:
    paper = load_config("paper").transfer
    assert (paper.channels, paper.num_cells, paper.image_size, paper.train.label_smoothing) == (48, 14, 224, 0.1)
    assert (paper.color_jitter, paper.hue, paper.train.grad_clip) == (0.4, 0.2, 5.0)
    genotype = get_genotype(GENOTYPE)
    official = genotype.metadata["official"]
    network = build_transfer_network(genotype, paper, 1000)
    assert count_parameters(network) == official["params"] == 4_008_928
    assert count_macs(network, MOBILE_INPUT) == official["macs"] < MOBILE_MACS
    assert set(PAPER_IMAGENET) == {"top1_error", "top5_error", "params_M"}


def test_transforms_crop_and_normalise(tree) -> None:
    config = load_config("quick").transfer
    train_tf, eval_tf = transfer_transforms(config)
    data = transfer_data(load_config("quick"), tree)
    assert data.classes == ("n00000000", "n00000001", "n00000002") and len(data.train) == 24
    x, y = data.val[0]
    assert x.shape == (3, config.image_size, config.image_size) and y == 0
    torch.testing.assert_close(data.val[0][0], x)  # evaluation is deterministic
    assert data.train[0][0].shape == x.shape
    # the smoothed loss the engine trains with: (1 - eps) * NLL + eps * mean_k(-log p_k)
    logits, target = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 2, 1, 1])
    logp = logits.log_softmax(1)
    eps = load_config("quick").transfer.train.label_smoothing
    by_hand = ((1 - eps) * -logp[torch.arange(4), target] + eps * -logp.mean(1)).mean()
    torch.testing.assert_close(F.cross_entropy(logits, target, label_smoothing=eps), by_hand)


def test_bad_image_folders_stop_before_training(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config("quick", overrides=TINY)
    empty = write_imagefolder_fixture(tmp_path / "empty", classes=2, images_per_class=1, size=36)
    for image in (empty / "train" / "n00000001").iterdir():
        image.unlink()
    with pytest.raises(DatasetError, match=r"class folder .*n00000001 has no images"):
        train_transfer(get_genotype(GENOTYPE), config, empty)
    (tmp_path / "bare" / "train").mkdir(parents=True)
    (tmp_path / "bare" / "val").mkdir()
    with pytest.raises(DatasetError, match=r"train has no class folders"):
        train_transfer(get_genotype(GENOTYPE), config, tmp_path / "bare")
    differ = write_imagefolder_fixture(tmp_path / "differ", classes=["n1", "n2"], images_per_class=1, size=36,
                                       splits=("train",))
    write_imagefolder_fixture(differ, classes=["n1", "n3"], images_per_class=1, size=36, splits=("val",))
    with pytest.raises(DatasetError, match=r"class folders of .* differ.*only in train: n2; only in val: n3"):
        train_transfer(get_genotype(GENOTYPE), config, differ)
    out = tmp_path / "out"
    assert main(cli("--genotype", GENOTYPE, "--imagenet", str(differ), "--out", str(out))) == 2
    assert "differ" in capsys.readouterr().err and not out.exists()
    assert main(cli("--genotype", GENOTYPE, "--imagenet", str(tmp_path / "none"), "--out", str(out))) == 2
    assert "ImageNet not found" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["normal"]["nodes"][1][0].update(source="node_3"), "a node input must come from an earlier node"),
        (lambda d: d["reduction"]["nodes"][0][0].update(source="node_9"), "a node input must come from an earlier node"),
        (lambda d: d["normal"]["nodes"][0][0].update(ops=["conv_9x9"]), "unknown op 'conv_9x9'; valid ops"),
        (lambda d: d["normal"]["nodes"][0][0].update(source="c_{k-3}"), "source must be one of"),
    ],
)
def test_a_broken_genotype_file_is_refused(tree, tmp_path, mutate, message: str, capsys) -> None:
    path = save_genotype(get_genotype(GENOTYPE), tmp_path / "g.json")
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(GenotypeError, match=message):
        load_genotype(path)
    out = tmp_path / "out"
    assert main(cli("--genotype", str(path), "--imagenet", str(tree), "--out", str(out))) == 2
    assert message.split(";")[0] in capsys.readouterr().err and not out.exists()


def test_checkpoints_of_another_architecture_are_refused(tree, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(cli("--genotype", GENOTYPE, "--imagenet", str(tree), "--out", str(run), "--stop-after", "1")) == 0
    capsys.readouterr()
    other = "bayesnas_cifar10_lambda0.007"
    with pytest.raises(TransferError, match="trained with other cells than --genotype gives"):
        train_transfer(get_genotype(other), load_config("quick", overrides=TINY), tree, out=run, resume=True)
    wider = load_config("quick", overrides=[*TINY[:2], "transfer.channels=6", "transfer.num_cells=3"])
    with pytest.raises(TransferError, match=r"transfer.channels = 4, not 6 \(another architecture\)"):
        train_transfer(get_genotype(GENOTYPE), wider, tree, out=run, resume=True)
    # the folder of a CIFAR-style `train` run passed to transfer --resume
    cifar = tmp_path / "cifar"
    train_genotype(get_genotype(GENOTYPE), load_config("quick", overrides=["train.epochs=1", "train.max_batches_per_epoch=1",
                                                                          "network.channels=4", "network.num_cells=3"]), out=cifar)
    assert main(cli("--genotype", GENOTYPE, "--imagenet", str(tree), "--out", str(cifar), "--resume")) == 2
    assert "checkpoint of a `train` run" in capsys.readouterr().err
    with pytest.raises(TransferError, match="`stop_after` must be a positive number of epochs, got 0"):
        train_transfer(get_genotype(GENOTYPE), load_config("quick", overrides=TINY), tree, stop_after=0)
    # evaluate: a finished transfer run whose model.pt came from another architecture
    assert main(cli("--genotype", GENOTYPE, "--imagenet", str(tree), "--out", str(run), "--resume")) == 0
    shutil.copy(cifar / "model.pt", run / "model.pt")
    with pytest.raises(EvaluationError, match="holds the weights of another architecture"):
        evaluate_run(run)
    assert main(["evaluate", str(run)]) == 2
    assert "another architecture" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="transfer` run"):
        evaluate_run(tmp_path)


def test_transfer_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"`transfer.eval_resize` must be >= `transfer.image_size` \(64\), got 40"):
        load_config("quick", overrides=["transfer.image_size=64", "transfer.eval_resize=40"])
    with pytest.raises(ConfigError, match=r"`transfer.image_size` must be >= 32, got 16"):
        load_config("quick", overrides=["transfer.image_size=16"])
    with pytest.raises(ConfigError, match=r"`transfer.train.label_smoothing` must be in \[0, 1\), got 1.0"):
        load_config("quick", overrides=["transfer.train.label_smoothing=1.0"])
    with pytest.raises(ConfigError, match=r"`transfer.hue` must be in \[0, 0.5\], got 0.7"):
        load_config("quick", overrides=["transfer.hue=0.7"])
