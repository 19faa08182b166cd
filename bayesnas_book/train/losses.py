r"""The training objective: cross-entropy with label smoothing, plus an auxiliary head's loss.

With ``K`` classes, smoothing :math:`\varepsilon` and log-probabilities :math:`\log p_k`, the
smoothed cross-entropy of label ``y`` is

.. math::  \ell = (1 - \varepsilon)\,(-\log p_y) + \frac{\varepsilon}{K} \sum_k (-\log p_k),

(``F.cross_entropy(..., label_smoothing=eps)``), and with an auxiliary head (DARTS) the
objective is :math:`\ell(\text{logits}) + w\,\ell(\text{aux})`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["split_output", "training_loss"]


def split_output(output: torch.Tensor | tuple | list) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits, auxiliary_logits | None)`` from a model's output (a tensor or a pair)."""
    if isinstance(output, (tuple, list)):
        logits = output[0]
        auxiliary = output[1] if len(output) > 1 else None
        return logits, auxiliary
    return output, None


def training_loss(
    output: torch.Tensor | tuple,
    target: torch.Tensor,
    label_smoothing: float = 0.0,
    auxiliary_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean training objective of one batch.

    Args:
        output: logits ``(B, K)``, or ``(logits (B, K), auxiliary_logits (B, K))``.
        target: class indices ``(B,)``.
        label_smoothing: :math:`\\varepsilon` in ``[0, 1)``.
        auxiliary_weight: ``w``, the auxiliary loss weight (used only when there is an auxiliary output).

    Returns:
        ``(loss, logits)``: the scalar objective and the main logits ``(B, K)``.
    """
    logits, auxiliary = split_output(output)
    loss = F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    if auxiliary is not None and auxiliary_weight > 0:
        loss = loss + auxiliary_weight * F.cross_entropy(auxiliary, target, label_smoothing=label_smoothing)
    return loss, logits
