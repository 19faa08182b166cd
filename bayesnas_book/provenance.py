"""Provenance records: what produced a result, so a chapter can show it honestly.

Every command that writes results also writes ``provenance.json``: the exact command line, the
configuration, the git commit of the code (and whether the tree had uncommitted changes), the
device, the library versions, the start date and the wall time. The git state is the one the run
started from: the command line wraps every command in :func:`git_state_at_start`, so a commit made
while a long run works does not end up in its record.
"""

from __future__ import annotations

import contextlib
import json
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bayesnas_book.atomic import atomic_write_bytes
from bayesnas_book.device import describe_device

__all__ = ["git_commit", "git_state_at_start", "provenance_record", "write_json"]

_GIT_AT_START: dict[str, Any] | None = None  # set by git_state_at_start for the run under way


def git_commit(folder: str | Path | None = None) -> dict[str, Any]:
    """The commit of the source tree holding this package: ``{"commit": sha|None, "dirty": bool|None}``."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=folder, capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": bool(status.strip())}


@contextlib.contextmanager
def git_state_at_start() -> Iterator[dict[str, Any]]:
    """Fix the git state :func:`provenance_record` reports to the one at entry, for the block's duration."""
    global _GIT_AT_START
    previous, _GIT_AT_START = _GIT_AT_START, git_commit()
    try:
        yield _GIT_AT_START
    finally:
        _GIT_AT_START = previous


def _command_line(argv: list[str] | None) -> str:
    if argv is not None:
        return " ".join(argv)
    if Path(sys.argv[0]).name == "bayesnas-book":
        return " ".join(["bayesnas-book", *sys.argv[1:]])
    script = Path(sys.argv[0])
    if script.name == "cli.py" and script.parent.name == "bayesnas_book":  # python -m, e.g. under torchrun
        return " ".join(["python -m bayesnas_book.cli", *sys.argv[1:]])
    return "called from Python (no bayesnas-book command line)"


def provenance_record(config: dict[str, Any], device: torch.device, started: float, argv: list[str] | None = None) -> dict[str, Any]:
    """A JSON-ready provenance dict.

    Args:
        config: the run's whole configuration.
        device: where it ran.
        started: ``time.time()`` at the start of the run.
        argv: the command line (default ``sys.argv``).
    """
    import numpy

    from bayesnas_book import __version__

    return {
        "command": _command_line(argv),
        "config": config,
        "git": _GIT_AT_START if _GIT_AT_START is not None else git_commit(),
        "device": describe_device(device),
        "versions": {
            "bayesnas_book": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "cuda": torch.version.cuda,
        },
        "started": datetime.fromtimestamp(started, tz=timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(time.time() - started, 3),
    }


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=1, sort_keys=False, default=str).encode("utf-8")
    return atomic_write_bytes(path, text)
