r"""The optimiser and the learning-rate schedules of the training engine.

With peak rate :math:`\eta`, ``E`` epochs, ``W`` warm-up epochs and ``t`` the epochs done before
an update (``t = e`` when the rate changes once per epoch, ``t = e + i / S`` per batch, with
``S`` batches per epoch and ``u`` one update: 1 or ``1 / S``), the rate is
:math:`\eta \cdot f(t)` with

* warm-up (``t < W``):       :math:`f(t) = (t + u) / W`, reaching 1 at the last warm-up update;
* ``cosine``:                :math:`f(t) = m + (1 - m)\,\tfrac12 (1 + \cos(\pi (t - W) / (E - W)))`,
  :math:`m = \eta_{min} / \eta` (DARTS: ``CosineAnnealingLR(E, eta_min=0)`` stepped per epoch);
* ``exponential``:           :math:`f(t) = d^{\lfloor (t - W) / P \rfloor}` with decay ``d`` every
  ``P`` epochs (DARTS ImageNet: ``StepLR(1, 0.97)``, :math:`\eta_e = 0.1 \cdot 0.97^e`);
* ``constant``:              :math:`f(t) = 1`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from bayesnas_book.train.config import TrainConfig

__all__ = ["LRSchedule", "build_optimizer", "build_scheduler", "parameter_groups"]


@dataclass(frozen=True)
class LRSchedule:
    """The factor :math:`f` of the module docstring as a function of the update count.

    A picklable callable for ``torch.optim.lr_scheduler.LambdaLR``: ``schedule(k)`` is the factor
    of update ``k`` (``k`` epochs, or ``k`` batches when ``steps_per_epoch > 1``).

    Args:
        schedule: ``"cosine"``, ``"exponential"`` or ``"constant"``.
        epochs: ``E``; warmup_epochs: ``W``.
        steps_per_epoch: ``S``, 1 when the rate changes once per epoch.
        lr_decay: ``d``; lr_decay_epochs: ``P``; min_factor: ``m``.
    """

    schedule: str
    epochs: int
    warmup_epochs: int = 0
    steps_per_epoch: int = 1
    lr_decay: float = 0.97
    lr_decay_epochs: int = 1
    min_factor: float = 0.0

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "exponential", "constant"):
            raise ValueError(f"`schedule` must be cosine, exponential or constant, got {self.schedule!r}")
        if self.steps_per_epoch < 1:
            raise ValueError(f"`steps_per_epoch` must be >= 1, got {self.steps_per_epoch}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"`warmup_epochs` must be in [0, epochs = {self.epochs}), got {self.warmup_epochs}")

    def __call__(self, step: int) -> float:
        S = self.steps_per_epoch
        warmup_steps = self.warmup_epochs * S
        if step < warmup_steps:
            return (step + 1) / warmup_steps  # (t + u) / W with t = step / S, u = 1 / S
        after = step - warmup_steps  # updates since warm-up ended
        if self.schedule == "cosine":
            progress = after / ((self.epochs - self.warmup_epochs) * S)  # (t - W) / (E - W)
            return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.schedule == "exponential":
            return self.lr_decay ** (after // (self.lr_decay_epochs * S))  # d ** floor((t - W) / P)
        return 1.0


def parameter_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool = True) -> list[dict]:
    """The model's trainable parameters in optimiser groups.

    Args:
        model: the network.
        weight_decay: L2 strength of the decayed group.
        decay_norm_and_bias: decay every parameter (DARTS); false moves 1-d tensors (BatchNorm
            scales and shifts, biases) to a group with ``weight_decay = 0``.

    Returns:
        One or two ``{"params": [...], "weight_decay": float}`` dicts (empty groups left out).
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if decay_norm_and_bias:
        return [{"params": trainable, "weight_decay": weight_decay}] if trainable else []
    decayed = [p for p in trainable if p.dim() > 1]
    kept = [p for p in trainable if p.dim() <= 1]
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": kept, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD with the section's momentum, Nesterov flag and weight decay groups.

    Raises:
        ValueError: if the model has no trainable parameter.
    """
    groups = parameter_groups(model, config.weight_decay, config.decay_norm_and_bias)
    if not groups:
        raise ValueError("`model` has no trainable parameter (every requires_grad is False)")
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :class:`LRSchedule`; step it once per epoch or per batch (``config.lr_update``).

    Args:
        optimizer: built with ``lr = config.lr``.
        config: the section.
        steps_per_epoch: batches per epoch; used only when ``config.lr_update == "batch"``.
    """
    schedule = LRSchedule(
        schedule=config.schedule,
        epochs=config.epochs,
        warmup_epochs=config.warmup_epochs,
        steps_per_epoch=steps_per_epoch if config.lr_update == "batch" else 1,
        lr_decay=config.lr_decay,
        lr_decay_epochs=config.lr_decay_epochs,
        min_factor=config.lr_min / config.lr,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
