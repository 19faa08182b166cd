"""One training engine for the evaluation nets, the ImageNet transfer and compression.

:func:`train_model` trains a classifier with SGD (:mod:`~bayesnas_book.train.optim`), the smoothed
cross-entropy plus an optional auxiliary loss (:mod:`~bayesnas_book.train.losses`), gradient
clipping, the dropout ramp of the official nets, mixed precision, ``channels_last`` and
``torch.compile``, on one device or, launched by ``torchrun``, on several processes
(:mod:`~bayesnas_book.train.distributed`: ``train.batch_size`` is then the global batch). Each epoch:

1. ``model.set_drop_prob(drop_prob * e / E)`` (and drop-path likewise) when the model has it;
2. one pass over ``train_set`` in the order of ``epoch_loader(seed, e)``
   (:func:`bayesnas_book.search_data.epoch_loader`), so the order depends on ``(seed, e)`` only;
   per batch: autocast forward, loss, ``GradScaler``-scaled backward, unscale, clip the global
   gradient norm, step, and (``lr_update="batch"``) the schedule;
3. the schedule (``lr_update="epoch"``), then :func:`~bayesnas_book.train.evaluate.evaluate` on
   ``eval_set``;
4. with an output folder: an atomic checkpoint and ``metrics.jsonl`` (rank 0 writes them, every
   process waits at a barrier).

Output folder layout::

    checkpoint.pt    after every epoch (bayesnas_book.checkpoint, kind "train"): state =
                     {model, optimizer, scheduler, scaler, metrics}, step = {epoch}, RNG states
    metrics.jsonl    one JSON object per epoch (see Trainer.train_epoch)
    model.pt         the final weights (a plain state_dict), written when the run ends
    provenance.json  command, configuration, commit, device, wall time, final metrics

``resume=True`` loads the checkpoint, checks that the configuration is the same (naming every
differing key), restores all RNG states and continues; on a CPU the resumed run ends with
bit-identical weights to an uninterrupted one (a distributed checkpoint keeps every process's
RNG states, under ``state["rank_rng"]``). The engine does not seed: call
:func:`bayesnas_book.seeding.seed_everything` before building the model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from tqdm.auto import tqdm

from bayesnas_book.atomic import atomic_write_bytes, atomic_writer
from bayesnas_book.checkpoint import (
    CheckpointError,
    capture_rng_state,
    claim_run_folder,
    config_differences,
    prepare_run_folder,
    restore_rng_state,
    save_checkpoint,
)
from bayesnas_book.config import ConfigError
from bayesnas_book.cpu_kernels import resolve_channels_last
from bayesnas_book.device import resolve_device
from bayesnas_book.provenance import provenance_record, write_json
from bayesnas_book.search_data import epoch_loader, take
from bayesnas_book.train.config import TrainConfig, train_config_problems
from bayesnas_book.train.distributed import (
    RANK_SEED_STRIDE,
    DistributedContext,
    all_reduce_sum,
    barrier,
    distributed_loader,
    evaluate_distributed,
    gather_objects,
    local_batch_size,
    wrap_model,
)
from bayesnas_book.train.evaluate import evaluate, topk_correct
from bayesnas_book.train.losses import split_output, training_loss
from bayesnas_book.train.optim import build_optimizer, build_scheduler
from bayesnas_book.train.precision import (
    amp_dtype,
    autocast,
    compiled_forward,
    parameter_dtype,
    to_memory_format,
)

__all__ = ["CHECKPOINT", "OUTPUTS", "TrainError", "TrainResult", "Trainer", "check_dataset", "train_model"]

CHECKPOINT = "checkpoint.pt"
PROGRESS_EVERY = 20  # optimiser steps between progress-bar refreshes (each one is a host synchronisation)
# Files a running or finished training run writes into its output folder (besides the checkpoint).
OUTPUTS = ("metrics.jsonl", "model.pt", "provenance.json")


class TrainError(RuntimeError):
    """A run cannot start or resume as asked (the message says why and what to do)."""


@dataclass
class TrainResult:
    """What :func:`train_model` returns.

    Attributes:
        model: the trained model (the object passed in, on ``device``, in eval mode).
        metrics: one dict per completed epoch (the lines of ``metrics.jsonl``).
        final: ``{"loss", "top1", "top5"}`` on ``eval_set`` after the last completed epoch
            (empty without an ``eval_set``).
        epochs_completed: epochs done, over every session of the run.
        finished: ``epochs_completed == config.epochs``.
        out: the output folder, or ``None``.
        seconds: training and evaluation time over every session (excluding checkpoints).
    """

    model: nn.Module
    metrics: list[dict[str, Any]]
    final: dict[str, float]
    epochs_completed: int
    finished: bool
    out: Path | None
    seconds: float = 0.0


# -- checking the data against the model ----------------------------------------------------------


def _all_labels(dataset: Dataset) -> torch.Tensor | None:
    """Every label of ``dataset`` when it is cheap to read (tensor datasets, ``targets``), else ``None``."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[1]
    if isinstance(dataset, Subset):
        base = _all_labels(dataset.dataset)
        return None if base is None else base[torch.as_tensor(list(dataset.indices), dtype=torch.long)]
    targets = getattr(dataset, "targets", None)
    if targets is None:
        return None
    try:
        labels = torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError):
        return None
    return labels if labels.dim() == 1 and len(labels) == len(dataset) else None  # type: ignore[arg-type]


def _first_conv(model: nn.Module) -> nn.Conv2d | None:
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def check_dataset(model: nn.Module, dataset: Dataset, name: str, batch_size: int, device: torch.device) -> int:
    """Check that ``model`` can be trained on ``dataset``: run one batch and compare the labels.

    Draws no random number seen by the run (the RNG states are put back).

    Args:
        model: the classifier (on ``device``).
        dataset: yields ``(image (C, H, W) float, label int)``.
        name: the argument's name, for the messages (``"train_set"``).
        batch_size: size of the checked batch (at most).
        device: the model's device.

    Returns:
        ``K``, the number of classes the model outputs.

    Raises:
        TrainError: for an empty dataset, batches that are not ``(images, labels)``, float
            labels, images with the wrong number of channels, a model that fails on them or does
            not return ``(B, K)`` logits, and labels outside ``0..K-1``.
    """
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise TrainError(f"`{name}` is empty; it needs at least one (image, label) pair")
    rng = capture_rng_state()  # a random transform (cutout, crops) must not shift the run's RNG
    was_training = model.training
    try:
        size = min(batch_size, len(dataset))  # type: ignore[arg-type]
        batch = next(iter(DataLoader(dataset, batch_size=size, shuffle=False)))
        if not isinstance(batch, (list, tuple)) or len(batch) != 2:
            raise TrainError(f"`{name}` must yield (image, label) pairs; its first batch is a {type(batch).__name__}")
        x, y = batch
        if not torch.is_tensor(x) or not torch.is_floating_point(x):
            got = getattr(x, "dtype", type(x).__name__)
            raise TrainError(f"the images of `{name}` must be float tensors (B, C, H, W), got {got}")
        if not torch.is_tensor(y) or torch.is_floating_point(y) or y.dtype == torch.bool:
            got = getattr(y, "dtype", type(y).__name__)
            raise TrainError(f"the labels of `{name}` must be integer class indices, got {got}")
        conv = _first_conv(model)
        if conv is not None:
            if x.dim() != 4:
                raise TrainError(
                    f"the images of `{name}` must be (B, C, H, W) for a convolutional model, "
                    f"got a batch of shape {tuple(x.shape)}"
                )
            if x.shape[1] != conv.in_channels:
                raise TrainError(
                    f"the model's first convolution takes {conv.in_channels} input channels but the images of `{name}` "
                    f"have {x.shape[1]} (batch shape {tuple(x.shape)}); build the model with in_channels={x.shape[1]} "
                    "or change the dataset's transform"
                )
        model.eval()
        try:
            with torch.no_grad():
                logits, _ = split_output(model(x.to(device, parameter_dtype(model))))
        except RuntimeError as error:
            raise TrainError(f"the model cannot run on a batch of `{name}` (shape {tuple(x.shape)}): {error}") from None
    finally:
        model.train(was_training)
        restore_rng_state(rng)
    if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        raise TrainError(
            f"the model must return logits (B, num_classes); on a batch of `{name}` of shape {tuple(x.shape)} "
            f"it returned shape {tuple(logits.shape)}"
        )
    K = logits.shape[1]
    labels = _all_labels(dataset)
    labels = y if labels is None else labels
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise TrainError(f"the labels of `{name}` must be class indices >= 0, got {low}")
    if high >= K:
        raise TrainError(
            f"the model outputs {K} classes but the labels of `{name}` go up to {high}; "
            f"build the model with num_classes={high + 1} or check the dataset"
        )
    return K


# -- the trainer ---------------------------------------------------------------------------------


class Trainer:
    """The state of one training run; :meth:`train_epoch` advances it by one epoch.

    Args:
        model: the classifier; moved to ``device`` (and to NHWC with ``channels_last``).
        train_set: yields ``(image (C, H, W), label)``; shuffled per epoch by ``(seed, epoch)``.
        eval_set: evaluated after every epoch; ``None`` skips evaluation.
        config: the ``[train]`` section.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
        seed: the run's seed (data order per epoch); the engine does not seed the global RNGs.
        num_workers: DataLoader workers.
        progress: tqdm progress bars.
        distributed: this process of a torchrun job (:func:`~bayesnas_book.train.distributed.init_distributed`);
            then ``device`` is ignored (the context's is used), ``config.batch_size`` is the global
            batch and the model trains through ``DistributedDataParallel``.

    Raises:
        ConfigError: if ``config`` breaks a rule (every problem listed).
        TrainError: for a bad ``seed`` or ``amp`` on this device, a global batch the processes
            cannot share, or data that do not fit the model (see :func:`check_dataset`).
    """

    def __init__(
        self,
        model: nn.Module,
        train_set: Dataset,
        eval_set: Dataset | None,
        config: TrainConfig,
        device: str | torch.device = "auto",
        seed: int = 0,
        num_workers: int = 0,
        progress: bool = False,
        distributed: DistributedContext | None = None,
    ) -> None:
        problems = train_config_problems(config)
        if problems:
            raise ConfigError(problems, "train configuration")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise TrainError(f"`seed` must be a non-negative integer, got {seed!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise TrainError(f"`num_workers` must be a non-negative integer, got {num_workers!r}")
        self.distributed = distributed
        if distributed is not None:
            device = distributed.device
        try:
            self.local_batch_size = local_batch_size(config.batch_size, distributed)  # B / W images per process
        except ValueError as error:
            raise TrainError(str(error)) from None
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        try:
            self.dtype = amp_dtype(config.amp, self.device)
        except ValueError as error:
            raise TrainError(str(error)) from None
        self.config, self.seed, self.num_workers, self.progress = config, seed, num_workers, progress
        self.train_set, self.eval_set = train_set, eval_set
        self.model = model.to(self.device)
        self.float_dtype = parameter_dtype(self.model)  # images are cast to it
        self.channels_last = resolve_channels_last(self.model, self.device, config.channels_last)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.num_classes = check_dataset(self.model, train_set, "train_set", config.batch_size, self.device)
        if eval_set is not None:
            check_dataset(self.model, eval_set, "eval_set", config.eval_batch_size, self.device)
        trained: nn.Module = self.model
        if distributed is not None:
            self.model, trained = wrap_model(self.model, distributed)
        self.forward: Callable[[torch.Tensor], Any] = compiled_forward(trained, config.compile, config.compile_mode)
        if distributed is None:
            batches = math.ceil(len(train_set) / config.batch_size)  # type: ignore[arg-type]
        else:  # each process sees ceil(n / W) images (padded), b at a time
            batches = math.ceil(math.ceil(len(train_set) / distributed.world_size) / self.local_batch_size)  # type: ignore[arg-type]
        self.steps_per_epoch = min(batches, config.max_batches_per_epoch) if config.max_batches_per_epoch else batches
        self.optimizer = build_optimizer(self.model, config)
        self.parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.scheduler = build_scheduler(self.optimizer, config, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.epoch = 0  # epochs completed
        self.metrics: list[dict[str, Any]] = []
        if distributed is not None and distributed.rank > 0:
            torch.manual_seed(seed + distributed.rank * RANK_SEED_STRIDE)  # other dropout masks and crops per process

    @property
    def is_main(self) -> bool:
        """This process writes the run's files (always true without ``distributed``)."""
        return self.distributed is None or self.distributed.is_main

    def record(self) -> dict[str, Any]:
        """Everything that decides the run's result, for checkpoints, provenance and resume checks."""
        return {
            "train": dataclasses.asdict(self.config),
            "seed": self.seed,
            "num_workers": self.num_workers,
            "model": type(self.model).__name__,
            "train_size": len(self.train_set),  # type: ignore[arg-type]
            "eval_size": None if self.eval_set is None else len(self.eval_set),  # type: ignore[arg-type]
        } | ({} if self.distributed is None else {"distributed": self.distributed.record()})

    def set_drop_prob(self, epoch: int) -> float | None:
        """The official dropout ramp: ``drop_prob * epoch / epochs`` (``None`` if the model has no dropout)."""
        setter = getattr(self.model, "set_drop_prob", None)
        if setter is None:
            return None
        drop = self.config.drop_prob * epoch / self.config.epochs  # the official ramp, 0 at the first epoch
        if self.config.drop_path_prob > 0:
            setter(drop, self.config.drop_path_prob * epoch / self.config.epochs)
        else:
            setter(drop)
        return drop

    def train_epoch(self) -> dict[str, Any]:
        """Train epoch ``self.epoch`` and evaluate; return its metrics.

        Returns:
            ``{"epoch" (1-based), "lr" (at the epoch's start), "drop_prob", "train_loss" (the
            optimised objective), "train_top1", "grad_norm" (mean pre-clip global norm, or None),
            "eval_loss", "eval_top1", "eval_top5" (None without eval_set), "images", "seconds"
            (training), "images_per_s", "eval_seconds"}``.

        Raises:
            TrainError: if the training loss is not finite.
        """
        config, device, epoch = self.config, self.device, self.epoch
        drop = self.set_drop_prob(epoch)
        lr = self.optimizer.param_groups[0]["lr"]
        self.model.train()
        if self.distributed is None:
            loader = epoch_loader(self.train_set, config.batch_size, self.seed, epoch, num_workers=self.num_workers)
        else:
            loader = distributed_loader(self.train_set, self.local_batch_size, self.seed, epoch, self.distributed,
                                        num_workers=self.num_workers)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        norm_sum = torch.zeros((), dtype=torch.float64, device=device)
        norm_count = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        started = time.perf_counter()
        bar = tqdm(take(loader, config.max_batches_per_epoch), total=self.steps_per_epoch, disable=not (self.progress and self.is_main),
                   desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
        for index, (x, y) in enumerate(bar):
            x = to_memory_format(x.to(device, self.float_dtype, non_blocking=True), self.channels_last)
            y = y.to(device, non_blocking=True)
            with autocast(device, self.dtype):
                loss, logits = training_loss(self.forward(x), y, config.label_smoothing, config.auxiliary_weight)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if config.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)  # clip the true gradient, not the scaled one
                norm = torch.nn.utils.clip_grad_norm_(self.parameters, config.grad_clip)  # g <- g * min(1, c / ||g||)
                finite = torch.isfinite(norm)
                norm_sum += torch.where(finite, norm.double(), 0.0)
                norm_count += finite.long()
            self.scaler.step(self.optimizer)  # skipped by an fp16 scaler when the gradient overflowed
            self.scaler.update()
            if config.lr_update == "batch":
                self.scheduler.step()
            B = y.shape[0]
            loss_sum += loss.detach().double() * B
            correct += topk_correct(logits.detach(), y, (1,))[0]
            seen += B
            if self.progress and (index + 1) % PROGRESS_EVERY == 0:  # each refresh waits for the device
                elapsed = time.perf_counter() - started
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{int(correct) / seen:.3f}",
                                img_s=f"{seen / max(elapsed, 1e-9):.0f}")
        if config.lr_update == "epoch":
            self.scheduler.step()
        if self.distributed is not None:  # sums over the processes
            totals = all_reduce_sum([loss_sum, correct, norm_sum, norm_count, seen], self.distributed, device)
            loss_sum, norm_sum = totals[0], totals[2]
            correct, norm_count, seen = round(totals[1]), round(totals[3]), round(totals[4])
        train_loss = float(loss_sum) / max(seen, 1)
        seconds = time.perf_counter() - started
        if not math.isfinite(train_loss):
            raise TrainError(
                f"the training loss is not finite ({train_loss}) in epoch {epoch + 1}; lower `train.lr`, "
                "set `train.grad_clip`, or look for NaN / inf in the images"
            )
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": lr,
            "drop_prob": drop,
            "train_loss": train_loss,
            "train_top1": int(correct) / max(seen, 1),
            "grad_norm": float(norm_sum) / int(norm_count) if int(norm_count) else None,
            "images": seen,
            "seconds": seconds,
            "images_per_s": seen / max(seconds, 1e-9),
        }
        started = time.perf_counter()
        scores = self.evaluate() if self.eval_set is not None else {"loss": None, "top1": None, "top5": None}
        record.update({f"eval_{key}": value for key, value in scores.items()})
        record["eval_seconds"] = time.perf_counter() - started
        self.metrics.append(record)
        self.epoch += 1
        return record

    def evaluate(self, dataset: Dataset | None = None) -> dict[str, float]:
        """:func:`~bayesnas_book.train.evaluate.evaluate` on ``dataset`` (default ``eval_set``) with the run's settings."""
        dataset = self.eval_set if dataset is None else dataset
        if dataset is None:
            raise TrainError("this run has no `eval_set`; pass a dataset to evaluate")
        if self.distributed is not None:
            return evaluate_distributed(self.model, dataset, self.distributed, self.config.eval_batch_size,
                                        amp=self.config.amp, channels_last=self.channels_last,
                                        num_workers=self.num_workers)
        return evaluate(self.model, dataset, self.config.eval_batch_size, self.device, amp=self.config.amp,
                        channels_last=self.channels_last, num_workers=self.num_workers)

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The run's state: model, optimiser, scheduler, scaler, metrics."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "metrics": self.metrics,
        }

    def load_state_dict(self, state: Mapping[str, Any], epoch: int) -> None:
        """Undo :meth:`state_dict`; ``epoch`` is the number of completed epochs.

        Raises:
            TrainError: if the saved weights do not fit the model.
        """
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as error:
            first = str(error).strip().splitlines()
            raise TrainError(
                f"the checkpoint's weights do not fit this model ({' '.join(first[:2])[:400]}); "
                "build the same model as the run that wrote it"
            ) from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.metrics = list(state["metrics"])
        self.epoch = epoch

    def save(self, path: Path, extra_config: Mapping[str, Any] | None = None) -> None:
        """Write the checkpoint atomically (distributed: every process calls it, rank 0 writes)."""
        if self.distributed is None:
            save_checkpoint(path, "train", _config_record(self, extra_config), {"epoch": self.epoch}, self.state_dict())
            return
        rank_rng = gather_objects(capture_rng_state(), self.distributed)  # every process's generators
        if self.distributed.is_main:
            state = self.state_dict() | {"rank_rng": rank_rng}
            save_checkpoint(path, "train", _config_record(self, extra_config), {"epoch": self.epoch}, state)
        barrier(self.distributed)


def _config_record(trainer: Trainer, extra_config: Mapping[str, Any] | None) -> dict[str, Any]:
    record = trainer.record()
    if extra_config is not None:
        record["run"] = dict(extra_config)
    return record


def _check_output_folder(out: Path, resume: bool) -> dict[str, Any] | None:
    """Refuse to overwrite another run; on resume, return the checked checkpoint."""
    try:
        return claim_run_folder(out, "train", OUTPUTS, resume, describe="a training run",
                                resume_hint="pass resume=True (--resume) to continue it")
    except CheckpointError as error:
        raise TrainError(str(error)) from None


def _write_metrics(out: Path, metrics: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(m) + "\n" for m in metrics).encode("utf-8")
    atomic_write_bytes(out / "metrics.jsonl", text)


def _final(trainer: Trainer) -> dict[str, float]:
    if trainer.eval_set is None or not trainer.metrics:
        return {}
    last = trainer.metrics[-1]
    return {key: last[f"eval_{key}"] for key in ("loss", "top1", "top5")}


def train_model(
    model: nn.Module,
    train_set: Dataset,
    eval_set: Dataset | None,
    config: TrainConfig,
    out: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device = "auto",
    progress: bool = False,
    *,
    seed: int = 0,
    num_workers: int = 0,
    run_config: Mapping[str, Any] | None = None,
    stop_after: int | None = None,
    on_epoch: Callable[[Trainer, dict[str, Any]], None] | None = None,
    distributed: DistributedContext | None = None,
) -> TrainResult:
    """Train (or resume training) ``model`` and write the run's files to ``out``.

    Args:
        model: the classifier, freshly built (seeded by the caller) or of the same architecture
            as the checkpoint's when resuming.
        train_set: yields ``(image (C, H, W), label)``.
        eval_set: evaluated after every epoch (``None``: no evaluation).
        config: the ``[train]`` section (:class:`~bayesnas_book.train.config.TrainConfig`).
        out: output folder (created once the checkpoint, the model and the data are checked);
            ``None`` keeps everything in memory (chapters, tests).
        resume: continue the run whose checkpoint is in ``out``.
        device: ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` or a ``torch.device``.
        progress: tqdm progress bars.
        seed: the run's seed; it decides the data order of every epoch.
        num_workers: DataLoader workers.
        run_config: the caller's whole configuration (e.g. ``config_to_dict(run_config)``), kept in
            the checkpoint and the provenance and compared on resume.
        stop_after: stop once this many epochs are complete (simulates a killed run).
        on_epoch: called after every epoch (and its checkpoint) with the trainer and the metrics.
        distributed: this process of a torchrun job (see :class:`Trainer`); every process calls
            :func:`train_model` with the same arguments and rank 0 writes the files.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ConfigError: if ``config`` breaks a rule.
        TrainError: for an output folder holding another run (without ``resume``), ``resume``
            without ``out``, a missing / corrupt / foreign checkpoint, a configuration that differs
            from the checkpoint's (every differing key named), a model that does not fit the
            checkpoint, data that do not fit the model, a non-finite loss.
    """
    started = time.time()
    out_path = Path(out) if out is not None else None
    payload = None
    if out_path is not None:
        payload = _check_output_folder(out_path, resume)  # only reads: a refused run creates nothing
    elif resume:
        raise TrainError("resume=True needs the output folder (`out`) of the run to continue")
    trainer = Trainer(model, train_set, eval_set, config, device=device, seed=seed, num_workers=num_workers, progress=progress,
                      distributed=distributed)
    resumed_from = None
    if payload is not None:
        assert out_path is not None
        differences = config_differences(payload["config"], _config_record(trainer, run_config))
        if differences:
            listed = "; ".join(f"{key}: checkpoint {a!r}, now {b!r}" for key, a, b in differences[:8])
            more = f" and {len(differences) - 8} more" if len(differences) > 8 else ""
            raise TrainError(
                f"cannot resume {out_path / CHECKPOINT}: its configuration differs ({listed}{more}); "
                "resume with the same settings or start a new output folder"
            )
        trainer.load_state_dict(payload["state"], payload["step"]["epoch"])
        restore_rng_state(payload["rng"] if distributed is None else payload["state"]["rank_rng"][distributed.rank])
        resumed_from = trainer.epoch
    if out_path is not None and trainer.is_main:  # the callers write genotype.json beside the run
        prepare_run_folder(out_path, (CHECKPOINT, *OUTPUTS, "genotype.json"))
    ran = 0
    while trainer.epoch < config.epochs and (stop_after is None or trainer.epoch < stop_after):
        record = trainer.train_epoch()
        ran += 1
        if out_path is not None:
            trainer.save(out_path / CHECKPOINT, run_config)
            if trainer.is_main:
                _write_metrics(out_path, trainer.metrics)
            barrier(distributed)
        if on_epoch is not None:
            on_epoch(trainer, record)
    finished = trainer.epoch >= config.epochs
    seconds = sum(m["seconds"] + m["eval_seconds"] for m in trainer.metrics)
    trainer.model.eval()
    if out_path is not None and finished and trainer.is_main and (ran or not (out_path / "provenance.json").exists()):
        state = trainer.model.state_dict()
        with atomic_writer(out_path / "model.pt") as handle:
            torch.save(state, handle)
        provenance = provenance_record(_config_record(trainer, run_config), trainer.device, started)
        provenance.update({"final": _final(trainer), "epochs": trainer.epoch, "train_seconds": seconds,
                           "resumed_from_epoch": resumed_from})
        write_json(out_path / "provenance.json", provenance)
    if out_path is not None:
        barrier(distributed)
    return TrainResult(trainer.model, trainer.metrics, _final(trainer), trainer.epoch, finished, out_path, seconds)
