"""The PyramidNet bottleneck backbone, with a pluggable cell in place of each unit's 3x3 conv.

PyramidNet (Han, Kim and Kim, CVPR 2017, Section 3 and Table 1) widens every residual unit
by the same step instead of doubling widths at the stages. With ``U`` units per stage and 3
stages, unit ``k = 1 .. 3U`` has inner width

    c_k = round(16 + alpha * k / (3U)),  floored to a multiple of ``groups``

and output width ``4 c_k`` (the bottleneck). Depth ``d = 9U + 2`` (PyramidNet-164: U = 18). Layers
are in ``BN -> ReLU -> weight`` order, as in the path-level transformation paper's backbone
(Cai et al., ICML 2018, Section 5.1)::

    stem   3x3 conv (in -> 16) -> BN
    unit   BN -> 1x1 conv (f -> c)  ->  cell (c -> c, stride 2 in the first unit of stages 2, 3)
           -> BN -> ReLU -> 1x1 conv (c -> 4c) -> BN;   plus a shortcut: identity, or 2x2 average
           pool (stride 2), zero-padded with channels up to 4c
    head   BN -> ReLU -> global average pool -> linear (4 c_last -> classes)

The cell is built by ``cell_factory(unit_index, channels, stride)``; the plain backbone's cell is a
``BN -> ReLU -> 3x3 group conv``. ``forward(x: (B, in, H, W)) -> (B, classes)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bayesnas_book.space.tree_ops import build_tree_op

__all__ = [
    "CellFactory",
    "PyramidNet",
    "PyramidNetSpec",
    "PyramidUnit",
    "plain_cell",
    "unit_widths",
]

CellFactory = Callable[[int, int, int], nn.Module]
"""``cell_factory(unit_index, channels, stride) -> module (B, c, H, W) -> (B, c, H/stride, W/stride)``."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class PyramidNetSpec:
    """The backbone's shape.

    Args:
        depth: ``9U + 2`` for ``U`` bottleneck units per stage (164 -> 18 units).
        alpha: total widening of the inner width over the network (paper's best tree net: 84).
        bottleneck: the bottleneck unit (the only one built here).
        start_channels: the stem's width (16).
        groups: widths are floored to multiples of it (the 3x3 group conv's groups, 2).
        in_channels: image channels; num_classes: classifier outputs.

    Raises:
        ValueError: for a depth that is not ``9U + 2``, a negative or non-numeric alpha,
            ``bottleneck = False``, or widths that round to less than ``groups``.
    """

    depth: int = 164
    alpha: float = 84.0
    bottleneck: bool = True
    start_channels: int = 16
    groups: int = 2
    in_channels: int = 3
    num_classes: int = 10

    def __post_init__(self) -> None:
        for name in ("depth", "start_channels", "groups", "in_channels", "num_classes"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if self.bottleneck is not True:
            raise ValueError(
                "only the bottleneck PyramidNet is built here; set bottleneck = true "
                "(depth 9U + 2, e.g. 164)"
            )
        if self.depth < 11 or (self.depth - 2) % 9:
            raise ValueError(
                f"`depth` must be 9U + 2 for U >= 1 bottleneck units per stage (11, 20, ..., 164), "
                f"got {self.depth}"
            )
        if (
            isinstance(self.alpha, bool)
            or not isinstance(self.alpha, (int, float))
            or not self.alpha >= 0
        ):
            raise ValueError(
                f"`alpha` must be a number >= 0 (the total widening), got {self.alpha!r}"
            )
        widths = unit_widths(self)
        if min(widths) < self.groups:
            raise ValueError(
                f"alpha = {self.alpha} gives a unit width {min(widths)} < groups = {self.groups}; "
                "raise start_channels or alpha"
            )

    @property
    def units_per_stage(self) -> int:
        return (self.depth - 2) // 9


def unit_widths(spec: PyramidNetSpec) -> list[int]:
    """Inner widths ``c_k`` of the ``3U`` units, in order (accumulated in floating point, as built)."""
    units = 3 * ((spec.depth - 2) // 9)
    step = spec.alpha / units
    planes, widths = float(spec.start_channels), []
    for _ in range(units):
        planes += step
        width = int(round(planes))
        widths.append(width - width % spec.groups)
    return widths


def plain_cell(groups: int) -> CellFactory:
    """The plain backbone's cell: ``BN -> ReLU -> 3x3 conv`` in ``groups`` groups."""
    if groups != 2:

        def build(index: int, channels: int, stride: int) -> nn.Module:
            return nn.Sequential(
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=False),
                nn.Conv2d(
                    channels, channels, 3, stride=stride, padding=1, groups=groups, bias=False
                ),
            )

        return build
    return lambda index, channels, stride: build_tree_op("group_conv_3x3", channels, stride)


class PyramidUnit(nn.Module):
    """One bottleneck unit: ``shortcut(x) (zero-padded) + BN(out_bottle(cell(in_bottle(x))))``.

    Shapes: ``(B, f, H, W) -> (B, 4c, H / stride, W / stride)``.
    """

    def __init__(self, in_channels: int, channels: int, stride: int, cell: nn.Module) -> None:
        super().__init__()
        self.in_channels, self.channels, self.stride = in_channels, channels, stride
        self.in_bottle = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, channels, 1, bias=False)
        )
        self.cell = cell
        self.out_bottle = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, 4 * channels, 1, bias=False),
            nn.BatchNorm2d(4 * channels),
        )
        self.shortcut = nn.AvgPool2d(2, stride=2) if stride == 2 else nn.Identity()

    @property
    def out_channels(self) -> int:
        return 4 * self.channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.out_bottle(self.cell(self.in_bottle(x)))
        short = self.shortcut(x)
        extra = y.shape[1] - short.shape[1]
        if extra < 0:
            raise ValueError(
                f"a unit cannot narrow the network: {short.shape[1]} -> {y.shape[1]} channels"
            )
        return y + F.pad(short, (0, 0, 0, 0, 0, extra))  # zero channels appended to the shortcut


class PyramidNet(nn.Module):
    """The backbone of :class:`PyramidNetSpec` with the cells of ``cell_factory``.

    Args:
        spec: the shape.
        cell_factory: builds unit ``k``'s cell (default: :func:`plain_cell`).
    """

    def __init__(self, spec: PyramidNetSpec, cell_factory: CellFactory | None = None) -> None:
        super().__init__()
        self.spec = spec
        factory = cell_factory or plain_cell(spec.groups)
        s = spec.start_channels
        self.stem = nn.Sequential(
            nn.Conv2d(spec.in_channels, s, 3, padding=1, bias=False), nn.BatchNorm2d(s)
        )
        units, features = [], s
        for k, width in enumerate(unit_widths(spec)):
            stride = 2 if k > 0 and k % spec.units_per_stage == 0 else 1
            unit = PyramidUnit(features, width, stride, factory(k, width, stride))
            units.append(unit)
            features = unit.out_channels
        self.units = nn.ModuleList(units)
        self.head = nn.Sequential(
            nn.BatchNorm2d(features),
            nn.ReLU(inplace=False),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(features, spec.num_classes),
        )

    @property
    def cells(self) -> list[nn.Module]:
        """The units' cells, in order."""
        return [unit.cell for unit in self.units]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for unit in self.units:
            x = unit(x)
        return self.head(x)
