"""Downloads that appear in the dataset folder only when complete.

torchvision downloads into the folder it reads from; an interrupted or offline download there
leaves a partial archive or half of the files, which the next run then trips over. Here the
download goes to a hidden staging folder next to the target
(``ROOT/.cifar-10-batches-py.download-XXXX/``), is checked there, and the finished folder is
moved into place with one :func:`os.replace`. Whatever happens (offline, checksum mismatch,
Ctrl-C), the staging folder is removed and ``ROOT`` holds either nothing new or the whole dataset.
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import socket
import tempfile
import urllib.error
from collections.abc import Callable
from pathlib import Path

from bayesnas_book.data.errors import DatasetError

__all__ = ["download_into_root", "is_network_error"]


def is_network_error(error: BaseException) -> bool:
    """Whether ``error`` means the server could not be reached (as opposed to a disk problem).

    Args:
        error: an exception raised while downloading.

    Returns:
        ``True`` for URL, connection, timeout, DNS and HTTP-protocol errors.
    """
    network = (
        urllib.error.URLError,
        ConnectionError,
        TimeoutError,
        socket.gaierror,
        http.client.HTTPException,
    )
    return isinstance(error, network)


def download_into_root(
    root: Path,
    entry: str,
    fetch: Callable[[Path], None],
    check: Callable[[Path], object],
    *,
    title: str,
    source: str,
    manual_help: str,
) -> None:
    """Download a dataset into ``root / entry`` through a staging folder.

    Args:
        root: the dataset root (created if missing).
        entry: the folder that the download produces under a root (``"cifar-10-batches-py"``,
            ``"MNIST"``); it must not exist in ``root`` yet.
        fetch: downloads into the staging folder given to it, as if it were ``root``.
        check: validates the staging folder as a root; raises :class:`DatasetError` if not.
        title: the dataset's name for messages (``"CIFAR-10"``).
        source: the URL(s) for messages.
        manual_help: how to install the dataset by hand (which files to place where).

    Raises:
        DatasetError: if the network is unreachable, the download fails or is corrupt, or the
            target appeared meanwhile. Nothing is left under ``root`` except what was there.
    """
    target = root / entry
    if target.exists():
        raise DatasetError(f"{target} already exists; delete it or check it instead of downloading")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatasetError(f"cannot create the dataset folder {root}: {error}") from None
    staging = Path(tempfile.mkdtemp(prefix=f".{entry}.download-", dir=root))
    try:
        try:
            fetch(staging)
        except DatasetError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure becomes one clear message
            if isinstance(error, urllib.error.HTTPError):
                raise DatasetError(
                    f"cannot download {title}: the server answered HTTP {error.code} "
                    f"({error.reason}) "
                    f"for {source}. Nothing was written to {root}. Retry later, or {manual_help}"
                ) from None
            if is_network_error(error):
                raise DatasetError(
                    f"cannot download {title}: the network is unreachable ({error}). "
                    f"Nothing was written to {root}. Either retry with network access, or "
                    f"download {source} on a machine that has it and {manual_help}"
                ) from None
            raise DatasetError(
                f"downloading {title} from {source} failed ({type(error).__name__}: {error}). "
                f"Nothing was written to {root}. Retry, or {manual_help}"
            ) from None
        check(staging)
        try:
            (staging / entry).replace(target)
        except OSError as error:
            raise DatasetError(
                f"downloaded {title} but could not move it to {target} ({error}); "
                "check that nothing else is writing there and run again"
            ) from None
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
