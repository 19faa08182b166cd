"""What the fast curvature costs: the recursion's time over one training forward + backward.

The official BayesNAS pass took about 120x one forward+backward at batch 1 and 400x at batch 8
on a CPU (Python loops over batch x position x group). The whole-tensor recursion targets
1.5-2x. :func:`benchmark_curvature` measures the ratio on a given model and batch; it is a
function to call (chapter 5, ``bayesnas-book bench``), not a timed test.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bayesnas_book.curvature.exact import batchnorm_stats_frozen
from bayesnas_book.curvature.recursion import capture, softmax_cross_entropy_gn

__all__ = ["CurvatureBenchmark", "benchmark_curvature"]


@dataclass(frozen=True)
class CurvatureBenchmark:
    """Median wall times (seconds) of interleaved repetitions, and their ratio.

    Attributes:
        recursion_s: one captured forward (no autograd) + the diagonal GN sweep.
        forward_backward_s: one forward + ``loss.backward()`` in all parameters.
        ratio: ``recursion_s / forward_backward_s``.
        repeats: timed repetitions behind each median.
        device: where it ran.
    """

    recursion_s: float
    forward_backward_s: float
    ratio: float
    repeats: int
    device: str


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def benchmark_curvature(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, repeats: int = 5, warmup: int = 2
) -> CurvatureBenchmark:
    """Time the recursion against one forward + backward on the same batch.

    Args:
        model: returns logits ``(B, classes)``; its mode (train / eval) is used for both.
        x: inputs ``(B, ...)`` on the model's device.
        y: labels ``(B,)``.
        repeats: timed repetitions (median), a positive integer.
        warmup: untimed repetitions first, a non-negative integer.

    Returns:
        A :class:`CurvatureBenchmark`.

    Raises:
        ValueError: for a non-positive ``repeats`` or a negative ``warmup``.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"`repeats` must be a positive integer, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"`warmup` must be a non-negative integer, got {warmup!r}")
    device = x.device

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    def recursion() -> None:
        with torch.no_grad():
            with capture(model) as tape:
                logits = model(x)
            tape.backward(softmax_cross_entropy_gn(logits))

    with batchnorm_stats_frozen(model):
        for _ in range(warmup):
            forward_backward()
            recursion()
        # interleaved, so that a machine whose load drifts affects both alike
        fb_times: list[float] = []
        rec_times: list[float] = []
        for _ in range(repeats):
            fb_times.append(_timed(forward_backward, device))
            rec_times.append(_timed(recursion, device))
    t_fb, t_rec = statistics.median(fb_times), statistics.median(rec_times)
    model.zero_grad(set_to_none=True)
    return CurvatureBenchmark(
        recursion_s=t_rec,
        forward_backward_s=t_fb,
        ratio=t_rec / t_fb,
        repeats=repeats,
        device=str(device),
    )
