"""The searched cell: two preprocessed inputs, switched edges on a cell graph, concatenated nodes.

For a :class:`~bayesnas_book.space.graph.CellGraph` with nodes ``0 .. n-1``::

    x_{k-2} = pre0(c_{k-2}),  x_{k-1} = pre1(c_{k-1})             (B, C, H, W) each
    node_j  = sum over edges e = (i -> j):  y_e(x_i)             y_e: a SwitchedEdge
    output  = concat(node_0, ..., node_{n-1})                    (B, n C, H', W')

Each cell input is preprocessed as in the official nets (the official code's
``CReduct``): ``BN -> ReLU -> 1x1 conv`` to ``C`` channels, preceded by a ``1x1`` stride-2 conv when
``c_{k-2}`` has twice the resolution of ``c_{k-1}`` (the cell after a reduction cell).

The cell joins the fast curvature sweep (:mod:`bayesnas_book.curvature.recursion`) with
:meth:`SearchCell.gn_backward_inputs`, which replays the forward in reverse and returns the
curvature at both cell inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from bayesnas_book.curvature.recursion import gn_backward
from bayesnas_book.space.edge import SwitchedEdge
from bayesnas_book.space.fused_edge import FusedSwitchedEdge
from bayesnas_book.space.graph import CellGraph

__all__ = ["SearchCell", "preprocess"]


def preprocess(in_channels: int, out_channels: int, reduce_size: bool = False) -> nn.Sequential:
    """The official cell-input preprocessing (``CReduct``).

    Args:
        in_channels: channels of the cell input.
        out_channels: ``C`` of the cell.
        reduce_size: first halve the resolution with a ``1x1`` stride-2 conv (``in -> in``).

    Returns:
        ``[Conv1x1 stride 2 ->] BN -> ReLU -> Conv1x1``, mapping ``(B, in, H, W)`` to
        ``(B, out, H', W')`` with ``H' = ceil(H / 2)`` if ``reduce_size`` else ``H``.
    """
    layers: list[nn.Module] = []
    if reduce_size:
        layers.append(nn.Conv2d(in_channels, in_channels, 1, stride=2, bias=False))
    layers += [
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=False),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
    ]
    return nn.Sequential(*layers)


class SearchCell(nn.Module):
    """One cell of the supernet on ``graph``, every edge a :class:`SwitchedEdge`.

    Args:
        graph: the cell graph (its ``reduction`` flag decides the edge strides).
        prev_prev_channels: channels of ``c_{k-2}``.
        prev_channels: channels of ``c_{k-1}``.
        channels: ``C``, the width of every node.
        reduce_prev_prev: ``c_{k-2}`` has twice the resolution of ``c_{k-1}``.
        fused_edges: build :class:`~bayesnas_book.space.fused_edge.FusedSwitchedEdge` edges
            (the same edge, its convolution ops evaluated channel-stacked).

    Shapes:
        ``forward(c_{k-2}, c_{k-1})`` -> ``(B, num_nodes * C, H', W')``.
    """

    def __init__(
        self,
        graph: CellGraph,
        prev_prev_channels: int,
        prev_channels: int,
        channels: int,
        reduce_prev_prev: bool = False,
        fused_edges: bool = False,
    ) -> None:
        super().__init__()
        unused = [name for name in graph.inputs if not graph.edges_out_of(name)]
        if unused:
            raise ValueError(f"cell graph {graph.name!r} never reads input {unused[0]!r}; every cell input needs an edge")
        self.graph = graph
        self.channels = channels
        self.pre0 = preprocess(prev_prev_channels, channels, reduce_size=reduce_prev_prev)
        self.pre1 = preprocess(prev_channels, channels)
        edge_type = FusedSwitchedEdge if fused_edges else SwitchedEdge
        self.edges = nn.ModuleList(edge_type(channels, e.stride, graph.ops) for e in graph.edges)

    @property
    def out_channels(self) -> int:
        return self.graph.num_nodes * self.channels

    def forward(self, prev_prev: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        states = {self.graph.inputs[0]: self.pre0(prev_prev), self.graph.inputs[1]: self.pre1(prev)}
        nodes = []
        for j in range(self.graph.num_nodes):
            node = None
            for e in self.graph.edges_into(j):
                y = self.edges[e](states[self.graph.edges[e].source])
                node = y if node is None else node + y  # node_j = sum of its edges
            states[f"node_{j}"] = node
            nodes.append(node)
        return torch.cat(nodes, dim=1)  # (B, n C, H', W')

    def switch_values(self) -> torch.Tensor:
        """``(E, 1 + K)``: row ``e`` the switches of edge ``e`` (parent first), differentiable."""
        return torch.stack([edge.switch_values() for edge in self.edges])

    @torch.no_grad()
    def load_switch_values(self, values: torch.Tensor) -> None:
        """Overwrite the switches from an ``(E, 1 + K)`` tensor (e.g. zeros where pruned)."""
        expected = (self.graph.num_edges, 1 + self.graph.num_ops)
        if tuple(values.shape) != expected:
            raise ValueError(f"`values` must have shape {expected}, got {tuple(values.shape)}")
        for edge, row in zip(self.edges, values):
            edge.load_switch_values(row)

    def gn_backward_inputs(self, H_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Diagonal GN curvature at ``(c_{k-2}, c_{k-1})`` from the curvature at the output.

        Args:
            H_out: ``(B, n C, H', W')``.

        Returns:
            Curvatures with the shapes of the two cell inputs.
        """
        H = {f"node_{j}": h for j, h in enumerate(H_out.split(self.channels, dim=1))}
        for j in reversed(range(self.graph.num_nodes)):
            H_node = H[f"node_{j}"]
            for e in self.graph.edges_into(j):
                source = self.graph.edges[e].source
                H_in = gn_backward(self.edges[e], H_node)
                H[source] = H_in if source not in H else H[source] + H_in  # branches meet: add
        return gn_backward(self.pre0, H[self.graph.inputs[0]]), gn_backward(self.pre1, H[self.graph.inputs[1]])
