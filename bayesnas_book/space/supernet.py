"""The one-shot supernet: a stem, a string of switched cells, a classifier head.

Paper profile (the official search net): 8 cells ``N N R N N R N N``, ``C = 36``,
stem ``3x3 conv 3 -> 3C`` (no BN), every edge of every cell a
:class:`~bayesnas_book.space.edge.SwitchedEdge` with all 7 ops, head
``BN -> ReLU -> global average pool -> Linear``. A reduction cell doubles ``C``. Each cell keeps
its own switches; the ARD prior is shared across the cells of one type (the HARD groups of
:mod:`bayesnas_book.bayes.hard`), so the supernet hands out switch values per cell type as one
tensor ``(num_cells_of_type, E, 1 + K)``.

Shapes: ``forward(x: (B, in_channels, H, W)) -> logits (B, num_classes)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bayesnas_book.curvature.recursion import gn_backward
from bayesnas_book.space.cell import SearchCell
from bayesnas_book.space.graph import get_cell_graph

__all__ = ["CELL_TYPES", "Supernet", "SupernetSpec"]

CELL_TYPES = ("normal", "reduction")


@dataclass(frozen=True)
class SupernetSpec:
    """The shape of a supernet.

    Args:
        in_channels: image channels (3 for CIFAR-10, 1 for digits).
        num_classes: classifier outputs.
        channels: ``C`` of the first stage.
        layout: one letter per cell, ``N`` normal or ``R`` reduction (paper: ``"NNRNNRNN"``).
        stem_multiplier: the stem outputs ``stem_multiplier * C`` channels (official: 3).
        space: ``"bayesnas"`` (8 edges per cell) or ``"darts"`` (14 edges).
        fused_edges: evaluate each edge's convolution ops channel-stacked
            (:class:`~bayesnas_book.space.fused_edge.FusedSwitchedEdge`): same parameters and
            outputs, fewer and larger kernels.
    """

    in_channels: int = 3
    num_classes: int = 10
    channels: int = 36
    layout: str = "NNRNNRNN"
    stem_multiplier: int = 3
    space: str = "bayesnas"
    fused_edges: bool = False

    def __post_init__(self) -> None:
        for name in ("in_channels", "num_classes", "channels", "stem_multiplier"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if not self.layout or set(self.layout) - {"N", "R"}:
            raise ValueError(f"`layout` must be a non-empty string of N (normal) and R (reduction), got {self.layout!r}")
        if self.space not in ("bayesnas", "darts"):
            raise ValueError(f"`space` must be bayesnas or darts, got {self.space!r}")
        if not isinstance(self.fused_edges, bool):
            raise ValueError(f"`fused_edges` must be true or false, got {self.fused_edges!r}")


class Supernet(nn.Module):
    """The switch-gated one-shot network of one search space.

    Args:
        spec: its :class:`SupernetSpec`.
    """

    def __init__(self, spec: SupernetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.graphs = {kind: get_cell_graph(f"{spec.space}_{kind}") for kind in CELL_TYPES}
        stem_channels = spec.stem_multiplier * spec.channels
        self.stem = nn.Sequential(nn.Conv2d(spec.in_channels, stem_channels, 3, padding=1, bias=False))
        prev_prev, prev, channels = stem_channels, stem_channels, spec.channels
        reduction_prev = False
        cells = []
        for letter in spec.layout:
            reduction = letter == "R"
            if reduction:
                channels *= 2
            graph = self.graphs["reduction" if reduction else "normal"]
            cell = SearchCell(graph, prev_prev, prev, channels, reduce_prev_prev=reduction_prev, fused_edges=spec.fused_edges)
            cells.append(cell)
            prev_prev, prev, reduction_prev = prev, cell.out_channels, reduction
        self.cells = nn.ModuleList(cells)
        self.head = nn.Sequential(
            nn.BatchNorm2d(prev),
            nn.ReLU(inplace=False),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(prev, spec.num_classes),
        )

    def cell_indices(self, kind: str) -> list[int]:
        """Positions of the cells of type ``kind`` (``"normal"`` or ``"reduction"``)."""
        if kind not in CELL_TYPES:
            raise ValueError(f"`kind` must be one of {', '.join(CELL_TYPES)}, got {kind!r}")
        letter = "R" if kind == "reduction" else "N"
        return [i for i, c in enumerate(self.spec.layout) if c == letter]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)  # both inputs of the first cell are the stem output
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.head(s1)

    def switch_values(self, kind: str) -> torch.Tensor:
        """``(num_cells_of_type, E, 1 + K)`` switch values of one cell type, differentiable."""
        return torch.stack([self.cells[i].switch_values() for i in self.cell_indices(kind)])

    @torch.no_grad()
    def load_switch_values(self, kind: str, values: torch.Tensor) -> None:
        """Overwrite the switches of one cell type from a ``(num_cells, E, 1 + K)`` tensor."""
        indices = self.cell_indices(kind)
        if values.dim() != 3 or values.shape[0] != len(indices):
            raise ValueError(f"`values` must have shape ({len(indices)}, E, 1 + K) for the {kind} cells, got {tuple(values.shape)}")
        for i, row in zip(indices, values):
            self.cells[i].load_switch_values(row)

    def switch_modules(self, kind: str) -> list[nn.Module]:
        """The :class:`~bayesnas_book.space.switch.Switch` modules of one cell type in the layout of
        :meth:`switch_values` flattened: per cell, per edge, the parent then the ops in order."""
        modules: list[nn.Module] = []
        for i in self.cell_indices(kind):
            for edge in self.cells[i].edges:
                modules.append(edge.parent)
                modules += [edge.switches[name] for name in edge.op_names]
        return modules

    def switch_parameters(self) -> list[nn.Parameter]:
        """Every switch parameter (the architecture parameters)."""
        return [p for name, p in self.named_parameters() if _is_switch(name)]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every other parameter (the network weights)."""
        return [p for name, p in self.named_parameters() if not _is_switch(name)]

    def gn_backward(self, H_logits: torch.Tensor) -> torch.Tensor:
        """Replay the forward in reverse for the diagonal GN sweep.

        Args:
            H_logits: ``(B, num_classes)``.

        Returns:
            The curvature at the stem output ``(B, 3C, H, W)``; the image's curvature is not
            needed by anything, so the stem conv is not swept.
        """
        H_last = gn_backward(self.head, H_logits)
        num = len(self.cells)
        # H_states[i]: curvature at state i; states 0 and 1 are both the stem output
        H_states: list[torch.Tensor | None] = [None] * (num + 2)
        H_states[num + 1] = H_last
        for i in reversed(range(num)):
            H0, H1 = self.cells[i].gn_backward_inputs(H_states[i + 2])
            for index, H in ((i, H0), (i + 1, H1)):
                H_states[index] = H if H_states[index] is None else H_states[index] + H
        return H_states[0] + H_states[1]


def _is_switch(name: str) -> bool:
    return name.endswith(".value") and (".parent." in name or ".switches." in name)
