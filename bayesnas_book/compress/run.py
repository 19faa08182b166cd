"""A whole compression run, resumable: Bayesian gate pruning and its two baselines on equal terms.

The schedule (``config.compress``; every epoch runs on the shared engine,
:class:`bayesnas_book.train.Trainer`):

1. ``pretrain``: ``pretrain_epochs`` on the weights, gates at 1: the uncompressed network;
2. Bayesian branch, from it: ``rounds`` times ``gate_epochs`` on weights and gates with the
   reweighted penalty (proximal step), then an ``update`` (curvature, Laplace update, entropy
   rule, :mod:`bayesnas_book.compress.bayes_prune`); then ``finetune_epochs`` (cosine);
3. ``magnitude`` branch, from the same pretrained network: ``rounds * gate_epochs`` plain
   epochs, ``prune`` (the largest group norms kept, as many per layer as the Bayesian branch, or
   ``baseline_sparsity``), ``finetune_epochs``;
4. ``group_lasso`` branch, likewise, the training epochs with the group-lasso proximal step.

Every branch has the same training budget. At the end each network is tested, physically pruned
(:func:`~bayesnas_book.compress.physical.physically_prune`; the pruned network is tested too and
its largest logit difference recorded) and counted.

Output folder::

    checkpoint.pt      after every step (bayesnas_book.checkpoint, kind "compress"): state = {model,
                       snapshots (the pretrained and each finished branch's weights), gamma, omega,
                       history, metrics, the active trainer's state (optimiser, scheduler), completed}
    metrics.jsonl      one line per epoch (branch, phase, round, the engine's metrics, kept units)
    history.json       one record per update: per gate layer curvature, gamma, omega, kept
    report.json        per method: test error of the gated and the pruned network, units per layer,
                       params, MACs, compression; "before": the uncompressed network
    pruned_<method>.pt the physically pruned network of each method ({"state_dict", "units", "arch"})
    provenance.json    command, configuration, commit, device, wall time

``resume=True`` continues a killed run at its next step and ends with the same kept units as an
uninterrupted one (on a CPU).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from bayesnas_book.atomic import atomic_write_bytes, atomic_writer
from bayesnas_book.checkpoint import (
    CheckpointError,
    claim_run_folder,
    prepare_run_folder,
    restore_rng_state,
    save_checkpoint,
)
from bayesnas_book.compress.baselines import (
    apply_masks,
    group_lasso_prox,
    kept_counts,
    magnitude_masks,
)
from bayesnas_book.compress.bayes_prune import (
    CompressionError,
    entropy_prune_gates,
    gate_curvature,
    gate_laplace_update,
    initial_gate_state,
    prox_gates,
)
from bayesnas_book.compress.gates import GatedNet, gate_groups, gate_modules, kept_units
from bayesnas_book.compress.models import build_model
from bayesnas_book.compress.physical import network_size, physically_prune, units_text
from bayesnas_book.config import RunConfig, config_to_dict
from bayesnas_book.data import cifar10_dataset, mnist_dataset, run_digits_splits
from bayesnas_book.data.transforms import (
    cifar10_eval_transform,
    cifar10_train_transform,
    mnist_transform,
)
from bayesnas_book.device import resolve_device
from bayesnas_book.provenance import provenance_record, write_json
from bayesnas_book.search_data import epoch_loader, take
from bayesnas_book.seeding import seed_everything
from bayesnas_book.train import Trainer, TrainError, evaluate
from bayesnas_book.train.config import TrainConfig
from bayesnas_book.train.precision import parameter_dtype

__all__ = ["METHODS", "CompressionData", "CompressionResult", "CompressionRun", "compress_schedule", "compression_data", "run_compress"]

CHECKPOINT = "checkpoint.pt"
METHODS = ("bayes", "magnitude", "group_lasso")
OUTPUTS = ("report.json", "history.json", "metrics.jsonl", "provenance.json")


def compress_schedule(config: RunConfig) -> list[dict[str, Any]]:
    """The run's steps in order: ``{"branch", "phase", "round", "epoch"}`` (module docstring)."""
    c = config.compress
    steps: list[dict[str, Any]] = [{"branch": "dense", "phase": "pretrain", "round": 0, "epoch": e} for e in range(c.pretrain_epochs)]
    for r in range(1, c.rounds + 1):
        steps += [{"branch": "bayes", "phase": "gates", "round": r, "epoch": e} for e in range(c.gate_epochs)]
        steps.append({"branch": "bayes", "phase": "update", "round": r, "epoch": None})
    steps += [{"branch": "bayes", "phase": "finetune", "round": 0, "epoch": e} for e in range(c.finetune_epochs)]
    for branch in METHODS[1:]:
        steps += [{"branch": branch, "phase": "train", "round": 0, "epoch": e} for e in range(c.rounds * c.gate_epochs)]
        steps.append({"branch": branch, "phase": "prune", "round": 0, "epoch": None})
        steps += [{"branch": branch, "phase": "finetune", "round": 0, "epoch": e} for e in range(c.finetune_epochs)]
    return steps


@dataclass
class CompressionData:
    """Training, monitoring and test sets of a compression run, and the image shape."""

    train: Dataset
    eval: Dataset
    test: Dataset
    input_shape: tuple[int, int, int]
    num_classes: int = 10


def compression_data(config: RunConfig) -> CompressionData:
    """The data of ``config.data.dataset``: digits (train / validation / test), MNIST or CIFAR-10.

    MNIST and CIFAR-10 are monitored on their test set (there is no model selection).

    Raises:
        DatasetError: for a missing or corrupt dataset (with what to do).
        ValueError: for a dataset compression does not use (imagenet).
    """
    name, root = config.data.dataset, config.data.root or None
    if name == "digits":
        parts = run_digits_splits(config.data)
        return CompressionData(parts["train"], parts["validation"], parts["test"], (1, 8, 8))
    if name == "mnist":
        train, test = (mnist_dataset(root, train=t, transform=mnist_transform()) for t in (True, False))
        return CompressionData(train, test, test, (1, 28, 28))
    if name == "cifar10":
        transform = cifar10_train_transform(0) if config.compress.augment else cifar10_eval_transform()
        test = cifar10_dataset(root, train=False, transform=cifar10_eval_transform())
        return CompressionData(cifar10_dataset(root, train=True, transform=transform), test, test, (3, 32, 32))
    raise ValueError(f"`data.dataset` {name!r} is not used for compression; use digits, mnist or cifar10")


@dataclass
class CompressionResult:
    """What :func:`run_compress` returns: the report (see the module docstring) and the run's records."""

    report: dict[str, Any]
    history: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    out: Path | None
    finished: bool
    pruned: dict[str, torch.nn.Module] = field(default_factory=dict)


class CompressionRun:
    """The state of one compression run; :meth:`run_step` advances it by one schedule step.

    Args:
        config: a validated configuration (``config.compress``, ``config.data``).
        data: the datasets (default :func:`compression_data`).
        progress: tqdm progress bars.

    Raises:
        ValueError: for a model that cannot read the dataset's images (wrong shape) or has no
            prunable layer.
    """

    def __init__(self, config: RunConfig, data: CompressionData | None = None, progress: bool = False) -> None:
        self.config, self.progress = config, progress
        seed_everything(config.seed, deterministic=config.deterministic, num_threads=config.num_threads,
                       dtype=config.dtype)
        self.device = resolve_device(config.device)
        self.data = data if data is not None else compression_data(config)
        c = config.compress
        self.model: GatedNet = build_model(c.model, self.data.input_shape, self.data.num_classes, c.width)
        sample = self.data.train[0][0]
        if tuple(sample.shape) != self.model.input_shape:
            raise ValueError(
                f"the dataset's images have shape {tuple(sample.shape)} but model {c.model!r} was built for "
                f"{self.model.input_shape}; pass data whose `input_shape` matches its images"
            )
        self.model.to(self.device)
        self.groups = gate_groups(self.model)  # checks the model has a prunable layer
        self.schedule = compress_schedule(config)
        self.gamma, self.omega = initial_gate_state(self.model)
        self.snapshots: dict[str, dict[str, torch.Tensor]] = {}
        self.bayes_kept: dict[str, int] = {}
        self.history: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []
        self.completed = 0
        self.trainer: Trainer | None = None
        self.trainer_key: tuple | None = None
        self._pending_trainer: dict[str, Any] | None = None

    # -- phases and the engine ----------------------------------------------------------------
    @staticmethod
    def _key(step: dict[str, Any]) -> tuple:
        return (step["branch"], step["phase"], step["round"])

    def _phase(self, index: int) -> tuple[int, int]:
        """First index and length of the run of steps sharing step ``index``'s phase."""
        key = self._key(self.schedule[index])
        first = index
        while first > 0 and self._key(self.schedule[first - 1]) == key:
            first -= 1
        last = index
        while last + 1 < len(self.schedule) and self._key(self.schedule[last + 1]) == key:
            last += 1
        return first, last - first + 1

    def _train_config(self, phase: str, epochs: int) -> TrainConfig:
        c = self.config.compress
        return TrainConfig(
            epochs=epochs, batch_size=c.batch_size, eval_batch_size=256, lr=c.lr, momentum=c.momentum,
            weight_decay=c.weight_decay, decay_norm_and_bias=False,  # gates, biases and BN: no decay
            schedule="cosine" if phase == "finetune" else "constant", grad_clip=0.0, drop_prob=0.0,
            auxiliary_weight=0.0, max_batches_per_epoch=c.max_batches_per_epoch,
        )

    def _ensure_trainer(self, index: int) -> Trainer:
        step = self.schedule[index]
        key = self._key(step)
        if self.trainer is not None and self.trainer_key == key:
            return self.trainer
        first, count = self._phase(index)
        for _, gate in gate_modules(self.model):
            gate.value.requires_grad_(step["phase"] == "gates")  # gates train only in the Bayesian rounds
        trainer = Trainer(self.model, self.data.train, self.data.eval, self._train_config(step["phase"], count),
                          device=self.device, seed=self.config.seed * 1000 + first,
                          num_workers=self.config.data.num_workers, progress=self.progress)
        c = self.config.compress
        if step["phase"] == "gates":
            trainer.optimizer.register_step_post_hook(
                lambda opt, args, kwargs: prox_gates(self.model, self.omega, c.lambda_gate, opt.param_groups[0]["lr"]))
        elif step["branch"] == "group_lasso" and step["phase"] == "train":
            trainer.optimizer.register_step_post_hook(
                lambda opt, args, kwargs: group_lasso_prox(self.model, c.group_lasso, opt.param_groups[0]["lr"], self.groups))
        pending = self._pending_trainer
        if pending is not None and tuple(pending["key"]) == key:
            trainer.load_state_dict(pending["state"], pending["epoch"])
        self._pending_trainer = None
        self.trainer, self.trainer_key = trainer, key
        return trainer

    # -- steps ------------------------------------------------------------------------------------
    def run_step(self, index: int) -> None:
        """Run schedule step ``index`` (the next one)."""
        assert index == self.completed, "steps run in order"
        step = self.schedule[index]
        if step["branch"] != "dense" and "pretrained" not in self.snapshots:
            self.snapshots["pretrained"] = copy.deepcopy(self.model.state_dict())
        if step["branch"] in METHODS[1:] and (index == 0 or self.schedule[index - 1]["branch"] != step["branch"]):
            self.model.load_state_dict(self.snapshots["pretrained"])  # every baseline starts where Bayes did
        if step["phase"] == "update":
            self.history.append(self.update(step, index))
        elif step["phase"] == "prune":
            self.prune_baseline(step)
        else:
            record = self._ensure_trainer(index).train_epoch()
            units = kept_units(self.model)
            self.metrics.append({"branch": step["branch"], "phase": step["phase"], "round": step["round"],
                                 "units": units_text(units), **record})
        if index + 1 == len(self.schedule) or self.schedule[index + 1]["branch"] != step["branch"]:
            self.snapshots[step["branch"] if step["branch"] != "dense" else "pretrained"] = copy.deepcopy(self.model.state_dict())
            if step["branch"] == "bayes":
                self.bayes_kept = kept_units(self.model)
        self.completed += 1

    def update(self, step: dict[str, Any], index: int) -> dict[str, Any]:
        """Curvature, Laplace update and entropy pruning of every gate layer; the history record."""
        c, seed = self.config.compress, self.config.seed
        self.trainer = self.trainer_key = None
        loader = epoch_loader(self.data.train, c.batch_size, seed, 10_000 + index)
        batches = [(x.to(self.device, parameter_dtype(self.model)), y) for x, y in take(loader, c.curvature_batches)]
        options: dict[str, Any] = {}
        if c.curvature_method == "mc_ggn":  # labels drawn from a generator of (seed, step): resumable
            options["generator"] = torch.Generator(self.device).manual_seed(seed * 1_000_003 + 20_000 + index)
        self.model.train()
        H = gate_curvature(self.model, batches, c.curvature_method, **options)
        record: dict[str, Any] = {"round": step["round"], "layers": {}}
        for name, gate in gate_modules(self.model):
            result = gate_laplace_update(gate.effective().detach().cpu(), H[name], self.gamma[name], c.lambda_gate, layer=name)
            self.gamma[name], self.omega[name] = result.gamma, result.omega
        pruned = entropy_prune_gates(self.gamma, c.prune_threshold, lambda_gate=c.lambda_gate)
        for name, gate in gate_modules(self.model):
            gate.prune(pruned[name])
            record["layers"][name] = {
                "gates": gate.effective().detach().cpu().tolist(), "curvature": H[name].tolist(),
                "gamma": self.gamma[name].tolist(), "omega": self.omega[name].tolist(), "kept": int(gate.mask.sum()),
            }
        return record

    def prune_baseline(self, step: dict[str, Any]) -> None:
        """Keep the largest groups per layer, as many as the Bayesian branch (or ``baseline_sparsity``)."""
        self.trainer = self.trainer_key = None
        c = self.config.compress
        if c.baseline_sparsity > 0:
            keep = kept_counts({g.gate: g.num_units for g in self.groups}, c.baseline_sparsity)
        else:
            keep = dict(self.bayes_kept)
        apply_masks(self.model, magnitude_masks(self.model, keep))

    # -- the report --------------------------------------------------------------------------------
    def report(self) -> tuple[dict[str, Any], dict[str, torch.nn.Module]]:
        """Test error, units, params and MACs of every finished method and of the uncompressed net."""
        c = self.config.compress
        model = copy.deepcopy(self.model)
        out: dict[str, Any] = {"model": c.model, "dataset": self.config.data.dataset, "input_shape": list(self.model.input_shape),
                               "methods": {}}
        pruned: dict[str, torch.nn.Module] = {}
        x = next(iter(DataLoader(self.data.test, batch_size=64)))[0].to(self.device, parameter_dtype(self.model))
        for method in ("pretrained", *METHODS):
            if method not in self.snapshots:
                continue
            model.load_state_dict(self.snapshots[method])
            model.eval()
            plain = physically_prune(model)
            plain.eval()
            with torch.no_grad():
                difference = float((model(x) - plain(x)).abs().max())
            gated = evaluate(model, self.data.test, 256, self.device)
            small = evaluate(plain, self.data.test, 256, self.device)
            size = network_size(plain, model.input_shape)
            out["methods"][method] = {
                "test_error": 1.0 - gated["top1"], "pruned_test_error": 1.0 - small["top1"],
                "max_logit_difference": difference, "units": size.units, "units_text": units_text(size.units),
                "params": size.params, "macs": size.macs,
            }
            pruned[method] = plain
        if "pretrained" in out["methods"]:
            before = out["methods"]["pretrained"]
            out["before"] = {k: before[k] for k in ("units", "units_text", "params", "macs")}
            total = sum(before["units"].values())
            for entry in out["methods"].values():
                entry["units_removed"] = 1.0 - sum(entry["units"].values()) / total
                entry["compression"] = before["params"] / entry["params"]
                entry["mac_reduction"] = before["macs"] / entry["macs"]
        return out, pruned

    # -- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        trainer = None
        if self.trainer is not None:
            trainer = {"key": list(self.trainer_key or ()), "state": self.trainer.state_dict(), "epoch": self.trainer.epoch}
        return {"model": self.model.state_dict(), "snapshots": self.snapshots, "gamma": self.gamma, "omega": self.omega,
                "bayes_kept": self.bayes_kept, "history": self.history, "metrics": self.metrics,
                "completed": self.completed, "trainer": trainer}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.snapshots, self.gamma, self.omega = state["snapshots"], state["gamma"], state["omega"]
        self.bayes_kept, self.history, self.metrics = state["bayes_kept"], state["history"], state["metrics"]
        self.completed, self._pending_trainer = state["completed"], state["trainer"]
        self.trainer = self.trainer_key = None

    def save(self, path: Path) -> None:
        save_checkpoint(path, "compress", config_to_dict(self.config), {"completed": self.completed}, self.state_dict())


def _check_output_folder(out: Path, config: RunConfig, resume: bool) -> dict[str, Any] | None:
    try:
        return claim_run_folder(out, "compress", OUTPUTS, resume, describe="a compression run", config=config_to_dict(config))
    except CheckpointError as error:
        raise CompressionError(str(error)) from None


def run_compress(
    config: RunConfig,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    data: CompressionData | None = None,
    stop_after: int | None = None,
) -> CompressionResult:
    """Run (or resume) a compression run and write its files to ``out`` (module docstring).

    Args:
        config: the validated configuration.
        out: output folder (created once the checkpoint and the data are checked); ``None`` keeps
            everything in memory (chapters, tests).
        resume: continue the run whose checkpoint is in ``out``.
        progress: tqdm progress bars.
        data: the datasets (default :func:`compression_data`).
        stop_after: stop after this many schedule steps (simulates a killed run).

    Returns:
        A :class:`CompressionResult`; its ``report`` is empty until the run has finished.

    Raises:
        CompressionError: for an output folder holding another run, a foreign / corrupt /
            mismatched checkpoint, or a penalty that prunes a whole layer.
        ValueError: for a model that cannot read the dataset (wrong shape).
        DatasetError: for a missing dataset.
    """
    started = time.time()
    out_path = Path(out) if out is not None else None
    payload = None
    if out_path is not None:
        payload = _check_output_folder(out_path, config, resume)  # only reads: a refused run creates nothing
    elif resume:
        raise CompressionError("--resume needs the --out folder of the run to continue")
    run = CompressionRun(config, data=data, progress=progress)  # reads the data: a missing dataset stops here
    if out_path is not None:
        prepare_run_folder(out_path, (CHECKPOINT, *OUTPUTS, *(f"pruned_{method}.pt" for method in ("pretrained", *METHODS))))
    if payload is not None:
        run.load_state_dict(payload["state"])
        restore_rng_state(payload["rng"])
    for index in range(run.completed, len(run.schedule)):
        if stop_after is not None and index >= stop_after:
            break
        try:
            run.run_step(index)
        except TrainError as error:
            raise CompressionError(str(error)) from None
        if out_path is not None:
            run.save(out_path / CHECKPOINT)
            text = "".join(json.dumps(m) + "\n" for m in run.metrics).encode("utf-8")
            atomic_write_bytes(out_path / "metrics.jsonl", text)
    finished = run.completed == len(run.schedule)
    report: dict[str, Any] = {}
    pruned: dict[str, torch.nn.Module] = {}
    if finished:
        report, pruned = run.report()
        if out_path is not None:
            write_json(out_path / "report.json", report)
            write_json(out_path / "history.json", run.history)
            for method, plain in pruned.items():
                with atomic_writer(out_path / f"pruned_{method}.pt") as handle:
                    torch.save({"state_dict": plain.state_dict(), "units": report["methods"][method]["units"],
                                "arch": config.compress.model}, handle)
            provenance = provenance_record(config_to_dict(config), run.device, started)
            provenance.update({"report": report, "steps": run.completed,
                               "resumed_from_step": None if payload is None else payload["state"]["completed"]})
            write_json(out_path / "provenance.json", provenance)
    return CompressionResult(report, run.history, run.metrics, out_path, finished, pruned)
