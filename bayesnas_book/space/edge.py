"""A switched edge of the BayesNAS supernet: one parent switch, K ops, K child switches.

For an edge ``e`` from node ``i`` (the paper's switches, as in the official code)::

    y_e = sum_k  s_e^k * o_k( sbar_e * x_i )

``sbar_e`` is the parent switch (``sbar_e -> 0`` is the zero op and silences every op of the
edge); ``s_e^k`` is the child switch of op ``k``. All switches start at 1.

Switch layout, shared with the Bayesian update (:mod:`bayesnas_book.bayes`): a vector of length
``1 + K``, column 0 the parent switch, then the child switches in ``op_names`` order. The same
order is the order of the :class:`~bayesnas_book.space.switch.Switch` modules in
``edge.named_modules()`` (``parent``, ``switches.<op name>`` ...).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bayesnas_book.space.ops import CANDIDATE_OPS, OPS, build_op
from bayesnas_book.space.switch import Switch

__all__ = ["SwitchedEdge"]


class SwitchedEdge(nn.Module):
    """``y = sum_k s_k * o_k(sbar * x)`` over the candidate ops of one edge.

    Args:
        channels: ``C``, input and output channels.
        stride: 1, or 2 for reduction-cell edges leaving a cell input.
        op_names: the candidate ops, keys of :data:`bayesnas_book.space.ops.OPS`; by default
            the seven BayesNAS ops in the official order.

    Attributes:
        parent: the parent switch ``sbar``.
        ops: ``nn.ModuleDict`` op name -> op, in ``op_names`` order.
        switches: ``nn.ModuleDict`` op name -> child switch ``s_k``, in ``op_names`` order.
        op_names: the op names, a tuple.

    Raises:
        ValueError: if ``op_names`` is empty, a string, or has duplicates; or for an invalid
            ``channels`` / ``stride`` (raised by the op builders).
        KeyError: for an unknown op name, listing the valid ones.
    """

    def __init__(
        self, channels: int, stride: int = 1, op_names: Sequence[str] = CANDIDATE_OPS
    ) -> None:
        super().__init__()
        if isinstance(op_names, str) or not isinstance(op_names, Sequence) or len(op_names) == 0:
            raise ValueError(
                f"`op_names` must be a non-empty sequence of op names, got {op_names!r}"
            )
        duplicates = sorted({n for n in op_names if list(op_names).count(n) > 1})
        if duplicates:
            raise ValueError(f"`op_names` must not repeat an op, got duplicates {duplicates}")
        for name in op_names:
            OPS[name]  # KeyError listing the valid names for an unknown one
        self.op_names: tuple[str, ...] = tuple(op_names)
        self.channels = channels
        self.stride = stride
        # Defined first, so named_modules() lists the parent before the children.
        self.parent = Switch()
        self.ops = nn.ModuleDict({name: build_op(name, channels, stride) for name in op_names})
        self.switches = nn.ModuleDict({name: Switch() for name in op_names})

    @property
    def switch_names(self) -> tuple[str, ...]:
        """``("parent", *op_names)``: the names of the ``1 + K`` switch columns."""
        return ("parent", *self.op_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the edge.

        Args:
            x: the source node, ``(B, C, H, W)``.

        Returns:
            ``(B, C, ceil(H / stride), ceil(W / stride))``.
        """
        u = self.parent(x)  # sbar * x, shared by every op
        return self._sum_branches(u, self.op_names)

    def _sum_branches(self, u: torch.Tensor, names: Sequence[str]) -> torch.Tensor | None:
        """``sum_k s_k * o_k(u)`` over the ops ``names`` (``None`` for no names)."""
        y = None
        for name in names:
            branch = self.switches[name](self.ops[name](u))  # s_k * o_k(u)
            y = branch if y is None else y + branch
        return y

    def switch_values(self) -> torch.Tensor:
        """The switches as one vector, differentiable in them.

        Returns:
            ``(1 + K,)``: column 0 the parent switch, then the child switches in ``op_names``
            order. Call ``.detach()`` to read values without keeping the graph.
        """
        values = [self.parent.value] + [self.switches[n].value for n in self.op_names]
        return torch.stack(values)

    @torch.no_grad()
    def load_switch_values(self, values: torch.Tensor) -> None:
        """Overwrite the switches (e.g. to zero pruned ones), in the :meth:`switch_values` layout.

        Args:
            values: ``(1 + K,)``.

        Raises:
            ValueError: if ``values`` does not have shape ``(1 + K,)`` or is not finite.
        """
        expected = (1 + len(self.op_names),)
        if not isinstance(values, torch.Tensor) or tuple(values.shape) != expected:
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values)
            raise ValueError(f"`values` must have shape {expected}, got {shape}")
        if not torch.isfinite(values).all():
            raise ValueError(f"`values` must be finite, got {values.tolist()}")
        self.parent.value.copy_(values[0])
        for k, name in enumerate(self.op_names, start=1):
            self.switches[name].value.copy_(values[k])

    def extra_repr(self) -> str:
        return f"channels={self.channels}, stride={self.stride}"
