"""Transfer to ImageNet: the mobile network of a genotype trained on an ImageFolder tree.

What ``bayesnas-book transfer`` runs (the paper's ImageNet experiment). The cells found on CIFAR-10 are
stacked into the ImageNet *mobile* network (:func:`~bayesnas_book.models.eval_net.imagenet_network`:
DARTS's stems, 14 cells, C = 48 in the paper profile; fewer than 600M multiply-adds at
224 x 224, the mobile setting) and trained from scratch with

* RandomResizedCrop to ``transfer.image_size`` + horizontal flip + ColorJitter(0.4, 0.4, 0.4, 0.2),
  then the usual ImageNet normalisation; evaluation: resize to ``transfer.eval_resize``, centre crop;
* the smoothed cross-entropy, :math:`\\ell = (1 - \\varepsilon)(-\\log p_y) + \\frac{\\varepsilon}{K}\\sum_k (-\\log p_k)`
  with :math:`\\varepsilon = 0.1`, gradient clipping at 5, SGD with an exponentially decayed rate
  (the ``[transfer.train]`` section, the same keys as ``[train]``).

The output folder is a :func:`~bayesnas_book.train.train_model` run folder plus ``genotype.json``;
the run's record (``provenance.json``'s ``config["run"]``) holds the whole configuration, the
ImageFolder root, the cells and ``"command": "transfer"``, so :func:`evaluate_transfer_run`
(and ``bayesnas-book evaluate RUN``) rebuild the network from the folder alone. Under
``torchrun`` every process runs the same call and rank 0 writes the files
(:mod:`bayesnas_book.train.distributed`).

.. note::
   The paper does not give the ImageNet epochs, batch, learning rate, weight decay or dropout;
   the paper profile uses DARTS's (250 epochs, batch 128, lr 0.1 decayed 0.97 per epoch, weight
   decay 3e-5) and no dropout. ``train.batch_size`` is the global batch across processes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from torch.utils.data import Dataset
from torchvision import transforms

from bayesnas_book.checkpoint import CheckpointError, load_checkpoint
from bayesnas_book.config import RunConfig, TransferConfig, config_to_dict
from bayesnas_book.data.imagenet import check_imagenet_folder, imagenet_folder
from bayesnas_book.data.paths import resolve_root
from bayesnas_book.device import resolve_device
from bayesnas_book.evaluation import EvaluationReport, config_from_record, load_weights
from bayesnas_book.models.counting import count_macs, count_parameters
from bayesnas_book.models.eval_net import EvalNetwork, imagenet_network
from bayesnas_book.paper import paper_imagenet
from bayesnas_book.seeding import seed_everything
from bayesnas_book.space.genotype import Genotype, load_genotype, save_genotype
from bayesnas_book.train import (
    CHECKPOINT,
    TrainResult,
    evaluate,
    init_distributed,
    shutdown_distributed,
    train_model,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MOBILE_INPUT",
    "PAPER_IMAGENET",
    "TransferData",
    "TransferError",
    "build_transfer_network",
    "evaluate_transfer_run",
    "train_transfer",
    "transfer_data",
    "transfer_record",
    "transfer_transforms",
]

# The paper's ImageNet result for its cells (mobile setting), as reported.
PAPER_IMAGENET: Mapping[str, float] = MappingProxyType(
    {"top1_error": paper_imagenet()["top1_error"], "top5_error": paper_imagenet()["top5_error"],
     "params_M": paper_imagenet()["params_m"]})
MOBILE_INPUT = (3, 224, 224)  # the mobile setting counts multiply-adds of one 224 x 224 image
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TransferError(ValueError):
    """A transfer run cannot start or resume as asked (the message says why and what to do)."""


def transfer_transforms(config: TransferConfig) -> tuple[transforms.Compose, transforms.Compose]:
    """``(train, eval)`` transforms of PIL images into normalised tensors ``(3, S, S)``, ``S = image_size``.

    Train: RandomResizedCrop(S, scale=(min_crop_scale, 1)), flip, ColorJitter(j, j, j, hue).
    Eval: Resize(eval_resize) of the shorter side, CenterCrop(S).
    """
    S = config.image_size
    train: list[Any] = [transforms.RandomResizedCrop(S, scale=(config.min_crop_scale, 1.0)), transforms.RandomHorizontalFlip()]
    if config.color_jitter > 0 or config.hue > 0:
        j = config.color_jitter
        train.append(transforms.ColorJitter(brightness=j, contrast=j, saturation=j, hue=config.hue))
    tail = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    evaluation = [transforms.Resize(config.eval_resize), transforms.CenterCrop(S)]
    return transforms.Compose(train + tail), transforms.Compose(evaluation + tail)


@dataclass
class TransferData:
    """The two splits of a checked ImageFolder tree.

    Attributes:
        train: ``root/train`` with the training transform; val: ``root/val`` with the evaluation one.
        classes: the class folder names (label ``i`` is ``classes[i]``).
        root: the tree's folder.
    """

    train: Dataset
    val: Dataset
    classes: tuple[str, ...]
    root: Path


def _root(config: RunConfig, imagenet: str | Path | None) -> Path:
    if imagenet is not None:
        return resolve_root(imagenet).resolve()
    return (resolve_root(config.transfer.root) if config.transfer.root else resolve_root(None) / "imagenet").resolve()


def transfer_data(config: RunConfig, imagenet: str | Path | None = None) -> TransferData:
    """Check the ImageFolder tree and open both splits.

    Args:
        config: the run's configuration (``[transfer]``).
        imagenet: the folder holding ``train/`` and ``val/``; default ``transfer.root``, else
            ``<data root>/imagenet``.

    Raises:
        DatasetError: for a missing tree or split, a split without class folders, a class
            folder without images, or train / val class folders that differ.
    """
    root = _root(config, imagenet)
    layout = check_imagenet_folder(root)  # every problem of the tree, before any image is read
    train_transform, eval_transform = transfer_transforms(config.transfer)
    train = imagenet_folder(root, "train", transform=train_transform)
    val = imagenet_folder(root, "val", transform=eval_transform)
    return TransferData(train, val, layout.classes, layout.root)


def build_transfer_network(genotype: Genotype, config: TransferConfig, num_classes: int) -> EvalNetwork:
    """The mobile network of ``genotype`` sized by ``[transfer]`` (paper: 14 cells, C = 48)."""
    return imagenet_network(genotype, channels=config.channels, num_cells=config.num_cells, num_classes=num_classes)


def _cells(genotype: Genotype) -> dict[str, Any]:
    """The architecture part of a genotype (no metadata), JSON-normalised."""
    data = genotype.to_dict()
    return json.loads(json.dumps({key: data[key] for key in ("space", "normal", "reduction")}))


def transfer_record(genotype: Genotype, config: RunConfig) -> dict[str, Any]:
    """The run record kept in the checkpoint and the provenance (compared on resume)."""
    return config_to_dict(config) | {"command": "transfer", "genotype": _cells(genotype)}


def _check_resume(out: Path, genotype: Genotype, config: RunConfig) -> None:
    """Refuse a checkpoint of another kind of run or another architecture, before any data is read."""
    try:
        payload = load_checkpoint(out / CHECKPOINT, "train")
    except CheckpointError as error:
        raise TransferError(str(error)) from None
    run = payload["config"].get("run") or {}
    if run.get("command") != "transfer":
        raise TransferError(
            f"{out / CHECKPOINT} is the checkpoint of a `train` run (a CIFAR-style network), not of a `transfer` run; "
            "pass the --out folder of a transfer run to --resume, or start a new folder without --resume"
        )
    if run.get("genotype") != _cells(genotype):
        raise TransferError(
            f"{out / CHECKPOINT} was trained with other cells than --genotype gives (another architecture); "
            f"resume with the genotype in {out / 'genotype.json'}, or start a new folder"
        )
    saved = run.get("transfer", {})
    for key in ("channels", "num_cells"):
        if saved.get(key) != getattr(config.transfer, key):
            raise TransferError(
                f"{out / CHECKPOINT} holds a network with transfer.{key} = {saved.get(key)!r}, not "
                f"{getattr(config.transfer, key)!r} (another architecture); resume with the same settings"
            )


def train_transfer(
    genotype: Genotype,
    config: RunConfig,
    imagenet: str | Path | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    stop_after: int | None = None,
) -> TrainResult:
    """Train the mobile network of ``genotype`` on an ImageFolder tree (``bayesnas-book transfer``).

    Args:
        genotype: the cells (an official name's or a search's).
        config: the run's configuration; ``[transfer]`` and ``[transfer.train]`` are used.
        imagenet: the tree holding ``train/`` and ``val/`` (default ``transfer.root``); recorded.
        out: output folder (``None``: in memory).
        resume: continue the transfer run in ``out``.
        progress: progress bars.
        stop_after: stop once this many epochs are complete (resume later with ``resume=True``).

    Returns:
        The engine's :class:`~bayesnas_book.train.TrainResult`; ``final`` is measured on ``val``.

    Raises:
        TransferError: for ``stop_after`` < 1, ``--resume`` with a checkpoint of a `train` run, other cells or another
            network size (checked before the data are read).
        DatasetError: see :func:`transfer_data`.
        TrainError: see :func:`~bayesnas_book.train.train_model`.
    """
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise TransferError(f"`stop_after` must be a positive number of epochs, got {stop_after!r}")
    config = copy.deepcopy(config)
    config.transfer.root = str(_root(config, imagenet))
    out_path = Path(out) if out is not None else None
    if resume and out_path is not None:
        _check_resume(out_path, genotype, config)
    data = transfer_data(config)
    context = init_distributed(config.device)
    try:
        seed_everything(config.seed, deterministic=config.deterministic, num_threads=config.num_threads,
                       dtype=config.dtype)
        network = build_transfer_network(genotype, config.transfer, len(data.classes))
        result = train_model(network, data.train, data.val, config.transfer.train, out=out_path, resume=resume,
                             device=config.device, progress=progress, seed=config.seed,
                             num_workers=config.data.num_workers, run_config=transfer_record(genotype, config),
                             stop_after=stop_after, distributed=context)
        if out_path is not None and (context is None or context.is_main):
            save_genotype(genotype, out_path / "genotype.json")
    finally:
        shutdown_distributed(context)
    return result


def evaluate_transfer_run(folder: str | Path) -> EvaluationReport:
    """Test a finished transfer run on its ``val`` split; MACs are counted at 224 x 224 (the mobile setting).

    Raises:
        FileNotFoundError: naming a missing file of the run.
        EvaluationError: if ``model.pt`` does not fit the network rebuilt from the folder.
        DatasetError: if the recorded ImageFolder tree is gone or changed.
    """
    folder = Path(folder)
    for name in ("model.pt", "genotype.json", "provenance.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing: pass the --out folder of a finished `bayesnas-book transfer` run")
    run = json.loads((folder / "provenance.json").read_text())["config"]["run"]
    config = config_from_record(run)
    data = transfer_data(config)
    network = build_transfer_network(load_genotype(folder / "genotype.json"), config.transfer, len(data.classes))
    load_weights(network, folder / "model.pt")
    device = resolve_device(config.device)
    metrics = evaluate(network.to(device), data.val, batch_size=config.transfer.train.eval_batch_size, device=device)
    network = network.cpu()
    return EvaluationReport(1 - metrics["top1"], 1 - metrics["top5"], count_parameters(network),
                            count_macs(network, MOBILE_INPUT), MOBILE_INPUT)
