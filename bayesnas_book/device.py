"""One device helper: CUDA when present, else CPU."""

from __future__ import annotations

import platform

import torch

__all__ = ["describe_device", "resolve_device"]


def resolve_device(name: str = "auto") -> torch.device:
    """Turn a config's device string into a ``torch.device``.

    Args:
        name: ``"auto"`` (cuda if available, else cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"``
            or ``"mps"``.

    Raises:
        ValueError: if a GPU is asked for and none is present, naming what is available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} was asked for but this machine has no CUDA GPU; "
                "use device=cpu (the quick profile) or device=auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s), numbered from 0"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} was asked for but MPS is not available; use cpu")
    return device


def describe_device(device: torch.device) -> str:
    """A human-readable name: the device with its GPU model, or the CPU architecture and threads."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({platform.machine()}, {torch.get_num_threads()} threads)"
