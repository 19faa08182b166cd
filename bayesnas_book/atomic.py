"""Atomic file writes: a reader sees the old file or the whole new one, never half of it.

The bytes go to a temporary file in the destination's own folder (so the final rename never
crosses a file system), are flushed and fsynced, and the temporary file is renamed over the
destination with :func:`os.replace`. If writing fails or is interrupted, the temporary file is
removed and the destination is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write_bytes", "atomic_writer"]


def _fsync_folder(folder: Path) -> None:
    """Persist a rename in ``folder`` (best effort: not every platform can open a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open ``path`` for binary writing so that it appears only once completely written.

    Args:
        path: the destination file; missing parent folders are created.

    Yields:
        A binary file object open on a temporary file next to ``path``.

    Raises:
        OSError: if the folder cannot be created or the file cannot be written; the
            temporary file is removed and ``path`` keeps its old content (if any).
    """
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; datasets and figures are shared files
        os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(destination.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`).

    Args:
        path: the destination file; missing parent folders are created.
        data: the complete content.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    with atomic_writer(path) as handle:
        handle.write(data)
    return Path(path)
