"""Small argument checks shared by the library's public functions."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_positive"]


def check_positive(name: str, value: Any) -> float:
    """``value`` as a float, or a ``ValueError`` naming ``name``: "`lambda_o` must be > 0, got -0.01"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
    if value <= 0:
        raise ValueError(f"`{name}` must be > 0, got {value}")
    return float(value)
