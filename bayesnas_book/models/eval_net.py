"""Evaluation networks built from a genotype: the CIFAR-10 net and the ImageNet mobile net.

Both follow the official released BayesNAS nets (the facts are in the
package's ``released_genotypes.json``):

* every cell input is preprocessed by ``[size reduction ->] BN -> ReLU -> 1x1 conv`` (the
  official ``CReduct``); the size reduction (the ``c_{k-2}`` of the cell after a reduction cell,
  at twice the resolution) is one ``1x1`` stride-2 conv, or for the lambda = 0.005 release two
  of them on shifted inputs, concatenated (``size_reduction="factorized"``);
* a node is the sum of its inputs, an input the sum of its ops (a BayesNAS cell keeps several
  ops per edge); the cell output concatenates the live nodes;
* channel dropout (``F.dropout2d``) on the output of every op, with the probability
  :attr:`drop_prob` ramped by the training engine (official: 0 -> 0.2 for CIFAR-10);
* CIFAR-10: stem ``3x3 conv 3 -> 3C`` (no BN), 20 cells with reductions after the 6th and 12th
  normal cell, head ``BN -> global average pool -> Linear`` (no ReLU);
* ImageNet: the DARTS stems (two stride-2 3x3 convs, then a third), 14 cells, head as above.

Options for comparison with DARTS: a DARTS auxiliary head (off in the official nets) and
drop-path on op outputs (the official nets have none).

Shapes: ``forward(x (B, 3, H, W)) -> logits (B, num_classes)``; with the auxiliary head in
training mode, ``(logits, auxiliary_logits)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bayesnas_book.space.genotype import CellGenotype, Genotype
from bayesnas_book.space.ops import build_op

__all__ = ["EvalCell", "EvalNetwork", "cifar_network", "drop_path", "imagenet_network"]


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Zero whole samples of ``x`` ``(B, ...)`` with probability ``drop_prob``, rescaling the rest."""
    if not training or drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], *([1] * (x.dim() - 1)), device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


class _SizeReduction(nn.Module):
    """Halve the resolution with 1x1 stride-2 convs (``in -> in`` channels), no BN or ReLU first."""

    def __init__(self, channels: int, factorized: bool) -> None:
        super().__init__()
        self.factorized = factorized
        if factorized:
            if channels % 2:
                raise ValueError(f"a factorized size reduction needs an even channel count, got {channels}")
            self.conv_a = nn.Conv2d(channels, channels // 2, 1, stride=2, bias=False)
            self.conv_b = nn.Conv2d(channels, channels // 2, 1, stride=2, bias=False)
        else:
            self.conv = nn.Conv2d(channels, channels, 1, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.factorized:
            return self.conv(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))  # the second conv sees the input shifted by one pixel
        return torch.cat([self.conv_a(x), self.conv_b(shifted)], dim=1)


def _preprocess(in_channels: int, out_channels: int, reduce_size: bool, factorized: bool) -> nn.Sequential:
    layers: list[nn.Module] = [_SizeReduction(in_channels, factorized)] if reduce_size else []
    layers += [nn.BatchNorm2d(in_channels), nn.ReLU(inplace=False), nn.Conv2d(in_channels, out_channels, 1, bias=False)]
    return nn.Sequential(*layers)


class EvalCell(nn.Module):
    """One cell of an evaluation network, built from a :class:`CellGenotype`.

    Args:
        cell: the genotype of this cell type.
        prev_prev_channels, prev_channels: channels of ``c_{k-2}`` and ``c_{k-1}``.
        channels: ``C``.
        reduce_prev_prev: ``c_{k-2}`` has twice the resolution of ``c_{k-1}``.
        factorized_reduction: the lambda = 0.005 release's two-conv size reduction.

    Shapes: ``forward(c_{k-2}, c_{k-1})`` -> ``(B, len(concat) * C, H', W')``.
    """

    def __init__(
        self,
        cell: CellGenotype,
        prev_prev_channels: int,
        prev_channels: int,
        channels: int,
        reduce_prev_prev: bool,
        factorized_reduction: bool = False,
    ) -> None:
        super().__init__()
        self.cell = cell
        self.pre0 = _preprocess(prev_prev_channels, channels, reduce_prev_prev, factorized_reduction)
        self.pre1 = _preprocess(prev_channels, channels, False, False)
        # ops[j][i][k]: op k of input i of node j
        self.ops = nn.ModuleList(
            nn.ModuleList(nn.ModuleList(build_op(op, channels, item.stride) for op in item.ops) for item in inputs)
            for inputs in cell.nodes
        )
        self.out_channels = len(cell.concat) * channels
        self.drop_prob = 0.0  # channel dropout on every op output (set by the training engine)
        self.drop_path_prob = 0.0

    def forward(self, prev_prev: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        states = {"c_{k-2}": self.pre0(prev_prev), "c_{k-1}": self.pre1(prev)}
        for j, inputs in enumerate(self.cell.nodes):
            node = None
            for item, ops in zip(inputs, self.ops[j]):
                for op in ops:
                    y = op(states[item.source])
                    if self.drop_prob > 0.0:
                        y = F.dropout2d(y, self.drop_prob, self.training)
                    if self.drop_path_prob > 0.0 and not isinstance(op, nn.Identity):
                        y = drop_path(y, self.drop_path_prob, self.training)
                    node = y if node is None else node + y
            if node is not None:
                states[f"node_{j}"] = node
        return torch.cat([states[f"node_{j}"] for j in self.cell.concat], dim=1)


class _AuxiliaryHead(nn.Module):
    """DARTS-style auxiliary classifier on an ``(B, C, 8, 8)`` (CIFAR) feature map."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class EvalNetwork(nn.Module):
    """A stem, a string of :class:`EvalCell` s (``layout``: ``N`` / ``R``) and a classifier head.

    Use :func:`cifar_network` or :func:`imagenet_network` rather than this constructor.
    """

    def __init__(
        self,
        genotype: Genotype,
        stem: nn.Module,
        stem_outputs: tuple[int, int],
        stem_reduces: bool,
        channels: int,
        layout: str,
        num_classes: int,
        factorized_reduction: bool = False,
        auxiliary: bool = False,
    ) -> None:
        super().__init__()
        if not layout or set(layout) - {"N", "R"}:
            raise ValueError(f"`layout` must be a string of N and R, got {layout!r}")
        self.genotype = genotype
        self.stem = stem
        prev_prev, prev = stem_outputs
        reduction_prev = stem_reduces
        cells = []
        self.auxiliary_position = (2 * len(layout)) // 3 if auxiliary else None
        auxiliary_channels = 0
        for index, letter in enumerate(layout):
            reduction = letter == "R"
            if reduction:
                channels *= 2
            cell = EvalCell(genotype.reduction if reduction else genotype.normal, prev_prev, prev, channels,
                            reduce_prev_prev=reduction_prev, factorized_reduction=factorized_reduction)
            cells.append(cell)
            prev_prev, prev, reduction_prev = prev, cell.out_channels, reduction
            if index == self.auxiliary_position:
                auxiliary_channels = prev
        self.cells = nn.ModuleList(cells)
        self.auxiliary_head = _AuxiliaryHead(auxiliary_channels, num_classes) if auxiliary else None
        self.head_bn = nn.BatchNorm2d(prev)
        self.classifier = nn.Linear(prev, num_classes)

    def set_drop_prob(self, drop_prob: float, drop_path_prob: float = 0.0) -> None:
        """Set the channel-dropout (and drop-path) probability of every op output."""
        if not 0.0 <= drop_prob < 1.0 or not 0.0 <= drop_path_prob < 1.0:
            raise ValueError(f"drop probabilities must be in [0, 1), got {drop_prob}, {drop_path_prob}")
        for cell in self.cells:
            cell.drop_prob, cell.drop_path_prob = drop_prob, drop_path_prob

    def _stem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.stem(x)
        return out if isinstance(out, tuple) else (out, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        s0, s1 = self._stem(x)
        auxiliary_logits = None
        for index, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if index == self.auxiliary_position and self.training and self.auxiliary_head is not None:
                auxiliary_logits = self.auxiliary_head(s1)
        features = F.adaptive_avg_pool2d(self.head_bn(s1), 1).flatten(1)  # BN -> global pool, no ReLU
        logits = self.classifier(features)
        return (logits, auxiliary_logits) if auxiliary_logits is not None else logits


def _layout(num_cells: int) -> str:
    """``num_cells`` cells with reductions at 1/3 and 2/3 of the depth (the DARTS macro layout)."""
    if num_cells < 3:
        raise ValueError(f"`num_cells` must be >= 3 (two reduction cells), got {num_cells}")
    reductions = {num_cells // 3, 2 * num_cells // 3}
    return "".join("R" if i in reductions else "N" for i in range(num_cells))


def _factorized(genotype: Genotype, size_reduction: str | None) -> bool:
    choice = size_reduction or genotype.metadata.get("official", {}).get("size_reduction", "conv")
    if choice not in ("conv", "factorized"):
        raise ValueError(f"`size_reduction` must be conv or factorized, got {choice!r}")
    return choice == "factorized"


class _CifarStem(nn.Sequential):
    pass


def cifar_network(
    genotype: Genotype,
    *,
    channels: int = 36,
    num_cells: int = 20,
    num_classes: int = 10,
    in_channels: int = 3,
    auxiliary: bool = False,
    size_reduction: str | None = None,
) -> EvalNetwork:
    """The CIFAR-10 evaluation network (official: 20 cells, C = 36, reductions at cells 6 and 13).

    Args:
        genotype: the cells.
        channels: ``C`` of the first stage.
        num_cells: cells in all (two are reduction cells, at 1/3 and 2/3 of the depth).
        num_classes: classifier outputs.
        in_channels: image channels (1 for grey-scale data such as the digits).
        auxiliary: add a DARTS auxiliary head (official nets: no).
        size_reduction: ``"conv"`` or ``"factorized"``; default: the genotype's official one, else conv.
    """
    stem = _CifarStem(nn.Conv2d(in_channels, 3 * channels, 3, padding=1, bias=False))
    return EvalNetwork(genotype, stem, (3 * channels, 3 * channels), False, channels, _layout(num_cells), num_classes,
                       _factorized(genotype, size_reduction), auxiliary)


class _ImageNetStems(nn.Module):
    """DARTS's ImageNet stems: ``224 -> 56`` (stem 0) and ``56 -> 28`` (stem 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, channels // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels // 2),
            nn.ReLU(inplace=False),
            nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.stem1 = nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


def imagenet_network(
    genotype: Genotype, *, channels: int = 48, num_cells: int = 14, num_classes: int = 1000, size_reduction: str | None = None
) -> EvalNetwork:
    """The ImageNet mobile network (official: 14 cells, C = 48, DARTS stems, 1000 classes).

    The first cell's ``c_{k-2}`` is stem 0's ``56 x 56`` output, reduced to ``28 x 28`` like the
    ``c_{k-2}`` of a cell after a reduction cell.
    """
    stems = _ImageNetStems(channels)
    return EvalNetwork(genotype, stems, (channels, channels), True, channels, _layout(num_cells), num_classes,
                       _factorized(genotype, size_reduction), False)
