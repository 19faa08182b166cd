"""Train and evaluate the network a genotype defines: what `bayesnas-book train` and `evaluate` run.

The network is :func:`~bayesnas_book.models.eval_net.cifar_network` (20 cells, C = 36 in the
paper profile) on CIFAR-10, or the same macro structure, smaller, on the 8x8 digits in the
quick profile. Training is the shared engine (:func:`bayesnas_book.train.train_model`); the
output folder additionally holds ``genotype.json`` so that :func:`evaluate_run` can rebuild the
network from the folder alone. Under ``torchrun`` the same call trains on every process
(:mod:`bayesnas_book.train.distributed`); rank 0 writes the files. :func:`evaluate_run` also
tests a `transfer` run (:mod:`bayesnas_book.transfer`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from bayesnas_book.config import RunConfig, config_to_dict, load_config
from bayesnas_book.data import cifar10_dataset, mnist_dataset, run_digits_splits
from bayesnas_book.data.transforms import (
    cifar10_eval_transform,
    cifar10_train_transform,
    mnist_transform,
)
from bayesnas_book.device import resolve_device
from bayesnas_book.models.counting import count_macs, count_parameters
from bayesnas_book.models.eval_net import EvalNetwork, cifar_network
from bayesnas_book.seeding import seed_everything
from bayesnas_book.space.genotype import Genotype, load_genotype, save_genotype
from bayesnas_book.train import (
    TrainResult,
    evaluate,
    init_distributed,
    shutdown_distributed,
    train_model,
)

__all__ = ["EvaluationError", "EvaluationReport", "build_network", "config_from_record", "evaluate_run", "evaluation_data", "load_weights",
           "train_genotype"]


class EvaluationError(ValueError):
    """A finished run's files do not fit together (e.g. weights of another architecture)."""

MOBILE_MACS = 600_000_000  # the mobile setting: fewer than 600M multiply-adds at 224 x 224


def evaluation_data(config: RunConfig) -> tuple[Dataset, Dataset, tuple[int, int, int]]:
    """``(train_set, test_set, input_shape)`` for ``config.data.dataset``.

    Raises:
        DatasetError: for a missing or corrupt dataset (with what to do).
        ValueError: for a dataset this command cannot train on.
    """
    name, root = config.data.dataset, config.data.root or None
    if name == "digits":
        parts = run_digits_splits(config.data)
        return parts["train"], parts["test"], (1, 8, 8)
    if name == "cifar10":
        train = cifar10_dataset(root, train=True, transform=cifar10_train_transform(config.search.cutout))
        return train, cifar10_dataset(root, train=False, transform=cifar10_eval_transform()), (3, 32, 32)
    if name == "mnist":
        return mnist_dataset(root, train=True, transform=mnist_transform()), mnist_dataset(root, train=False, transform=mnist_transform()), (1, 28, 28)
    raise ValueError(f"`data.dataset` {name!r} is not trained by this command; use digits, cifar10 or mnist (ImageNet: `transfer`)")


def build_network(genotype: Genotype, config: RunConfig, in_channels: int) -> EvalNetwork:
    """The CIFAR-style evaluation network of ``genotype`` sized by ``config.network``."""
    return cifar_network(genotype, channels=config.network.channels, num_cells=config.network.num_cells,
                         in_channels=in_channels, auxiliary=config.network.auxiliary)


def train_genotype(genotype: Genotype, config: RunConfig, out: str | Path | None = None, resume: bool = False,
                   progress: bool = False, stop_after: int | None = None) -> TrainResult:
    """Build, train and evaluate the network of ``genotype``; writes ``genotype.json`` beside the run.

    Launched by ``torchrun``, every process runs this call (``train.batch_size`` is the global
    batch) and rank 0 writes the files.

    Args:
        genotype: the cells.
        config: the run's configuration (``[network]``, ``[train]``, ``[data]``).
        out: output folder, or ``None``.
        resume: continue the run in ``out``.
        progress: progress bars.
        stop_after: stop once this many epochs are complete (a job with a time limit; resume later).
    """
    context = init_distributed(config.device)
    try:
        seed_everything(config.seed, deterministic=config.deterministic, num_threads=config.num_threads,
                       dtype=config.dtype)
        train_set, test_set, shape = evaluation_data(config)
        network = build_network(genotype, config, shape[0])
        result = train_model(network, train_set, test_set, config.train, out=out, resume=resume, device=config.device,
                             progress=progress, seed=config.seed, num_workers=config.data.num_workers,
                             run_config=config_to_dict(config), stop_after=stop_after, distributed=context)
        if out is not None and (context is None or context.is_main):
            save_genotype(genotype, Path(out) / "genotype.json")
    finally:
        shutdown_distributed(context)
    return result


@dataclass
class EvaluationReport:
    """Test error, size and cost of a trained network."""

    top1_error: float
    top5_error: float
    params: int
    macs: int
    input_shape: tuple[int, int, int]

    def describe(self) -> str:
        return (f"top-1 error {100 * self.top1_error:.2f}%, top-5 error {100 * self.top5_error:.2f}%, "
                f"{self.params:,} parameters, {self.macs / 1e6:.1f}M multiply-adds at {self.input_shape}")


def load_weights(network: torch.nn.Module, path: Path) -> None:
    """Load the state dict in ``path`` into ``network``.

    Raises:
        EvaluationError: if the weights belong to another architecture (names the first mismatch).
    """
    try:
        network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except RuntimeError as error:
        first = " ".join(str(error).strip().splitlines()[:2])[:400]
        raise EvaluationError(
            f"{path} holds the weights of another architecture than the network rebuilt from genotype.json and "
            f"the recorded configuration ({first}); keep each run's files together in its own folder"
        ) from None


def evaluate_run(folder: str | Path) -> EvaluationReport:
    """Rebuild a finished `train` (or `transfer`) run's network from its folder, load ``model.pt`` and test it.

    Raises:
        FileNotFoundError: naming the missing file (the run did not finish, or the folder is wrong).
        EvaluationError: if ``model.pt`` does not fit the rebuilt network.
    """
    folder = Path(folder)
    for name in ("model.pt", "genotype.json", "provenance.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder / name} is missing: pass the --out folder of a finished `bayesnas-book train` or `transfer` run"
            )
    recorded: dict[str, Any] = json.loads((folder / "provenance.json").read_text())["config"]
    run = recorded.get("run", recorded)
    if run.get("command") == "transfer":
        from bayesnas_book.transfer import evaluate_transfer_run

        return evaluate_transfer_run(folder)
    config = config_from_record(run)
    train_set, test_set, shape = evaluation_data(config)
    network = build_network(load_genotype(folder / "genotype.json"), config, shape[0])
    load_weights(network, folder / "model.pt")
    device = resolve_device(config.device)
    metrics = evaluate(network.to(device), test_set, batch_size=config.train.eval_batch_size, device=device)
    return EvaluationReport(1 - metrics["top1"], 1 - metrics["top5"], count_parameters(network),
                            count_macs(network.cpu(), shape), shape)


def config_from_record(run: dict[str, Any]) -> RunConfig:
    """The :class:`RunConfig` a run recorded (``provenance.json``'s ``config["run"]``); other keys are ignored."""
    fields = set(RunConfig.__dataclass_fields__)
    return load_config(run["profile"], overrides=_overrides({k: v for k, v in run.items() if k in fields}))


def _overrides(run: dict[str, Any]) -> list[str]:
    """``key=value`` strings that rebuild a recorded configuration."""
    found = []

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{prefix}{key}.")
        else:
            found.append(f"{prefix.rstrip('.')}={json.dumps(value)}")

    walk({k: v for k, v in run.items() if k != "profile"}, "")
    return found
