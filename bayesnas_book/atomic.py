"""Atomic file writes: a reader sees the old file or the whole new one, never half of it.

The bytes go to a temporary file in the destination's own folder (so the final rename never
crosses a file system), are flushed and fsynced, and the temporary file is renamed over the
destination with :func:`os.replace`. If writing fails or is interrupted, the temporary file is
removed and the destination is untouched.

A process killed outright (SIGKILL, power loss) cannot remove its temporary file: it stays as
``.NAME.XXXXXXXX.tmp`` beside ``NAME``. :func:`remove_stale_temporaries` removes exactly those
(a run calls it when it starts in its output folder); nothing else matches the pattern.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write_bytes", "atomic_writer", "find_stale_temporaries", "remove_stale_temporaries"]

_SUFFIX = ".tmp"


def _prefix(name: str) -> str:
    """The temporary file's name before :func:`tempfile.mkstemp`'s random part: ``.NAME.``."""
    return f".{name}."


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
        prefix=_prefix(destination.name), suffix=_SUFFIX, dir=destination.parent
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


def find_stale_temporaries(folder: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """The temporary files that killed writes of ``folder / name`` left, for each of ``names``.

    Only the writer's own pattern matches: ``.NAME.XXXXXXXX.tmp`` (``XXXXXXXX`` the random part
    :func:`tempfile.mkstemp` draws from letters, digits and ``_``).

    Args:
        folder: the folder (it may not exist: none).
        names: the destination file names, e.g. ``["checkpoint.pt", "metrics.jsonl"]``.

    Returns:
        The matching files, sorted.
    """
    folder, names = Path(folder), list(names)
    if not names or not folder.is_dir():
        return []
    pattern = re.compile("|".join(rf"{re.escape(_prefix(name))}[a-z0-9_]{{6,}}{re.escape(_SUFFIX)}" for name in names))
    return [path for path in sorted(folder.iterdir())
            if pattern.fullmatch(path.name) and path.is_file() and not path.is_symlink()]


def remove_stale_temporaries(folder: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """Remove what :func:`find_stale_temporaries` finds; returns the removed files.

    Call it only in a folder this process owns (a run that has claimed its output folder):
    another process writing there would lose its temporary file.
    """
    removed = []
    for path in find_stale_temporaries(folder, names):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed
