"""One seeding helper for python, numpy and torch (CPU and CUDA)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything"]


def seed_everything(seed: int, deterministic: bool = True, num_threads: int = 0) -> torch.Generator:
    """Seed every random number generator a run touches.

    Args:
        seed: a non-negative integer.
        deterministic: also ask torch for deterministic algorithms (and disable cuDNN
            autotuning), as the quick profile does; off in the paper profile for speed.
        num_threads: torch's CPU thread count; 0 leaves it as it is.

    Returns:
        A ``torch.Generator`` seeded with ``seed``, for data splits and samplers that should
        not depend on how many random numbers the model consumed.

    Raises:
        ValueError: if ``seed`` is negative or not an integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}")
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
