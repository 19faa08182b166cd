"""Where datasets live on disk.

One rule for every loader: an explicit ``root`` wins; ``root=None`` means
``$BAYESNAS_DATA`` when that variable is set, else ``~/.cache/bayesnas-book/datasets``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV_VAR", "default_data_root", "resolve_root"]

#: The environment variable that moves the default dataset folder.
DATA_ENV_VAR = "BAYESNAS_DATA"


def default_data_root() -> Path:
    """The folder datasets are read from and downloaded to when no ``root`` is given.

    Returns:
        ``Path($BAYESNAS_DATA)`` if the variable is set and not empty, else
        ``~/.cache/bayesnas-book/datasets`` (user folder expanded). The folder need not exist.
    """
    value = os.environ.get(DATA_ENV_VAR, "").strip()
    if value:
        return Path(value).expanduser()
    return Path.home() / ".cache" / "bayesnas-book" / "datasets"


def resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """Turn a user's ``root`` argument into a path.

    Args:
        root: a folder, or ``None`` for :func:`default_data_root`.

    Returns:
        The folder as a :class:`~pathlib.Path` with ``~`` expanded (it need not exist).

    Raises:
        ValueError: if ``root`` is not a string, a path or ``None``, or is an empty string.
    """
    if root is None:
        return default_data_root()
    if not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"`root` must be a folder path (str or Path) or None, got {root!r}")
    if isinstance(root, str) and not root.strip():
        raise ValueError("`root` must be a folder path (str or Path) or None, got an empty string")
    return Path(root).expanduser()
