"""The proxyless tree supernet: switched tree cells in every unit of a PyramidNet, not shared.

ProxylessNAS (Cai, Zhu and Han, ICLR 2019, Sections 1 and 3) searches on the target network
itself: every unit of the PyramidNet backbone (:mod:`bayesnas_book.models.pyramidnet`) has its own
tree cell (:mod:`bayesnas_book.space.tree_cell`) whose edges carry all candidate ops behind
BayesNAS switches. Cells are not shared, so each cell is its own *cell type* for the Bayesian
machinery: cell ``k`` is the type ``"cell_kk"`` with one member, and gets its own ARD groups,
Laplace update and pruning. :class:`TreeSupernet` offers the interface :mod:`bayesnas_book.search`
drives (``cell_types``, ``graphs``, ``cell_indices``, ``switch_values``, ``load_switch_values``,
``switch_modules``, ``switch_parameters``, ``weight_parameters``), so Algorithm 1 runs on it
unchanged.

**Memory.** With ``checkpoint=True`` each unit's forward runs under
:func:`torch.utils.checkpoint.checkpoint` while gradients are recorded: only the unit inputs are
stored, and each unit's forward is run again in the backward. The computed function is the same,
so every gradient and every curvature estimate is the same number (chapter 13 checks it); the cost
is one more forward per unit. Path sampling (ProxylessNAS's binarised paths) would instead change
the network whose curvature is measured: a switch whose op is not sampled gets no curvature that
step.

.. note::
   Under checkpointing the recomputed forward updates the BatchNorm running statistics a second
   time. The search never reads them (the supernet is evaluated and its curvature taken with batch
   statistics), and the derived network is trained from scratch.

Shapes: ``forward(x: (B, in, H, W)) -> (B, classes)``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from bayesnas_book.atomic import atomic_write_bytes
from bayesnas_book.bayes.pruning import PruningResult
from bayesnas_book.models.pyramidnet import PyramidNet, PyramidNetSpec
from bayesnas_book.space.graph import CellGraph
from bayesnas_book.space.tree_cell import TreeCell, flatten_tree, get_tree, tree_graph
from bayesnas_book.space.tree_ops import PROXYLESS_OPS

__all__ = [
    "TreeGenotype",
    "TreeSupernet",
    "build_tree_network",
    "build_tree_supernet",
    "load_tree_genotype",
]


def _is_switch(name: str) -> bool:
    return name.endswith(".value") and (".parent." in name or ".switches." in name)


class TreeSupernet(nn.Module):
    """A PyramidNet whose every unit has its own switched tree cell.

    Args:
        spec: the backbone.
        shape: the tree shape's name (``"treecell_a"``).
        ops: the candidate ops of every edge (default the ProxylessNAS CIFAR ops).
        checkpoint: recompute each unit in the backward instead of storing its activations.
        root_bn: the BN on each root branch (:class:`~bayesnas_book.space.tree_cell.TreeCell`).
    """

    def __init__(
        self,
        spec: PyramidNetSpec,
        shape: str = "treecell_a",
        ops: tuple[str, ...] = PROXYLESS_OPS,
        checkpoint: bool = False,
        root_bn: bool = True,
    ) -> None:
        super().__init__()
        tree = get_tree(shape)
        self.shape, self.ops, self.checkpoint = shape, tuple(ops), bool(checkpoint)
        edges = flatten_tree(tree).num_edges
        self.net = PyramidNet(
            spec, lambda k, c, s: TreeCell(tree, c, s, [self.ops] * edges, True, root_bn)
        )
        self.spec = spec
        graph = tree_graph(tree, self.ops, name=shape)
        self.cell_types = tuple(f"cell_{k:02d}" for k in range(len(self.net.units)))
        self.graphs: dict[str, CellGraph] = {kind: graph for kind in self.cell_types}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = net.stem(x)
        for unit in net.units:
            if self.checkpoint and torch.is_grad_enabled():
                x = checkpoint(unit, x, use_reentrant=False)
            else:
                x = unit(x)
        return net.head(x)

    def cell_indices(self, kind: str) -> list[int]:
        """``[k]`` for the type ``"cell_kk"`` (one cell per type: cells are not shared)."""
        if kind not in self.graphs:
            raise ValueError(
                f"`kind` must be one of cell_00 .. {self.cell_types[-1]}, got {kind!r}"
            )
        return [self.cell_types.index(kind)]

    def switch_values(self, kind: str) -> torch.Tensor:
        """``(1, E, 1 + K)`` switch values of cell ``kind``, differentiable."""
        return self.net.units[self.cell_indices(kind)[0]].cell.switch_values().unsqueeze(0)

    @torch.no_grad()
    def load_switch_values(self, kind: str, values: torch.Tensor) -> None:
        """Overwrite cell ``kind``'s switches from a ``(1, E, 1 + K)`` tensor."""
        if values.dim() != 3 or values.shape[0] != 1:
            raise ValueError(
                f"`values` must have shape (1, E, 1 + K) for {kind}, got {tuple(values.shape)}"
            )
        self.net.units[self.cell_indices(kind)[0]].cell.load_switch_values(values[0])

    def switch_modules(self, kind: str) -> list[nn.Module]:
        """Cell ``kind``'s switches in the flattened :meth:`switch_values` order."""
        modules: list[nn.Module] = []
        for edge in self.net.units[self.cell_indices(kind)[0]].cell.edges:
            modules.append(edge.parent)
            modules += [edge.switches[name] for name in edge.op_names]
        return modules

    def switch_parameters(self) -> list[nn.Parameter]:
        """Every switch parameter (the architecture parameters)."""
        return [p for name, p in self.named_parameters() if _is_switch(name)]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every other parameter (the network weights)."""
        return [p for name, p in self.named_parameters() if not _is_switch(name)]

    def derive_genotypes(
        self, pruning: dict[str, PruningResult], meta: dict[str, Any]
    ) -> tuple[TreeGenotype, TreeGenotype]:
        """The BayesNAS tree genotype (every kept (edge, op) pair) and the magnitude-rule one
        (per edge the op with the largest child switch, kept when the parent switch is the larger
        half of the cell's parents) of the current switches."""
        cells = []
        for kind in self.cell_types:
            keep = pruning[kind].keep  # (E, 1 + K)
            cells.append(
                [
                    [op for k, op in enumerate(self.ops) if keep[e, 0] and keep[e, 1 + k]]
                    for e in range(keep.shape[0])
                ]
            )
        bayes = TreeGenotype(self.shape, self.spec, cells, {**meta, "rule": "bayesnas"})
        magnitude = []
        for kind in self.cell_types:
            values = self.switch_values(kind)[0].detach().abs()  # (E, 1 + K)
            parents = values[:, 0]
            on = parents >= parents.median()
            magnitude.append(
                [
                    [self.ops[int(values[e, 1:].argmax())]] if on[e] else []
                    for e in range(len(parents))
                ]
            )
        return bayes, TreeGenotype(self.shape, self.spec, magnitude, {**meta, "rule": "magnitude"})


@dataclass
class TreeGenotype:
    """A derived tree network: per unit, per edge, the ops kept (empty: the edge is pruned).

    ``cells[k][e]`` lists unit ``k``'s edge ``e``'s ops (breadth-first edge order).
    """

    shape: str
    spec: PyramidNetSpec
    cells: list[list[list[str]]]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        spec = {
            k: getattr(self.spec, k)
            for k in (
                "depth",
                "alpha",
                "bottleneck",
                "start_channels",
                "groups",
                "in_channels",
                "num_classes",
            )
        }
        return {
            "space": "tree",
            "shape": self.shape,
            "backbone": spec,
            "cells": self.cells,
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the genotype as JSON, atomically."""
        return atomic_write_bytes(path, json.dumps(self.to_dict(), indent=1).encode("utf-8"))

    def kept_pairs(self) -> int:
        """Number of (edge, op) pairs kept over all cells."""
        return sum(len(ops) for cell in self.cells for ops in cell)

    def describe(self) -> str:
        """One line per cell: its kept (edge: ops)."""
        lines = [
            f"tree genotype ({self.shape}, depth {self.spec.depth}, alpha {self.spec.alpha:g}, "
            f"{self.meta.get('rule', '')}): {self.kept_pairs()} (edge, op) pairs kept"
        ]
        for k, cell in enumerate(self.cells):
            kept = ", ".join(f"{e}:{'+'.join(ops)}" for e, ops in enumerate(cell) if ops)
            lines.append(f"  unit {k:2d}: {kept or '(all edges pruned)'}")
        return "\n".join(lines)

    def draw(self, title: str = ""):
        """A matplotlib figure of every cell's tree (see :func:`bayesnas_book.viz_tree.draw_tree_genotype`)."""
        from bayesnas_book.viz_tree import draw_tree_genotype

        return draw_tree_genotype(self, title)


def load_tree_genotype(path: str | os.PathLike[str]) -> TreeGenotype:
    """Read a :class:`TreeGenotype` JSON file (``ValueError`` naming the file for a bad one)."""
    try:
        data = json.loads(Path(path).read_text())
        spec = PyramidNetSpec(**data["backbone"])
        genotype = TreeGenotype(data["shape"], spec, data["cells"], data.get("meta", {}))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a tree genotype ({error})") from None
    if data.get("space") != "tree":
        raise ValueError(f"{path}: not a tree genotype (space {data.get('space')!r})")
    return genotype


def build_tree_network(genotype: TreeGenotype, root_bn: bool = True) -> PyramidNet:
    """The derived network: the backbone with each unit's tree cell keeping only its kept ops.

    Raises:
        ValueError: if the genotype's cell count or edge count does not fit its backbone and tree.
    """
    tree = get_tree(genotype.shape)
    edges = flatten_tree(tree).num_edges
    units = 3 * genotype.spec.units_per_stage
    if len(genotype.cells) != units or any(len(cell) != edges for cell in genotype.cells):
        raise ValueError(
            f"the genotype must list {units} cells of {edges} edges for depth {genotype.spec.depth}, "
            f"got {len(genotype.cells)} cells"
        )
    return PyramidNet(
        genotype.spec, lambda k, c, s: TreeCell(tree, c, s, genotype.cells[k], False, root_bn)
    )


def build_tree_supernet(config: Any, in_channels: int, num_classes: int) -> TreeSupernet:
    """The supernet of ``config.tree`` for images with ``in_channels`` channels and ``num_classes`` classes."""
    tree = config.tree
    spec = PyramidNetSpec(
        depth=tree.depth,
        alpha=float(tree.alpha),
        bottleneck=tree.bottleneck,
        start_channels=tree.start_channels,
        in_channels=in_channels,
        num_classes=num_classes,
    )
    return TreeSupernet(spec, tree.shape, checkpoint=tree.checkpoint, root_bn=tree.root_bn)


# The fast curvature's rules for this space live in their own module, which needs the classes
# above; importing it here makes `method="recursion"` work wherever a tree supernet is built.
from bayesnas_book.space import tree_curvature as _tree_curvature  # noqa: E402, F401
