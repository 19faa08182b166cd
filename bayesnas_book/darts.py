r"""DARTS, first order, on the supernet of the BayesNAS book: the baseline of chapter 12.

DARTS (Liu, Simonyan, Yang, ICLR 2019) relaxes each edge ``e`` to a softmax mixture of its
candidate ops and the ``none`` op (the zero op)::

    w_e = softmax(alpha_e) over (none, o_1, ..., o_K),      y_e = sum_k w_e^k o_k(x)

with one ``alpha`` ``(E, 1 + K)`` per cell type, shared by every cell of that type. It runs on
the same :class:`~bayesnas_book.space.supernet.Supernet` as BayesNAS: the switches are not trained
but *set* from ``alpha`` on every forward (parent switch 1, child switch of op ``k`` = ``w_e^k``;
``none`` adds nothing, so its weight is the mass taken from the real ops, the role the parent
switch plays for BayesNAS). The bilevel problem is solved first order, alternating:

1. one Adam step on ``alpha`` for the cross-entropy of a batch of the *alpha* split;
2. one SGD step on the weights for the cross-entropy of a batch of the *weight* split.

The two splits are the halves of the search's switch split, so DARTS sees the same images as the
switch epochs of BayesNAS, and does the same number of forward-backward passes per epoch. Warm-up
epochs (weights only, ``alpha`` fixed at its start) come first, as in Algorithm 1.

Derivation (DARTS's rule): per node the 2 incoming edges whose strongest non-``none`` op weighs
most, each with that op (:func:`~bayesnas_book.space.derive.magnitude_cell` on the mixing weights).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.utils.data import Dataset, Subset

from bayesnas_book.config import RunConfig
from bayesnas_book.curvature.exact import batchnorm_stats_frozen
from bayesnas_book.data import disjoint_split
from bayesnas_book.search_data import SearchData, epoch_loader, take
from bayesnas_book.seeding import seed_everything
from bayesnas_book.space.derive import magnitude_cell
from bayesnas_book.space.genotype import CellGenotype, Genotype
from bayesnas_book.space.graph import CellGraph
from bayesnas_book.space.supernet import CELL_TYPES, Supernet, SupernetSpec

__all__ = ["DartsResult", "DartsRun", "darts_cell", "mixing_switches", "run_darts"]


def mixing_switches(alpha: torch.Tensor) -> torch.Tensor:
    """The switch values that make the supernet a DARTS mixture.

    Args:
        alpha: ``(E, 1 + K)``, column 0 the ``none`` op.

    Returns:
        ``(E, 1 + K)`` in the switch layout: column 0 (parent) 1, column ``k`` the softmax weight
        of op ``k``; differentiable in ``alpha``.
    """
    w = torch.softmax(alpha, dim=-1)
    return torch.cat([torch.ones_like(w[:, :1]), w[:, 1:]], dim=1)


def darts_cell(graph: CellGraph, alpha: torch.Tensor, edges_per_node: int = 2) -> CellGenotype:
    """DARTS's derived cell from ``alpha`` ``(E, 1 + K)``: per node the ``edges_per_node`` edges
    whose strongest non-``none`` op weighs most, each with that op.

    Raises:
        ValueError: for a wrong shape or ``edges_per_node < 1``.
    """
    return magnitude_cell(graph, mixing_switches(alpha.detach()), edges_per_node=edges_per_node)


@dataclass
class DartsResult:
    """What a DARTS search returns.

    Attributes:
        genotype: the derived cells.
        alpha: per cell type, the final ``(E, 1 + K)`` architecture parameters.
        metrics: one record per epoch (phase, loss, alpha-split loss, validation accuracy).
    """

    genotype: Genotype
    alpha: dict[str, torch.Tensor]
    metrics: list[dict[str, Any]] = field(default_factory=list)


class DartsRun:
    """A first-order DARTS search on ``config``'s supernet.

    Args:
        config: the run configuration; ``search`` gives the supernet, the weight optimiser
            (``lr``, ``momentum``, ``weight_decay``) and the epochs (``warmup_epochs`` weights only,
            then ``rounds * switch_epochs`` bilevel epochs: the budget of Algorithm 1).
        data: the splits (the switch split is halved into the weight and the alpha split).
        arch_lr: Adam's learning rate on ``alpha`` (DARTS: 3e-4 for 50 epochs of 25k images).
        arch_weight_decay: Adam's weight decay on ``alpha`` (DARTS: 1e-3).

    Raises:
        ValueError: for a non-positive ``arch_lr``, a negative ``arch_weight_decay``, or a layout
            without both cell types.
    """

    def __init__(self, config: RunConfig, data: SearchData, arch_lr: float = 3e-3,
                 arch_weight_decay: float = 1e-3) -> None:
        if not arch_lr > 0:
            raise ValueError(f"`arch_lr` must be > 0, got {arch_lr!r}")
        if not arch_weight_decay >= 0:
            raise ValueError(f"`arch_weight_decay` must be >= 0, got {arch_weight_decay!r}")
        search = config.search
        if set(search.layout) != {"N", "R"}:
            raise ValueError(f"`search.layout` {search.layout!r} needs at least one N and one R "
                             "cell")
        self.config = config
        seed_everything(config.seed, deterministic=config.deterministic,
                        num_threads=config.num_threads, dtype=config.dtype)
        self.model = Supernet(SupernetSpec(
            in_channels=data.in_channels, num_classes=data.num_classes, channels=search.channels,
            layout=search.layout, stem_multiplier=search.stem_multiplier, space=search.space))
        for p in self.model.switch_parameters():
            p.requires_grad_(False)  # set from alpha on every forward, never trained
        self.alpha = {kind: torch.nn.Parameter(1e-3 * torch.randn(
            self.model.graphs[kind].num_edges, 1 + self.model.graphs[kind].num_ops))
            for kind in CELL_TYPES}
        halves = disjoint_split(len(data.switch), [0.5, 0.5], seed=config.data.split_seed)
        self.data = data
        self.weight_split: Dataset = Subset(data.switch, halves[0].tolist())
        self.alpha_split: Dataset = Subset(data.switch, halves[1].tolist())
        lr = search.lr * config.data.batch_size / search.reference_batch_size
        self.weight_optimizer = torch.optim.SGD(self.model.weight_parameters(), lr=lr,
                                                momentum=search.momentum,
                                                weight_decay=search.weight_decay)
        self.alpha_optimizer = torch.optim.Adam(list(self.alpha.values()), lr=arch_lr,
                                                betas=(0.5, 0.999), weight_decay=arch_weight_decay)
        self.dtype = next(self.model.parameters()).dtype  # images are cast to it
        self._names = {kind: self._switch_names(kind) for kind in CELL_TYPES}
        self.metrics: list[dict[str, Any]] = []

    def _switch_names(self, kind: str) -> list[list[str]]:
        """Per cell of ``kind``: ``names[e][c]`` names the switch of column ``c`` of edge e."""
        names = []
        for i in self.model.cell_indices(kind):
            cell = self.model.cells[i]
            names.append([[f"cells.{i}.edges.{e}.parent.value"]
                          + [f"cells.{i}.edges.{e}.switches.{op}.value" for op in edge.op_names]
                          for e, edge in enumerate(cell.edges)])
        return names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of the DARTS mixture, differentiable in ``alpha``."""
        overrides = {}
        for kind in CELL_TYPES:
            values = mixing_switches(self.alpha[kind])  # (E, 1 + K)
            for cell_names in self._names[kind]:
                for e, row in enumerate(cell_names):
                    overrides.update(zip(row, values[e], strict=True))
        return functional_call(self.model, overrides, (x.to(self.dtype),))

    def _epoch(self, index: int, bilevel: bool) -> dict[str, Any]:
        config = self.config
        dataset = self.weight_split if bilevel else self.data.warmup
        loader = epoch_loader(dataset, config.data.batch_size, config.seed, index)
        alpha_batches = None
        if bilevel:
            alpha_loader = epoch_loader(self.alpha_split, config.data.batch_size, config.seed,
                                        50_000 + index)
            batches = take(alpha_loader, config.search.max_batches_per_epoch)
            alpha_batches = itertools.cycle(list(batches))
        self.model.train()
        loss_sum = alpha_loss_sum = 0.0
        seen = 0
        for x, y in take(loader, config.search.max_batches_per_epoch):
            if alpha_batches is not None:  # first order: ignores how w depends on alpha
                xa, ya = next(alpha_batches)
                alpha_loss = F.cross_entropy(self.forward(xa), ya)
                self.alpha_optimizer.zero_grad(set_to_none=True)
                alpha_loss.backward()
                self.alpha_optimizer.step()
                alpha_loss_sum += float(alpha_loss.detach()) * ya.shape[0]
            loss = F.cross_entropy(self.forward(x), y)
            self.weight_optimizer.zero_grad(set_to_none=True)
            self.alpha_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.weight_optimizer.step()  # the weight step never moves alpha
            loss_sum += float(loss.detach()) * y.shape[0]
            seen += y.shape[0]
        seen = max(seen, 1)
        return {"phase": "bilevel" if bilevel else "warmup", "epoch": index,
                "loss": loss_sum / seen,
                "alpha_loss": alpha_loss_sum / seen if bilevel else None,
                "validation_accuracy": self.evaluate()}

    @torch.no_grad()
    def evaluate(self) -> float:
        """Top-1 accuracy of the mixture on the validation split (BN with batch statistics)."""
        self.model.train()
        correct = seen = 0
        with batchnorm_stats_frozen(self.model):
            for x, y in epoch_loader(self.data.validation, 256, 0, 0, shuffle=False):
                correct += int((self.forward(x).argmax(1) == y).sum())
                seen += y.shape[0]
        return correct / max(seen, 1)

    def run(self, on_epoch: Callable[[DartsRun, int], None] | None = None) -> DartsResult:
        """All epochs, then the derived genotype."""
        search = self.config.search
        phases = [False] * search.warmup_epochs + [True] * (search.rounds * search.switch_epochs)
        for index, bilevel in enumerate(phases):
            self.metrics.append(self._epoch(index, bilevel))
            if on_epoch is not None:
                on_epoch(self, index)
        return DartsResult(self.genotype(), {k: v.detach().clone() for k, v in self.alpha.items()},
                           self.metrics)

    def genotype(self) -> Genotype:
        """The cells DARTS's rule derives from the current ``alpha``."""
        cells = {kind: darts_cell(self.model.graphs[kind], self.alpha[kind]) for kind in CELL_TYPES}
        return Genotype(cells["normal"], cells["reduction"], self.config.search.space,
                        {"rule": "darts", "seed": self.config.seed})


def run_darts(config: RunConfig, data: SearchData, arch_lr: float = 3e-3,
              arch_weight_decay: float = 1e-3) -> DartsResult:
    """Run a first-order DARTS search (see :class:`DartsRun`) and return its result."""
    return DartsRun(config, data, arch_lr=arch_lr, arch_weight_decay=arch_weight_decay).run()
