"""Switches: the scalar gates whose curvature BayesNAS measures.

BayesNAS (Zhou et al., ICML 2019) attaches a scalar *switch* ``s`` to every edge (the parent
switch, multiplying the edge input) and to every candidate op (the child switch, multiplying the
op output). A switch is the simplest layer there is::

    y = s * z,        s in R, z of any shape

It is initialised to 1, so the supernet starts as the plain sum of all ops. Its Gauss-Newton
curvature ``d2L/ds2 ~= sum(z^2 * H_y)`` is collected by :mod:`bayesnas_book.curvature`.

Functional core :func:`switch` and a thin module :class:`Switch` (timm's ``drop_path`` /
``DropPath`` pattern).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["Switch", "switch"]


def switch(z: torch.Tensor, value: torch.Tensor | float) -> torch.Tensor:
    """Gate a tensor by a scalar switch: ``y = s * z``.

    Args:
        z: the gated tensor, any shape, e.g. ``(B, C, H, W)``.
        value: the switch ``s``, a Python number or a 0-d tensor.

    Returns:
        ``s * z``, the shape of ``z``.
    """
    return value * z


class Switch(nn.Module):
    """One scalar learnable switch ``s`` (an ``nn.Parameter`` named ``value``), ``y = s * z``.

    Args:
        init: the initial value of ``s``; BayesNAS starts every switch at 1.0.

    Raises:
        ValueError: if ``init`` is not a finite real number.
    """

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        if isinstance(init, bool) or not isinstance(init, (int, float)) or not math.isfinite(init):
            raise ValueError(f"`init` must be a finite real number, got {init!r}")
        # a 0-d parameter: the switch s of the paper
        self.value = nn.Parameter(torch.tensor(float(init)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return ``s * z`` with the shape of ``z`` (any, e.g. ``(B, C, H, W)``)."""
        return switch(z, self.value)

    def extra_repr(self) -> str:
        return f"value={self.value.item():.4g}"
