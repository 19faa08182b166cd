"""Mixed precision, memory format and compilation: which autocast dtype a run uses, and the contexts.

``amp`` is ``"off"``, ``"auto"`` (bf16 on a CUDA GPU that supports it, else off), ``"bf16"``
(CUDA or CPU; on a CPU only when asked) or ``"fp16"`` (CUDA only, with a ``GradScaler``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

__all__ = ["amp_dtype", "autocast", "compiled_forward", "parameter_dtype", "to_memory_format"]


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``, or ``None`` for full precision.

    Raises:
        ValueError: for an unknown mode, or fp16 / bf16 on a device that cannot run it.
    """
    if amp == "off":
        return None
    if amp == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    if amp == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"`amp=bf16` was asked for but {device} does not support bfloat16; use amp=fp16 or amp=off")
        if device.type not in ("cuda", "cpu"):
            raise ValueError(f"`amp=bf16` runs on cuda or cpu, not {device.type}; use amp=off")
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError(f"`amp=fp16` needs a CUDA device (its GradScaler), got {device}; use amp=bf16 or amp=off")
        return torch.float16
    raise ValueError(f"`amp` must be one of off, auto, bf16, fp16; got {amp!r}")


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` for ``dtype``, or a no-op context when ``dtype`` is ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def parameter_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of ``model``'s parameters (float32 for a model without any): what its inputs are cast to.

    Images come as float32 from torchvision's transforms; a float64 model (the quick profile's
    ``dtype``) takes them in float64.
    """
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` in NHWC layout when asked and 4-d, else unchanged."""
    if channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def compiled_forward(module: nn.Module, enabled: bool, mode: str = "default") -> Any:
    """``torch.compile(module, mode=mode)`` when ``enabled``, else ``module`` itself.

    ``mode`` is one of torch.compile's modes (``config.COMPILE_MODES``): ``"reduce-overhead"``
    records CUDA graphs and replays them, so a step of many small kernels pays no launch cost.
    """
    if not enabled:
        return module
    return torch.compile(module, mode=None if mode == "default" else mode)
