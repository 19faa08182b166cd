"""Genotypes: the cells a search derives, as data (JSON round trip, named official cells).

A BayesNAS cell is not a DARTS cell. BayesNAS keeps *every* surviving (edge, op) pair: several
ops on one edge are summed, an intermediate node sums its incoming edges, whole edges may vanish,
and a node that lost every input is dropped from the output concatenation (the paper's derived cells).
So a :class:`CellGenotype` lists, for each intermediate node, its inputs, each a source with one
or more ops::

    node_j = sum over inputs i of node j:  sum over ops o of input i:  o(x_source(i))

A :class:`Genotype` holds the normal and the reduction cell. The official released cells load
by name (:func:`get_genotype`, :func:`genotype_names`) from the package's own copy of the facts
(``bayesnas_book/space/released_genotypes.json``), with the parameter and MAC counts of the
official evaluation networks they define.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bayesnas_book.atomic import atomic_write_bytes
from bayesnas_book.space.graph import BAYESNAS_OPS, CELL_INPUTS, node_name

__all__ = [
    "CellGenotype",
    "Genotype",
    "GenotypeError",
    "NodeInput",
    "genotype_names",
    "get_genotype",
    "load_genotype",
    "save_genotype",
]

FORMAT_VERSION = 1


class GenotypeError(ValueError):
    """A genotype, or a genotype file, is malformed; the message names where and why."""


@dataclass(frozen=True)
class NodeInput:
    """One input of an intermediate node: ``sum over ops of op(x_source)``.

    Args:
        source: a cell input (``"c_{k-2}"``, ``"c_{k-1}"``) or an earlier node ``"node_i"``.
        ops: one or more candidate op names, summed.
        stride: 2 for inputs that leave a cell input in a reduction cell, else 1.
    """

    source: str
    ops: tuple[str, ...]
    stride: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "ops": list(self.ops), "stride": self.stride}


def _stride_error(node: int, item: NodeInput, expected: int, rule: str) -> str:
    """The message for ``item`` (an input of ``node``) whose stride should be ``expected``."""
    ops = f"{'ops' if len(item.ops) > 1 else 'op'} {', '.join(item.ops)}"
    return (f"node_{node} input {item.source!r} ({ops}) has stride {item.stride}; {rule}: "
            f'set "stride": {expected} on this input')


def _check_cell_strides(cell: CellGenotype, reduction: bool) -> None:
    """The space's stride rule (as :class:`~bayesnas_book.space.graph.CellGraph` enforces it on edges).

    Every node of a cell has one spatial size: in a normal cell every edge has stride 1; in a
    reduction cell the edges leaving a cell input have stride 2 and the edges between nodes stride 1.
    A stride that breaks it would only surface later as a tensor-shape error inside the network.

    Raises:
        GenotypeError: naming the node, the input and its ops, and the stride to set.
    """
    for j, inputs in enumerate(cell.nodes):
        for item in inputs:
            if not reduction and item.stride != 1:
                raise GenotypeError(_stride_error(j, item, 1, "a normal cell keeps the resolution, every edge has stride 1 "
                                                             "(stride 2 belongs on the reduction cell's edges from a cell input)"))
            if reduction and item.source in CELL_INPUTS and item.stride != 2:
                raise GenotypeError(_stride_error(j, item, 2, "an edge from a cell input in a reduction cell halves the "
                                                             "resolution (every node must have the same spatial size)"))


@dataclass(frozen=True)
class CellGenotype:
    """A derived cell: ``nodes[j]`` is the tuple of inputs of intermediate node ``j``.

    Args:
        nodes: per intermediate node, its :class:`NodeInput` s (a node may have none: it was
            pruned away and must then be absent from ``concat``).
        concat: the nodes concatenated into the cell output, ascending.

    Raises:
        GenotypeError: for an unknown op, a source that is not a cell input or an earlier live
            node, a bad stride, a ``concat`` naming a dead or missing node, or a cell with no
            live node at all ("pruned to nothing").
    """

    nodes: tuple[tuple[NodeInput, ...], ...]
    concat: tuple[int, ...]
    ops_vocabulary: tuple[str, ...] = field(default=BAYESNAS_OPS, repr=False, compare=False)

    def __post_init__(self) -> None:
        nodes = tuple(tuple(i if isinstance(i, NodeInput) else NodeInput(**i) for i in n) for n in self.nodes)
        object.__setattr__(self, "nodes", tuple(tuple(NodeInput(i.source, tuple(i.ops), i.stride) for i in n) for n in nodes))
        object.__setattr__(self, "concat", tuple(self.concat))
        live = self.live_nodes
        if not live:
            raise GenotypeError("the cell was pruned to nothing: no intermediate node has an input")
        for j, inputs in enumerate(self.nodes):
            for item in inputs:
                where = f"node_{j} input {item.source!r}"
                if not item.ops:
                    raise GenotypeError(f"{where} has no op; drop the input instead")
                unknown = [o for o in item.ops if o not in self.ops_vocabulary]
                if unknown:
                    raise GenotypeError(f"{where}: unknown op {unknown[0]!r}; valid ops: {', '.join(self.ops_vocabulary)}")
                if item.stride not in (1, 2):
                    raise GenotypeError(f"{where}: stride must be 1 or 2, got {item.stride!r}")
                if item.source in CELL_INPUTS:
                    continue
                if item.source.startswith("node_") and item.source[5:].isdigit():
                    i = int(item.source[5:])
                    if i >= j:
                        raise GenotypeError(f"{where}: a node input must come from an earlier node")
                    if i not in live:
                        raise GenotypeError(f"{where}: node_{i} has no input of its own (prune this input too)")
                    if item.stride != 1:
                        raise GenotypeError(_stride_error(j, item, 1, "an edge between nodes keeps the resolution"))
                    continue
                raise GenotypeError(f"{where}: source must be one of {', '.join(CELL_INPUTS)} or node_i")
        if list(self.concat) != sorted(set(self.concat)):
            raise GenotypeError(f"concat must list distinct nodes in ascending order, got {list(self.concat)}")
        dead = [j for j in self.concat if j not in live]
        if dead:
            raise GenotypeError(f"concat lists node_{dead[0]}, which has no input (or does not exist)")

    @property
    def live_nodes(self) -> tuple[int, ...]:
        """Indices of the nodes that have at least one input."""
        return tuple(j for j, inputs in enumerate(self.nodes) if inputs)

    def edges(self) -> list[tuple[str, int, str]]:
        """Every surviving ``(source, node, op)`` triple, in node then input order."""
        return [(i.source, j, op) for j, inputs in enumerate(self.nodes) for i in inputs for op in i.ops]

    @property
    def is_reduction(self) -> bool:
        return any(i.stride == 2 for n in self.nodes for i in n)

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": [[i.to_dict() for i in n] for n in self.nodes], "concat": list(self.concat)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "cell") -> CellGenotype:
        try:
            nodes = tuple(
                tuple(NodeInput(str(i["source"]), tuple(i["ops"]), int(i.get("stride", 1))) for i in n)
                for n in data["nodes"]
            )
            concat = tuple(int(j) for j in data["concat"])
        except (KeyError, TypeError, ValueError) as error:
            raise GenotypeError(
                f"{where}: expected {{'nodes': [[{{'source', 'ops', 'stride'}}, ...], ...], 'concat': [...]}}, "
                f"problem: {error!r}"
            ) from None
        try:
            return cls(nodes, concat)
        except GenotypeError as error:
            raise GenotypeError(f"{where}: {error}") from None


@dataclass(frozen=True)
class Genotype:
    """The two derived cells of one search (or one official release).

    Args:
        normal: the normal cell.
        reduction: the reduction cell.
        space: the search space the cells come from (``"bayesnas"`` or ``"darts"``).
        metadata: free-form facts kept with the genotype (e.g. the lambda it was found with,
            official parameter counts); must be JSON-serialisable.

    Raises:
        GenotypeError: for a stride that breaks the space's rule (stride 2 in the normal cell or
            between nodes, stride 1 on a reduction cell's edge from a cell input), naming the cell,
            the node, the input and its ops.
    """

    normal: CellGenotype
    reduction: CellGenotype
    space: str = "bayesnas"
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for kind, cell, reduction in (("normal", self.normal, False), ("reduction", self.reduction, True)):
            try:
                _check_cell_strides(cell, reduction)
            except GenotypeError as error:
                raise GenotypeError(f"{kind} cell: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "space": self.space,
            "normal": self.normal.to_dict(),
            "reduction": self.reduction.to_dict(),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "genotype") -> Genotype:
        if not isinstance(data, Mapping):
            raise GenotypeError(f"{where}: expected a JSON object, got {type(data).__name__}")
        missing = [k for k in ("normal", "reduction") if k not in data]
        if missing:
            raise GenotypeError(f"{where}: missing key {missing[0]!r} (a genotype has 'normal' and 'reduction' cells)")
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise GenotypeError(f"{where}: format_version {version!r} is not supported (this library reads {FORMAT_VERSION})")
        normal = CellGenotype.from_dict(data["normal"], f"{where}, normal cell")
        reduction = CellGenotype.from_dict(data["reduction"], f"{where}, reduction cell")
        try:
            return cls(normal=normal, reduction=reduction, space=str(data.get("space", "bayesnas")),
                       metadata=dict(data.get("metadata", {})))
        except GenotypeError as error:
            raise GenotypeError(f"{where}, {error}") from None

    def describe(self) -> str:
        """A few human lines: each node's inputs and ops, per cell."""
        lines = []
        for kind, cell in (("normal", self.normal), ("reduction", self.reduction)):
            lines.append(f"{kind} cell (output = concat of {', '.join(node_name(j) for j in cell.concat)}):")
            for j, inputs in enumerate(cell.nodes):
                terms = " + ".join(f"{'+'.join(i.ops)}({i.source})" for i in inputs) or "(pruned)"
                lines.append(f"  {node_name(j)} = {terms}")
        return "\n".join(lines)


def save_genotype(genotype: Genotype, path: str | os.PathLike[str]) -> Path:
    """Write ``genotype`` as JSON, atomically (a temporary file, fsync, then rename)."""
    return atomic_write_bytes(path, json.dumps(genotype.to_dict(), indent=1).encode("utf-8"))


def load_genotype(path_or_name: str | os.PathLike[str]) -> Genotype:
    """A genotype from a JSON file, or a registered name such as ``"bayesnas_cifar10_lambda0.01"``.

    Raises:
        GenotypeError: if the file is missing, is not JSON, or does not describe a valid genotype
            (the message names the file and the problem); or the name is unknown.
    """
    text = str(path_or_name)
    if text in _released():
        return get_genotype(text)
    path = Path(path_or_name)
    if not path.is_file():
        raise GenotypeError(
            f"{path} is neither a genotype file nor a known name; known names: {', '.join(genotype_names())}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GenotypeError(f"{path} is not valid JSON ({error}); was it written by save_genotype?") from None
    return Genotype.from_dict(data, where=str(path))


def _released() -> dict[str, Any]:
    with resources.files("bayesnas_book.space").joinpath("released_genotypes.json").open("r", encoding="utf-8") as handle:
        return json.load(handle)["genotypes"]


def genotype_names() -> tuple[str, ...]:
    """Names of the official released genotypes."""
    return tuple(sorted(_released()))


def get_genotype(name: str) -> Genotype:
    """An official released genotype by name; its ``metadata["official"]`` holds the official
    network's file, parameter count and MACs.

    Raises:
        GenotypeError: for an unknown name, listing the valid ones.
    """
    released = _released()
    if name not in released:
        raise GenotypeError(f"unknown genotype {name!r}; valid names: {', '.join(sorted(released))}")
    entry = released[name]
    genotype = Genotype.from_dict({k: entry[k] for k in ("normal", "reduction", "space")}, where=name)
    return Genotype(genotype.normal, genotype.reduction, genotype.space, {"name": name, "official": entry["official"]})


def genotype_from_inputs(nodes: Sequence[Sequence[tuple[str, Sequence[str], int]]]) -> CellGenotype:
    """A cell from plain tuples ``[[(source, ops, stride), ...], ...]``; every live node is concatenated."""
    cell_nodes = tuple(tuple(NodeInput(s, tuple(o), st) for s, o, st in node) for node in nodes)
    return CellGenotype(cell_nodes, tuple(j for j, n in enumerate(cell_nodes) if n))
