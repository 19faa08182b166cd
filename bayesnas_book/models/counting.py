"""Parameter and multiply-accumulate counts, the way the paper's tables count them.

Parameters: every ``nn.Parameter`` (conv and linear weights, BN affine weights and biases);
BN running statistics are buffers, not counted. MACs: multiply-accumulates of one image's
forward in eval mode, convolutions and linear layers only, from
:class:`torch.utils.flop_counter.FlopCounterMode` (its FLOPs are 2 x MACs).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bayesnas_book.train.precision import parameter_dtype

__all__ = ["count_macs", "count_parameters"]


def count_parameters(model: nn.Module) -> int:
    """Number of scalars in all parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one eval-mode forward of a ``(1, *input_shape)`` input.

    Args:
        model: the network; its training mode is restored afterwards.
        input_shape: ``(C, H, W)``, e.g. ``(3, 32, 32)``.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            model(torch.zeros(1, *input_shape, device=device, dtype=parameter_dtype(model)))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
