"""Evaluation of a classifier: mean cross-entropy, top-1 and top-5 accuracy on a dataset."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bayesnas_book.train.losses import split_output
from bayesnas_book.train.precision import amp_dtype, autocast, parameter_dtype, to_memory_format

__all__ = ["evaluate", "topk_correct"]


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[torch.Tensor]:
    """How many rows of ``logits`` ``(B, K)`` have ``target`` ``(B,)`` among their ``k`` largest.

    ``k`` larger than ``K`` counts every row (top-5 of a 3-class problem is always right).

    Returns:
        One 0-d integer tensor per ``k``, on ``logits``' device (no host sync).
    """
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices  # (B, k_max), best first
    hits = top == target.unsqueeze(1)  # (B, k_max)
    return [hits[:, :k].any(dim=1).sum() for k in ks]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    *,
    amp: str = "off",
    channels_last: bool = False,
    num_workers: int = 0,
) -> dict[str, float]:
    """Mean cross-entropy and top-1 / top-5 accuracy of ``model`` on ``dataset``.

    The model runs in eval mode (BatchNorm running statistics, no dropout) and is put back in
    the mode it was in. The order of the images is fixed and no random number is drawn.

    Args:
        model: a classifier returning logits ``(B, K)`` (or a pair whose first item is the logits).
        dataset: yields ``(image (C, H, W), label)``.
        batch_size: images per batch.
        device: where the model is.
        amp: autocast mode (see :mod:`bayesnas_book.train.precision`).
        channels_last: feed NHWC images.
        num_workers: DataLoader workers.

    Returns:
        ``{"loss": float, "top1": float, "top5": float}``, accuracies as fractions in ``[0, 1]``.

    Raises:
        ValueError: if ``batch_size`` is not positive or ``dataset`` is empty.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("`dataset` is empty; there is nothing to evaluate")
    device = torch.device(device)
    dtype = amp_dtype(amp, device)
    float_dtype = parameter_dtype(model)  # images are cast to it
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    try:
        for x, y in loader:
            x = to_memory_format(x.to(device, float_dtype, non_blocking=True), channels_last)
            y = y.to(device, non_blocking=True)
            with autocast(device, dtype):
                logits, _ = split_output(model(x))
            if logits.dtype in (torch.float16, torch.bfloat16):
                logits = logits.float()  # the loss in float32 (float64 models keep float64)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            correct1, correct5 = topk_correct(logits, y)
            top1 += correct1
            top5 += correct5
            seen += y.shape[0]
    finally:
        model.train(was_training)
    return {"loss": float(loss_sum) / seen, "top1": int(top1) / seen, "top5": int(top5) / seen}
