"""Typed, validated run configurations and the two profiles.

One code path runs at two sizes. A *profile* is a TOML file shipped with the package
(``bayesnas_book/configs/<name>.toml``) that sets the fields of :class:`RunConfig`:

* ``quick``: CPU, seconds to a minute, deterministic; the default in chapters and tests.
* ``paper``: the published protocol on a GPU.

A configuration is built in layers, each checked against the dataclass schema::

    dataclass defaults  ->  profile file  ->  --config FILE  ->  key=value overrides

Every unknown key, wrongly typed value and out-of-range value is collected and reported at
once in one :class:`ConfigError`. Chapters pick the profile with the ``BAYESNAS_PROFILE``
environment variable (:func:`profile_from_env`); the CLI takes ``--profile`` and ``--config``.

Sections are plain dataclasses. A field may carry ``metadata={"choices": (...)}`` or
``metadata={"check": (predicate, "rule")}``; :func:`validate` applies them recursively, so a
new section only declares its fields.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

__all__ = [
    "PROFILES",
    "ConfigError",
    "CompressConfig",
    "DataConfig",
    "RunConfig",
    "NetworkConfig",
    "SearchConfig",
    "TrainConfig",
    "TransferConfig",
    "TreeConfig",
    "train_config_problems",
    "transfer_config_problems",
    "apply_overrides",
    "config_to_dict",
    "load_config",
    "profile_from_env",
    "validate",
]

PROFILE_ENV_VAR = "BAYESNAS_PROFILE"
PROFILES = ("quick", "paper")
FLOAT_DTYPES = ("float32", "float64")
DATASETS = ("digits", "cifar10", "mnist", "imagenet")

T = TypeVar("T")


class ConfigError(ValueError):
    """Raised with every problem of a configuration listed, one per line."""

    def __init__(self, problems: Iterable[str], source: str = "configuration") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {source}:\n{lines}")


def _positive(value: float) -> bool:
    return value > 0


def _non_negative(value: float) -> bool:
    return value >= 0


def _fraction(value: float) -> bool:
    return 0.0 < value < 1.0


def _device_name(value: str) -> bool:
    if value in ("auto", "cpu", "cuda", "mps"):
        return True
    prefix, _, index = value.partition(":")
    return prefix == "cuda" and index.isdigit()


@dataclass
class DataConfig:
    """Which dataset a run reads and how it is batched."""

    # dataset: one of DATASETS; "digits" ships inside scikit-learn and needs no download
    dataset: str = field(default="digits", metadata={"choices": DATASETS})
    # root: folder holding the datasets; "" means $BAYESNAS_DATA or ~/.cache/bayesnas-book/datasets
    root: str = ""
    # batch_size: images per optimiser step
    batch_size: int = field(default=64, metadata={"check": (_positive, "must be > 0")})
    # num_workers: DataLoader worker processes (0 loads in the main process, reproducible)
    num_workers: int = field(default=0, metadata={"check": (_non_negative, "must be >= 0")})
    # split_seed: seeds the cut of the data into train / validation / test parts; kept apart from
    # the run's seed so that runs with different seeds never test on each other's training images
    split_seed: int = field(default=0, metadata={"check": (_non_negative, "must be >= 0")})
    # validation_fraction: share of the training images held out, disjoint from the rest
    validation_fraction: float = field(
        default=0.2, metadata={"check": (_fraction, "must be strictly between 0 and 1")}
    )


def _entropy_threshold_default() -> float:
    import math

    return 1.0 / (2.0 * math.pi * math.e)


def _layout(value: str) -> bool:
    return bool(value) and not set(value) - {"N", "R"}


AMP_MODES = ("off", "auto", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile(mode=...)


@dataclass
class SearchConfig:
    """The paper's Algorithm 1 and search protocol: the supernet, the schedule, the priors, the pruning."""

    # space: "bayesnas" (8 edges per cell, the paper), "darts" (14 edges) or "tree" (the proxyless
    # setting: TreeCell-A switches in every unit of a PyramidNet, shaped by the [tree] section)
    space: str = field(default="bayesnas", metadata={"choices": ("bayesnas", "darts", "tree")})
    # channels: C of the first stage (paper 36); layout: N normal / R reduction cells (paper NNRNNRNN)
    channels: int = field(default=36, metadata={"check": (_positive, "must be > 0")})
    layout: str = field(default="NNRNNRNN", metadata={"check": (_layout, "must be a non-empty string of N and R")})
    stem_multiplier: int = field(default=3, metadata={"check": (_positive, "must be > 0")})
    # warmup_epochs: weights only, on the warm-up split, before the first round (paper 1)
    warmup_epochs: int = field(default=1, metadata={"check": (_non_negative, "must be >= 0")})
    # switch_epochs: weights and switches with the reweighted penalty, per round (paper 1)
    switch_epochs: int = field(default=1, metadata={"check": (_positive, "must be > 0")})
    # rounds: T, train-and-update rounds (paper 1; an unofficial fork loops)
    rounds: int = field(default=1, metadata={"check": (_positive, "must be > 0")})
    # warmup_fraction: share of the search-training images in the warm-up split (paper 5k of 50k),
    # disjoint from the switch split (the official two splits overlap)
    warmup_fraction: float = field(default=0.1, metadata={"check": (_fraction, "must be strictly between 0 and 1")})
    # lambda_o: lambda_w^o of the paper, the parent (edge) penalty strength (0.01 / 0.007 / 0.005)
    lambda_o: float = field(default=0.01, metadata={"check": (_positive, "must be > 0")})
    # lambda_c: the child (op) penalty strength; undocumented in the paper
    lambda_c: float = field(default=0.01, metadata={"check": (_positive, "must be > 0")})
    # lr: SGD learning rate at reference_batch_size; scaled linearly with data.batch_size
    lr: float = field(default=0.1, metadata={"check": (_positive, "must be > 0")})
    reference_batch_size: int = field(default=18, metadata={"check": (_positive, "must be > 0")})
    momentum: float = field(default=0.9, metadata={"check": (_non_negative, "must be >= 0")})
    # weight_decay: on the network weights only, never on the switches
    weight_decay: float = field(default=1e-4, metadata={"check": (_non_negative, "must be >= 0")})
    # curvature_method: recursion (the paper's fast Hessian), exact_ggn or mc_ggn (one label drawn
    # from the model per image; chapter 05 measures all three and picks mc_ggn)
    curvature_method: str = field(default="recursion", metadata={"choices": ("recursion", "exact_ggn", "mc_ggn")})
    # curvature_batches: batches of the switch split the curvature is averaged over
    curvature_batches: int = field(default=10, metadata={"check": (_positive, "must be > 0")})
    # prune_threshold: prune where gamma <= threshold; default 1/(2 pi e): entropy of N(0, gamma) <= 0
    prune_threshold: float = field(default_factory=_entropy_threshold_default, metadata={"check": (_positive, "must be > 0")})
    # cutout: side of the cutout square in pixels (paper 16); 0 disables it
    cutout: int = field(default=16, metadata={"check": (_non_negative, "must be >= 0")})
    # max_batches_per_epoch: 0 = whole split; a positive number caps every epoch (smoke runs)
    max_batches_per_epoch: int = field(default=0, metadata={"check": (_non_negative, "must be >= 0")})
    # the GPU fast path (issue 8): amp = off, auto (bf16 on a CUDA GPU that has it), bf16, fp16
    # (CUDA, with a GradScaler) for the supernet forward and the curvature sweep (curvature is
    # still accumulated in float64); channels_last = NHWC; compile = torch.compile the training forward;
    # compile_mode = torch.compile's mode ("reduce-overhead" replays CUDA graphs: no launch cost);
    # fused_edges = evaluate each edge's four convolution ops channel-stacked (space/fused_edge.py:
    # same parameters and results, fewer and larger kernels)
    amp: str = field(default="off", metadata={"choices": AMP_MODES})
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = field(default="default", metadata={"choices": COMPILE_MODES})
    fused_edges: bool = False


SCHEDULES = ("cosine", "exponential", "constant")
LR_UPDATES = ("epoch", "batch")


def _probability(value: float) -> bool:
    return 0.0 <= value < 1.0


def _decay_factor(value: float) -> bool:
    return 0.0 < value <= 1.0


@dataclass
class TrainConfig:
    """How a network is trained by :func:`bayesnas_book.train.train_model`."""

    # epochs: passes over the training set (paper: not recovered; DARTS CIFAR-10 600, ImageNet 250)
    epochs: int = field(default=600, metadata={"check": (_positive, "must be > 0")})
    # batch_size: images per optimiser step (official CIFAR-10 nets 64; DARTS ImageNet 128)
    batch_size: int = field(default=64, metadata={"check": (_positive, "must be > 0")})
    # eval_batch_size: images per batch when evaluating (no gradients: can be larger)
    eval_batch_size: int = field(default=256, metadata={"check": (_positive, "must be > 0")})
    # lr: the peak learning rate (after warm-up), at batch_size (no automatic scaling)
    lr: float = field(default=0.1, metadata={"check": (_positive, "must be > 0")})
    momentum: float = field(default=0.9, metadata={"check": (_non_negative, "must be >= 0")})
    # nesterov: Nesterov momentum (needs momentum > 0)
    nesterov: bool = False
    # weight_decay: L2 on the weights (paper: not given; DARTS CIFAR-10 3e-4, ImageNet 3e-5)
    weight_decay: float = field(default=3e-4, metadata={"check": (_non_negative, "must be >= 0")})
    # decay_norm_and_bias: also decay BatchNorm scales and every bias (1-d tensors), as DARTS does;
    # false puts them in a group without weight decay
    decay_norm_and_bias: bool = True
    # schedule: cosine (lr -> lr_min over the epochs after warm-up), exponential
    # (lr * lr_decay ** (epochs after warm-up // lr_decay_epochs); DARTS ImageNet 0.97 per epoch), constant
    schedule: str = field(default="cosine", metadata={"choices": SCHEDULES})
    # lr_min: the cosine schedule's final learning rate
    lr_min: float = field(default=0.0, metadata={"check": (_non_negative, "must be >= 0")})
    lr_decay: float = field(default=0.97, metadata={"check": (_decay_factor, "must be in (0, 1]")})
    lr_decay_epochs: int = field(default=1, metadata={"check": (_positive, "must be > 0")})
    # warmup_epochs: linear warm-up from lr / (warm-up updates) to lr; 0 disables it
    warmup_epochs: int = field(default=0, metadata={"check": (_non_negative, "must be >= 0")})
    # lr_update: change the learning rate once per "epoch" (DARTS) or after every "batch"
    lr_update: str = field(default="epoch", metadata={"choices": LR_UPDATES})
    # label_smoothing: epsilon of the smoothed cross-entropy (ImageNet protocol 0.1)
    label_smoothing: float = field(default=0.0, metadata={"check": (_probability, "must be in [0, 1)")})
    # grad_clip: clip the gradient's global L2 norm to this value (official 5); 0 disables it
    grad_clip: float = field(default=5.0, metadata={"check": (_non_negative, "must be >= 0")})
    # drop_prob: final channel-dropout probability, ramped drop_prob * epoch / epochs (official 0.2)
    drop_prob: float = field(default=0.2, metadata={"check": (_probability, "must be in [0, 1)")})
    # drop_path_prob: final drop-path probability, ramped the same way (DARTS nets; official BayesNAS 0)
    drop_path_prob: float = field(default=0.0, metadata={"check": (_probability, "must be in [0, 1)")})
    # auxiliary_weight: weight of the auxiliary head's loss when the model returns (logits, aux)
    auxiliary_weight: float = field(default=0.4, metadata={"check": (_non_negative, "must be >= 0")})
    # amp: mixed precision: off, auto (bf16 on a CUDA GPU that has it, else off), bf16, fp16 (CUDA only)
    amp: str = field(default="off", metadata={"choices": AMP_MODES})
    # channels_last: NHWC memory format for the model and the images (faster convs with AMP on GPUs)
    channels_last: bool = False
    # compile: torch.compile the model's training forward, with torch.compile's mode compile_mode
    # ("reduce-overhead" replays CUDA graphs)
    compile: bool = False
    compile_mode: str = field(default="default", metadata={"choices": COMPILE_MODES})
    # max_batches_per_epoch: 0 = every batch; a positive number caps every epoch (smoke runs)
    max_batches_per_epoch: int = field(default=0, metadata={"check": (_non_negative, "must be >= 0")})


def train_config_problems(config: TrainConfig, prefix: str = "train.") -> list[str]:
    """Every rule ``config`` breaks: the per-field rules of :func:`~bayesnas_book.config.validate`
    and the rules that tie fields together.

    Args:
        config: the section.
        prefix: how keys are named in the messages (``"train."`` inside a ``RunConfig``).

    Returns:
        Readable sentences, empty when the section is valid.
    """
    problems = validate(config, prefix)
    if not problems:
        if config.warmup_epochs >= config.epochs:
            problems.append(
                f"`{prefix}warmup_epochs` must be < `{prefix}epochs` ({config.epochs}), got {config.warmup_epochs}"
            )
        if config.lr_min > config.lr:
            problems.append(f"`{prefix}lr_min` must be <= `{prefix}lr` ({config.lr}), got {config.lr_min}")
        if config.nesterov and config.momentum == 0:
            problems.append(f"`{prefix}nesterov` needs `{prefix}momentum` > 0, got {config.momentum}")
    return problems


@dataclass
class NetworkConfig:
    """The evaluation network built from a genotype (the official CIFAR-10 and ImageNet nets)."""

    # channels: C of the first stage (official CIFAR-10 nets 36, ImageNet 48)
    channels: int = field(default=36, metadata={"check": (_positive, "must be > 0")})
    # num_cells: cells in all, two of them reduction cells at 1/3 and 2/3 (CIFAR-10 20, ImageNet 14)
    num_cells: int = field(default=20, metadata={"check": (lambda v: v >= 3, "must be >= 3")})
    # auxiliary: a DARTS auxiliary head (the official BayesNAS nets have none)
    auxiliary: bool = False


def _transfer_train_defaults() -> TrainConfig:
    """The ImageNet protocol (the paper's mobile setting; the epochs, batch, schedule and decay are DARTS's)."""
    return TrainConfig(epochs=250, batch_size=128, lr=0.1, weight_decay=3e-5, schedule="exponential", lr_decay=0.97,
                       lr_decay_epochs=1, label_smoothing=0.1, grad_clip=5.0, drop_prob=0.0)


def _tree_train_defaults() -> TrainConfig:
    """The path-level paper's CIFAR-10 protocol for tree-cell PyramidNets (Cai et al. 2018, Section 5.1)."""
    return TrainConfig(epochs=300, batch_size=64, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4,
                       schedule="cosine", lr_update="batch", grad_clip=0.0, drop_prob=0.0)


@dataclass
class TreeConfig:
    """The proxyless tree search (``search.space = "tree"``): the PyramidNet backbone and its tree cells."""

    # shape: the tree of every cell (treecell_a: 7 nodes, 15 edges, 9 leaves)
    shape: str = field(default="treecell_a", metadata={"choices": ("treecell_a",)})
    # depth: 9U + 2 (PyramidNet-164: 18 bottleneck units per stage); alpha: the total widening (84)
    depth: int = field(default=164, metadata={"check": (lambda v: v >= 11 and (v - 2) % 9 == 0, "must be 9U + 2 >= 11")})
    alpha: float = field(default=84.0, metadata={"check": (_non_negative, "must be >= 0")})
    bottleneck: bool = True
    start_channels: int = field(default=16, metadata={"check": (_positive, "must be > 0")})
    # checkpoint: recompute each unit's forward in the backward (torch.utils.checkpoint) instead of storing it
    checkpoint: bool = True
    # root_bn: a BN on each root branch before the add (the path-level paper's CIFAR nets)
    root_bn: bool = True
    # cutout: side of the cutout square for the derived net's training (16 on CIFAR-10; 0 disables it)
    cutout: int = field(default=16, metadata={"check": (_non_negative, "must be >= 0")})
    train: TrainConfig = field(default_factory=_tree_train_defaults)


def _at_least_32(value: int) -> bool:
    return value >= 32


@dataclass
class TransferConfig:
    """The ImageNet transfer (the paper's mobile setting): the mobile network of a genotype on an ImageFolder tree."""

    # root: the folder holding train/ and val/ ("" = <data root>/imagenet); `transfer --imagenet DIR` sets it
    root: str = ""
    # channels, num_cells: the mobile network (official 48 and 14: 4.0M parameters, 431M MACs at 224)
    channels: int = field(default=48, metadata={"check": (_positive, "must be > 0")})
    num_cells: int = field(default=14, metadata={"check": (lambda v: v >= 3, "must be >= 3")})
    # image_size: side of the random training crop and of the evaluation centre crop (official 224);
    # the network halves the resolution five times
    image_size: int = field(default=224, metadata={"check": (_at_least_32, "must be >= 32")})
    # eval_resize: the shorter side is resized to this before the centre crop (DARTS 256 for 224)
    eval_resize: int = field(default=256, metadata={"check": (_at_least_32, "must be >= 32")})
    # min_crop_scale: RandomResizedCrop's smallest area fraction (torchvision's default 0.08)
    min_crop_scale: float = field(default=0.08, metadata={"check": (_fraction, "must be strictly between 0 and 1")})
    # color_jitter: brightness, contrast and saturation strength (official 0.4); hue: (official 0.2); 0 disables
    color_jitter: float = field(default=0.4, metadata={"check": (_non_negative, "must be >= 0")})
    hue: float = field(default=0.2, metadata={"check": (lambda v: 0.0 <= v <= 0.5, "must be in [0, 0.5]")})
    # train: the [transfer.train] section, the same keys as [train]; label smoothing 0.1, clip 5
    train: TrainConfig = field(default_factory=_transfer_train_defaults)


def transfer_config_problems(config: TransferConfig, prefix: str = "transfer.") -> list[str]:
    """Every rule ``config`` breaks, including those tying fields together (see :func:`train_config_problems`)."""
    problems = validate(config, prefix)
    problems += [p for p in train_config_problems(config.train, f"{prefix}train.") if p not in problems]
    sizes_valid = not any(f"`{prefix}image_size`" in p or f"`{prefix}eval_resize`" in p for p in problems)
    if sizes_valid and config.eval_resize < config.image_size:
        problems.append(
            f"`{prefix}eval_resize` must be >= `{prefix}image_size` ({config.image_size}), got {config.eval_resize}"
        )
    return problems


COMPRESS_MODELS = ("lenet300", "lenet5", "vgg")


def _sparsity(value: float) -> bool:
    return 0.0 <= value < 1.0


@dataclass
class CompressConfig:
    """Network compression with the gates' Bayesian update (the paper's compression experiments; bayesnas_book.compress)."""

    # model: lenet300 (LeNet-300-100), lenet5 (LeNet-5-Caffe 20-50-800-500) or vgg (Zagoruyko's VGG-16, CIFAR-10)
    model: str = field(default="lenet300", metadata={"choices": COMPRESS_MODELS})
    # width: scales every layer's units (1 = the published networks)
    width: float = field(default=1.0, metadata={"check": (lambda v: 0.0 < v <= 4.0, "must be in (0, 4]")})
    # pretrain_epochs: weights only, gates at 1, before the first round (the "before" network)
    pretrain_epochs: int = field(default=10, metadata={"check": (_non_negative, "must be >= 0")})
    # gate_epochs: weights and gates with the reweighted penalty, per round
    gate_epochs: int = field(default=5, metadata={"check": (_positive, "must be > 0")})
    # rounds: train-update-prune rounds
    rounds: int = field(default=3, metadata={"check": (_positive, "must be > 0")})
    # finetune_epochs: weights only, pruned units held at 0, after the last round (cosine schedule)
    finetune_epochs: int = field(default=5, metadata={"check": (_non_negative, "must be >= 0")})
    # batch_size: images per SGD step in every phase
    batch_size: int = field(default=64, metadata={"check": (_positive, "must be > 0")})
    # lr, momentum: SGD (constant rate, cosine during fine-tuning); weight_decay on weights, not gates or biases
    lr: float = field(default=0.05, metadata={"check": (_positive, "must be > 0")})
    momentum: float = field(default=0.9, metadata={"check": (_non_negative, "must be >= 0")})
    weight_decay: float = field(default=5e-4, metadata={"check": (_non_negative, "must be >= 0")})
    # lambda_gate: lambda, the gates' penalty strength (the role of lambda_o for the switches)
    lambda_gate: float = field(default=0.01, metadata={"check": (_positive, "must be > 0")})
    # curvature_method: recursion (the fast diagonal GN), exact_ggn or mc_ggn; curvature_batches to average
    curvature_method: str = field(default="recursion", metadata={"choices": ("recursion", "exact_ggn", "mc_ggn")})
    curvature_batches: int = field(default=10, metadata={"check": (_positive, "must be > 0")})
    # prune_threshold: prune a unit where gamma <= threshold; default 1/(2 pi e) (entropy <= 0)
    prune_threshold: float = field(default_factory=_entropy_threshold_default, metadata={"check": (_positive, "must be > 0")})
    # baseline_sparsity: 0 = the baselines keep as many units per layer as the Bayesian run (matched);
    # a fraction in (0, 1) removes that share of every layer's units instead
    baseline_sparsity: float = field(default=0.0, metadata={"check": (_sparsity, "must be in [0, 1)")})
    # group_lasso: rho, the group-lasso baseline's strength (proximal steps on the same groups)
    group_lasso: float = field(default=1e-3, metadata={"check": (_positive, "must be > 0")})
    # augment: random crop and flip on CIFAR-10 (no cutout); MNIST and digits are never augmented
    augment: bool = True
    # max_batches_per_epoch: 0 = every batch; a positive number caps every epoch (smoke runs)
    max_batches_per_epoch: int = field(default=0, metadata={"check": (_non_negative, "must be >= 0")})


@dataclass
class RunConfig:
    """The whole configuration of one run; later chapters add sections here."""

    # profile: the profile file these values started from ("quick" or "paper")
    profile: str = field(default="quick", metadata={"choices": PROFILES})
    # seed: seeds python, numpy and torch (see bayesnas_book.seeding)
    seed: int = field(default=0, metadata={"check": (_non_negative, "must be >= 0")})
    # device: "auto" picks cuda when present, else cpu; or "cpu", "cuda", "cuda:N", "mps"
    device: str = field(
        default="auto", metadata={"check": (_device_name, "must be auto, cpu, cuda, cuda:N or mps")}
    )
    # deterministic: torch.use_deterministic_algorithms; on in the quick profile
    deterministic: bool = True
    # num_threads: torch CPU threads; 0 keeps torch's default. The quick profile uses 1: the same
    # numbers on any machine, and small tensors run no slower (much faster on a busy machine)
    num_threads: int = field(default=0, metadata={"check": (_non_negative, "must be >= 0")})
    # dtype: the run's floating-point type (torch's default dtype, set by seed_everything). float64
    # in the quick profile: other CPUs (AVX2, AVX-512, ARM) run other kernels, and a search's
    # trajectory amplifies float32 rounding differences into other genotypes; in float64 they stay
    # near 1e-12. float32 (the paper profile) is what GPUs and oneDNN's fast CPU kernels run
    dtype: str = field(default="float32", metadata={"choices": FLOAT_DTYPES})
    data: DataConfig = field(default_factory=DataConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)
    tree: TreeConfig = field(default_factory=TreeConfig)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, key: str, problems: list[str]) -> Any:
    """Return ``value`` as type ``tp`` or record why it cannot be."""
    if tp is bool:
        if isinstance(value, bool):
            return value
        problems.append(f"`{key}` must be true or false, got {value!r}")
        return None
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        problems.append(f"`{key}` must be an integer, got {value!r}")
        return None
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        problems.append(f"`{key}` must be a number, got {value!r}")
        return None
    if tp is str:
        if isinstance(value, str):
            return value
        problems.append(f"`{key}` must be a string, got {value!r}")
        return None
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            problems.append(f"`{key}` must be a list, got {value!r}")
            return None
        items = [_coerce(v, item_tp, f"{key}[{i}]", problems) for i, v in enumerate(value)]
        return origin(items)
    return value


def _merge(section: Any, values: Mapping[str, Any], prefix: str, problems: list[str]) -> None:
    """Write ``values`` into the dataclass instance ``section`` in place, recording problems."""
    types = _field_types(type(section))
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in types:
            valid = ", ".join(f"{prefix}{k}" for k in types)
            problems.append(f"unknown key `{dotted}`; valid keys here: {valid}")
            continue
        tp = types[key]
        if _is_section(tp):
            if not isinstance(value, Mapping):
                problems.append(f"`{dotted}` is a section; give it as a table, got {value!r}")
                continue
            _merge(getattr(section, key), value, f"{dotted}.", problems)
            continue
        coerced = _coerce(value, tp, dotted, problems)
        if coerced is not None:
            setattr(section, key, coerced)


def validate(config: Any, prefix: str = "") -> list[str]:
    """Return every rule that ``config`` (a dataclass tree) breaks, as readable sentences."""
    problems: list[str] = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        dotted = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            problems += validate(value, f"{dotted}.")
            continue
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            problems.append(f"`{dotted}` must be one of {', '.join(choices)}; got {value!r}")
        check: tuple[Callable[[Any], bool], str] | None = f.metadata.get("check")
        if check is not None and not check[0](value):
            problems.append(f"`{dotted}` {check[1]}, got {value!r}")
    return problems


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError([f"override {text!r} must look like key=value, e.g. data.batch_size=32"])
    key, raw = (part.strip() for part in text.split("=", 1))
    try:  # TOML literal syntax: 32, 0.1, true, "name", [1, 2]
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word is a string
    return key.split("."), value


def apply_overrides(config: RunConfig, overrides: Iterable[str]) -> list[str]:
    """Apply ``key=value`` strings (dotted keys, TOML values) in place; return the problems."""
    problems: list[str] = []
    for text in overrides:
        try:
            path, value = _parse_override(text)
        except ConfigError as error:
            problems += error.problems
            continue
        nested: Any = value
        for part in reversed(path):
            nested = {part: nested}
        _merge(config, nested, "", problems)
    return problems


def _read_toml(path: Path, source: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"file {path} does not exist"], source) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{path} is not valid TOML: {error}"], source) from None


def profile_path(name: str) -> Path:
    """Path of the shipped TOML file for profile ``name``."""
    if name not in PROFILES:
        raise ConfigError([f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}"])
    return Path(str(resources.files("bayesnas_book") / "configs" / f"{name}.toml"))


def profile_from_env(default: str = "quick") -> str:
    """The profile a chapter runs: ``$BAYESNAS_PROFILE`` when set, else ``default``."""
    name = os.environ.get(PROFILE_ENV_VAR, default).strip() or default
    if name not in PROFILES:
        raise ConfigError(
            [f"{PROFILE_ENV_VAR}={name!r} is not a profile; set it to one of {', '.join(PROFILES)}"]
        )
    return name


def load_config(
    profile: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
) -> RunConfig:
    """Build and validate a :class:`RunConfig`.

    Args:
        profile: ``"quick"`` or ``"paper"``; ``None`` reads ``$BAYESNAS_PROFILE`` (default quick).
        config_file: optional TOML file applied on top of the profile.
        overrides: ``key=value`` strings applied last, e.g. ``["data.batch_size=32"]``.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: listing every unknown key, type mismatch and out-of-range value at once.
    """
    name = profile if profile is not None else profile_from_env()
    config = RunConfig()
    problems: list[str] = []
    _merge(config, _read_toml(profile_path(name), f"profile {name!r}"), "", problems)
    config.profile = name
    if config_file is not None:
        _merge(config, _read_toml(Path(config_file), f"config file {config_file}"), "", problems)
    problems += apply_overrides(config, overrides)
    problems += validate(config)
    problems += [p for p in train_config_problems(config.train) if p not in problems]
    problems += [p for p in transfer_config_problems(config.transfer) if p not in problems]
    if problems:
        raise ConfigError(problems)
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready nested dict of a dataclass config (for checkpoints and provenance)."""
    return dataclasses.asdict(config)
