"""The one exception every dataset problem raises.

A missing folder, a truncated file, a pickle with the wrong keys, an IDX file whose header lies,
an offline download: each becomes a :class:`DatasetError` whose message names the file or folder,
says what is wrong and what to do next. The CLI prints that message (exit status 2) instead of a
traceback from deep inside torchvision or :mod:`pickle`.
"""

from __future__ import annotations

__all__ = ["DatasetError", "DatasetNotFoundError"]


class DatasetError(Exception):
    """A dataset is missing, incomplete, corrupt or cannot be downloaded."""


class DatasetNotFoundError(DatasetError):
    """The dataset's folder does not exist at all (a download can fix this, a repair cannot)."""
