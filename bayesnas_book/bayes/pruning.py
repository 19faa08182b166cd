"""Entropy pruning of the switches and the HARD structure of the derived cell.

A switch group with prior ``N(0, gamma)`` has differential entropy

    h(gamma) = 0.5 * log(2 * pi * e * gamma),

and BayesNAS prunes it when ``h <= 0``, i.e. when ``gamma <= 1 / (2 * pi * e) ~= 0.0585``
(the paper's entropy rule). The threshold is a parameter with that default. Pruning then follows the
HARD structure (:mod:`bayesnas_book.bayes.hard`), and every (edge, op) pair gets the reason it
went, checked in this order:

1. ``"entropy"``: its own child switch is at or below the threshold;
2. ``"parent pruned"``: its edge's parent switch is at or below the threshold;
3. ``"node disconnected"``: its edge leaves a node whose incoming edges are all off (node rule,
   applied to a fixed point).

An edge is kept when its parent and at least one op survive; an edge goes for ``"entropy"`` (its
parent), ``"all ops pruned"`` or ``"node disconnected"``. The derived cell keeps every surviving
(edge, op) pair, sums the ops of an edge, and concatenates the nodes that still have an input.

.. note::
    The official code has no pruning code; its cells were written by hand from saved gammas.
    The entropy rule is the paper's; the reasons and the node rule's fixed point are ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from bayesnas_book.bayes.hard import apply_node_rule, edge_alive, live_nodes
from bayesnas_book.space.graph import CellGraph

__all__ = [
    "ALL_OPS_PRUNED",
    "DEFAULT_THRESHOLD",
    "ENTROPY",
    "KEPT",
    "NODE_DISCONNECTED",
    "PARENT_PRUNED",
    "PruningError",
    "PruningResult",
    "entropy",
    "entropy_prune_mask",
    "prune",
]

#: 1 / (2 pi e): the gamma at which the entropy of N(0, gamma) is zero.
DEFAULT_THRESHOLD = 1.0 / (2.0 * math.pi * math.e)

KEPT = "kept"
ENTROPY = "entropy"
PARENT_PRUNED = "parent pruned"
NODE_DISCONNECTED = "node disconnected"
ALL_OPS_PRUNED = "all ops pruned"


class PruningError(ValueError):
    """Raised when pruning would leave a cell with no edge at all."""


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValueError(f"`threshold` must be a number in (0, inf), got {threshold!r}")
    if not 0 < threshold < math.inf:
        raise ValueError(f"`threshold` must be in (0, inf), got {threshold}")
    return float(threshold)


def entropy(prior_variance: Tensor) -> Tensor:
    """Differential entropy ``0.5 * log(2 pi e gamma)`` of ``N(0, gamma)``, elementwise.

    Args:
        prior_variance: gamma, any shape, > 0.

    Returns:
        Same shape as the input.
    """
    return 0.5 * torch.log(2 * math.pi * math.e * prior_variance)  # h = 0.5 log(2 pi e gamma)


def entropy_prune_mask(prior_variance: Tensor, threshold: float = DEFAULT_THRESHOLD) -> Tensor:
    """Which groups the entropy rule prunes: ``gamma <= threshold``.

    With the default threshold this is exactly ``entropy(gamma) <= 0``.

    Args:
        prior_variance: gamma, any shape.
        threshold: prune at or below this variance, in ``(0, inf)``.

    Returns:
        bool tensor, same shape as the input, True where pruned.

    Raises:
        ValueError: if ``threshold`` is not in ``(0, inf)`` or gamma has a NaN or negative entry.
    """
    threshold = _check_threshold(threshold)
    if bool(torch.isnan(prior_variance).any()) or bool((prior_variance < 0).any()):
        raise ValueError(
            f"`prior_variance` (gamma) must be >= 0 and not NaN, got min "
            f"{float(prior_variance.min())}"
        )
    return prior_variance <= threshold


@dataclass(frozen=True)
class PruningResult:
    """What pruning kept and why the rest went.

    Attributes:
        graph: the cell graph that was pruned.
        threshold: the gamma threshold used.
        keep: bool ``(E, 1 + K)``, the final keep mask (column 0 = edge kept).
        op_reasons: E rows of K reasons: ``"kept"``, ``"entropy"``, ``"parent pruned"`` or
            ``"node disconnected"``.
        edge_reasons: E reasons: ``"kept"``, ``"entropy"``, ``"all ops pruned"`` or
            ``"node disconnected"``.
        entropy: ``(E, 1 + K)``, the entropy of each group.
        live_nodes: bool ``(num_nodes,)``, the nodes that go into the cell's concatenation.
    """

    graph: CellGraph
    threshold: float
    keep: Tensor
    op_reasons: tuple[tuple[str, ...], ...]
    edge_reasons: tuple[str, ...]
    entropy: Tensor
    live_nodes: Tensor

    @property
    def kept_edges(self) -> Tensor:
        """bool ``(E,)``."""
        return self.keep[:, 0]

    @property
    def kept_ops(self) -> Tensor:
        """bool ``(E, K)``."""
        return self.keep[:, 1:]

    @property
    def concat(self) -> tuple[int, ...]:
        """Indices of the nodes concatenated into the cell output."""
        return tuple(int(j) for j in self.live_nodes.nonzero().flatten())

    def kept_pairs(self) -> list[tuple[str, int, str]]:
        """Surviving ``(source, target node, op)`` triples, in edge then op order."""
        g = self.graph
        return [
            (g.edges[e].source, g.edges[e].target, g.ops[k])
            for e in range(g.num_edges)
            for k in range(g.num_ops)
            if self.op_reasons[e][k] == KEPT
        ]

    def counts(self) -> dict[str, int]:
        """How many (edge, op) pairs each reason covers."""
        out = {r: 0 for r in (KEPT, ENTROPY, PARENT_PRUNED, NODE_DISCONNECTED)}
        for row in self.op_reasons:
            for reason in row:
                out[reason] += 1
        return out

    def summary(self) -> str:
        """A short text report: counts per reason, kept edges with their ops, the concat nodes."""
        lines = [
            f"{self.graph.name}: threshold {self.threshold:.4g}; "
            + ", ".join(f"{r}: {n}" for r, n in self.counts().items())
        ]
        for e, edge in enumerate(self.graph.edges):
            if self.edge_reasons[e] == KEPT:
                ops = [op for k, op in enumerate(self.graph.ops) if self.op_reasons[e][k] == KEPT]
                lines.append(f"  {edge.name}: {' + '.join(ops)}")
            else:
                lines.append(f"  {edge.name}: pruned ({self.edge_reasons[e]})")
        lines.append(f"  concat: {', '.join(f'node_{j}' for j in self.concat)}")
        return "\n".join(lines)


def prune(
    graph: CellGraph,
    prior_variance: Tensor,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    node_rule: bool = True,
    lambda_o: float | None = None,
    lambda_c: float | None = None,
    cell_type: str | None = None,
) -> PruningResult:
    """Prune one cell type by the entropy rule and the HARD structure.

    Args:
        graph: the cell graph.
        prior_variance: gamma after the last update (HARD-coupled), ``(E, 1 + K)``.
        threshold: prune groups with ``gamma <= threshold``, in ``(0, inf)``; default
            ``1 / (2 pi e)`` (entropy <= 0).
        node_rule: apply the node rule (off only to study what it changes).
        lambda_o: the run's parent penalty strength, only quoted in the error message.
        lambda_c: the run's child penalty strength, only quoted in the error message.
        cell_type: name quoted in the error message (default: the graph's name).

    Returns:
        A :class:`PruningResult`.

    Raises:
        ValueError: for a bad threshold, or a gamma of the wrong shape, with NaN or negative.
        PruningError: if every edge would be pruned; the message names lambda and the threshold
            and says what to lower.
    """
    E, K = graph.num_edges, graph.num_ops
    if not isinstance(prior_variance, Tensor) or tuple(prior_variance.shape) != (E, 1 + K):
        got = tuple(prior_variance.shape) if isinstance(prior_variance, Tensor) else prior_variance
        raise ValueError(
            f"`prior_variance` must have shape ({E}, {1 + K}) for {graph.name}, got {got}"
        )
    gamma = prior_variance.detach()
    if not gamma.is_floating_point():
        gamma = gamma.double()
    pruned = entropy_prune_mask(gamma, threshold)  # (E, 1+K)
    keep = ~pruned
    parent_kept = keep[:, 0]  # (E,)
    op_kept = keep[:, 1:] & parent_kept[:, None]  # (E, K): a pruned parent prunes all its ops
    on = edge_alive(torch.cat([parent_kept[:, None], op_kept], dim=1))  # (E,)
    on_final = apply_node_rule(graph, on) if node_rule else on
    if not bool(on_final.any()):
        lam = ", ".join(
            f"{name}={value:g}"
            for name, value in (("lambda_o", lambda_o), ("lambda_c", lambda_c))
            if value is not None
        )
        raise PruningError(
            f"entropy pruning (threshold={threshold:.4g}{', ' + lam if lam else ''}) would prune "
            f"every edge of the {cell_type or graph.name} cell (largest gamma "
            f"{float(gamma.max()):.3g}); lower the penalty strength lambda (lambda_o / lambda_c) "
            "and search again, or lower `threshold`"
        )
    op_reasons = []
    edge_reasons = []
    for e in range(E):
        row = []
        for k in range(K):
            if pruned[e, 1 + k]:
                row.append(ENTROPY)
            elif pruned[e, 0]:
                row.append(PARENT_PRUNED)
            elif not on_final[e]:
                row.append(NODE_DISCONNECTED)
            else:
                row.append(KEPT)
        op_reasons.append(tuple(row))
        if pruned[e, 0]:
            edge_reasons.append(ENTROPY)
        elif not on[e]:
            edge_reasons.append(ALL_OPS_PRUNED)
        elif not on_final[e]:
            edge_reasons.append(NODE_DISCONNECTED)
        else:
            edge_reasons.append(KEPT)
    final_keep = torch.cat([parent_kept[:, None], op_kept], dim=1) & on_final[:, None]  # (E, 1+K)
    return PruningResult(
        graph=graph,
        threshold=float(threshold),
        keep=final_keep,
        op_reasons=tuple(op_reasons),
        edge_reasons=tuple(edge_reasons),
        entropy=entropy(gamma.clamp_min(torch.finfo(gamma.dtype).tiny)),
        live_nodes=live_nodes(graph, on_final),
    )
