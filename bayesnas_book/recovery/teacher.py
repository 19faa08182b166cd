"""A planted architecture and the teacher network that labels real images with it.

The test of chapter 02 (does sparse Bayesian learning find the support a linear model was built
with?) moved to architectures: a *planted* genotype (a few (edge, op) pairs per cell) builds a
network of the searched space's cells; with fixed random weights (seeded) it is the *teacher*.
Its labels for the real digits images are::

    z(x) = teacher logits (10,),   y(x) = argmax_c (z_c(x) - mu_c) / sd_c

with ``mu, sd`` the per-class mean and standard deviation of the logits over all 1797 digits
(without them one class takes most images). BatchNorm runs with running statistics computed once
over all the digits, so a label is a fixed function of its image alone.

The teacher is the evaluation network of the planted cells (only the planted ops exist in it) with
the supernet's macro shape (``search.layout``, ``search.channels``), so the planted cells are a
point of the searched space. A search on these labels is scored by how many of the planted
(edge, op) pairs it recovers (:mod:`bayesnas_book.recovery.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from bayesnas_book.config import RunConfig
from bayesnas_book.data import disjoint_split, load_digits, run_digits_splits
from bayesnas_book.models.eval_net import EvalNetwork
from bayesnas_book.search_data import SearchData
from bayesnas_book.space.genotype import CellGenotype, Genotype, genotype_from_inputs
from bayesnas_book.space.graph import CellGraph, get_cell_graph
from bayesnas_book.space.supernet import CELL_TYPES

__all__ = [
    "Teacher",
    "build_teacher",
    "genotype_mask",
    "label_balance",
    "planted_genotype",
    "teacher_search_data",
]

K1, K2 = "c_{k-1}", "c_{k-2}"


def planted_genotype() -> Genotype:
    """The planted cells: 5 (edge, op) pairs in the normal cell, 4 in the reduction cell.

    Every edge exists in both the ``bayesnas`` and the ``darts`` space. Normal: node 0 sums a
    3x3 separable conv of ``c_{k-1}`` and a skip of ``c_{k-2}``, node 1 max-pools ``c_{k-1}``,
    node 2 is empty, node 3 sums a 5x5 separable conv of ``c_{k-2}`` and a dilated conv of
    node 0. Reduction: node 0 <- ``c_{k-1}`` (5x5 sep conv) and ``c_{k-2}`` (avg pool),
    node 1 <- node 0 (skip), node 2 <- ``c_{k-2}`` (max pool), node 3 empty.
    """
    normal = genotype_from_inputs([
        [(K1, ["sep_conv_3x3"], 1), (K2, ["skip_connect"], 1)],
        [(K1, ["max_pool_3x3"], 1)],
        [],
        [(K2, ["sep_conv_5x5"], 1), ("node_0", ["dil_conv_3x3"], 1)],
    ])
    reduction = genotype_from_inputs([
        [(K1, ["sep_conv_5x5"], 2), (K2, ["avg_pool_3x3"], 2)],
        [("node_0", ["skip_connect"], 1)],
        [(K2, ["max_pool_3x3"], 2)],
        [],
    ])
    return Genotype(normal, reduction, "bayesnas", {"rule": "planted"})


def genotype_mask(graph: CellGraph, cell: CellGenotype) -> torch.Tensor:
    """The switches ``cell`` keeps on ``graph``, ``(E, 1 + K)`` bool (column 0: the edge).

    Raises:
        ValueError: if the cell uses an edge or an op the graph lacks.
    """
    # experiments imports search: import it here, so this module stays light
    from bayesnas_book.experiments import genotype_keep

    return genotype_keep(graph, cell)


@dataclass
class Teacher:
    """The planted cells' network, with frozen random weights and fixed BN statistics.

    Attributes:
        network: the evaluation network of the planted cells (eval mode, no gradients).
        genotype: the planted genotype.
        mean, std: ``(num_classes,)`` logit statistics over all the digits (the calibration).
    """

    network: EvalNetwork
    genotype: Genotype
    mean: torch.Tensor
    std: torch.Tensor

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Calibrated logits ``(B, num_classes)`` of ``images`` ``(B, C, H, W)``."""
        z = self.network(images.to(self.mean.dtype))
        return (z - self.mean) / self.std

    def labels(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's labels ``(B,)`` int64: argmax of the calibrated logits."""
        return self.logits(images).argmax(dim=1)


def _calibrate_batchnorm(network: nn.Module, images: torch.Tensor) -> None:
    """Running BN statistics := those of one pass over ``images`` (all of them, one batch)."""
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one batch gives exactly its statistics
    network.train()
    with torch.no_grad():
        network(images)
    network.eval()


def build_teacher(
    config: RunConfig, genotype: Genotype | None = None, teacher_seed: int = 0
) -> Teacher:
    """The teacher with ``config``'s supernet shape (``search.channels``, ``layout``) on the digits.

    Args:
        config: the run's configuration; ``search.space`` must hold the planted cells.
        genotype: the planted cells (default :func:`planted_genotype`).
        teacher_seed: seeds the teacher's random weights (independent of the search seeds).

    Raises:
        ValueError: if ``config.data.dataset`` is not ``"digits"``, ``teacher_seed`` is negative,
            or the genotype uses an edge or op the space lacks.
    """
    if config.data.dataset != "digits":
        raise ValueError("the recovery teacher labels the shipped digits (data.dataset = "
                         f"\"digits\"), got {config.data.dataset!r}")
    if isinstance(teacher_seed, bool) or not isinstance(teacher_seed, int) or teacher_seed < 0:
        raise ValueError(f"`teacher_seed` must be an integer >= 0, got {teacher_seed!r}")
    genotype = genotype if genotype is not None else planted_genotype()
    search = config.search
    for kind in CELL_TYPES:  # the planted cells must be points of the searched space
        genotype_mask(get_cell_graph(f"{search.space}_{kind}"), getattr(genotype, kind))
    stem_channels = search.stem_multiplier * search.channels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(teacher_seed)
        stem = nn.Conv2d(1, stem_channels, 3, padding=1, bias=False)
        network = EvalNetwork(genotype, stem, (stem_channels, stem_channels), False,
                              search.channels, search.layout, 10)
    network = network.to(torch.get_default_dtype())
    for p in network.parameters():
        p.requires_grad_(False)
    images, _ = load_digits()
    _calibrate_batchnorm(network, images)
    with torch.no_grad():
        z = network(images)  # (1797, 10)
    return Teacher(network, genotype, z.mean(0), z.std(0))


def _relabel(dataset: TensorDataset, teacher: Teacher) -> TensorDataset:
    images = dataset.tensors[0]
    return TensorDataset(images, teacher.labels(images))


def teacher_search_data(
    config: RunConfig, teacher: Teacher
) -> tuple[SearchData, dict[str, TensorDataset]]:
    """The digits splits of ``config`` with the teacher's labels, cut as a search cuts them.

    Returns:
        ``(search_data, splits)``: the warm-up / switch / validation parts every method uses (cut
        as :func:`~bayesnas_book.search_data.build_search_data` cuts the digits), and the
        relabelled ``{"train", "validation", "test"}`` splits.
    """
    parts = run_digits_splits(config.data)
    splits = {name: _relabel(part, teacher) for name, part in parts.items()}
    train = splits["train"]
    fraction = config.search.warmup_fraction
    warmup_idx, switch_idx = disjoint_split(len(train), [fraction, 1.0 - fraction],
                                            seed=config.data.split_seed)
    data = SearchData(warmup=Subset(train, warmup_idx.tolist()),
                      switch=Subset(train, switch_idx.tolist()), validation=splits["validation"],
                      in_channels=1, num_classes=10, image_size=8)
    return data, splits


def label_balance(labels: torch.Tensor, num_classes: int = 10) -> dict[str, float | list[int]]:
    """How evenly the teacher spreads its labels.

    Args:
        labels: ``(N,)`` int64 labels in ``0 .. num_classes - 1``.

    Returns:
        ``counts`` per class, ``smallest`` and ``largest`` class shares, and ``entropy_ratio``,
        the label entropy over ``log(num_classes)`` (1 for perfectly balanced labels).

    Raises:
        ValueError: for empty labels or labels outside the class range.
    """
    if labels.numel() == 0:
        raise ValueError("`labels` is empty; give at least one label")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"`labels` must lie in 0..{num_classes - 1}, got {low}..{high}")
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"counts": [int(c) for c in counts], "smallest": float(p.min()),
            "largest": float(p.max()), "entropy_ratio": float(entropy / torch.tensor(
                float(num_classes), dtype=torch.float64).log())}
