"""One seeding helper for python, numpy and torch (CPU and CUDA)."""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = ["float_dtype", "seed_everything", "with_default_dtype"]


def float_dtype(name: str | torch.dtype) -> torch.dtype:
    """``"float32"`` / ``"float64"`` (a config's ``dtype``) as a ``torch.dtype``.

    Raises:
        ValueError: for any other name.
    """
    if isinstance(name, torch.dtype) and name in (torch.float32, torch.float64):
        return name
    if name in ("float32", "float64"):
        return getattr(torch, name)
    raise ValueError(f"`dtype` must be float32 or float64, got {name!r}")


F = TypeVar("F", bound=Callable[..., Any])


def with_default_dtype(dtype: torch.dtype) -> Callable[[F], F]:
    """Decorate a function to run with torch's default dtype ``dtype``, restoring the caller's after."""
    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            previous = torch.get_default_dtype()
            torch.set_default_dtype(dtype)
            try:
                return function(*args, **kwargs)
            finally:
                torch.set_default_dtype(previous)
        return wrapper  # type: ignore[return-value]
    return decorate


def seed_everything(seed: int, deterministic: bool = True, num_threads: int = 0,
                   dtype: str | torch.dtype | None = None) -> torch.Generator:
    """Seed every random number generator a run touches.

    Args:
        seed: a non-negative integer.
        deterministic: also ask torch for deterministic algorithms (and disable cuDNN
            autotuning), as the quick profile does; off in the paper profile for speed.
        num_threads: torch's CPU thread count; 0 leaves it as it is.
        dtype: torch's default floating dtype from now on (``"float32"``, ``"float64"`` or a
            ``torch.dtype``; a config's ``dtype``); ``None`` leaves it as it is. Process-wide:
            every model and tensor created afterwards without an explicit dtype gets it.

    Returns:
        A ``torch.Generator`` seeded with ``seed``, for data splits and samplers that should
        not depend on how many random numbers the model consumed.

    Raises:
        ValueError: if ``seed`` is negative or not an integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}")
    if dtype is not None:
        torch.set_default_dtype(float_dtype(dtype))
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA too
    # Needed by deterministic cuBLAS; harmless on CPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if num_threads:
        torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=False)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
