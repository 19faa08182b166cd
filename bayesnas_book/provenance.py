"""Provenance records: what produced a result, so a chapter can show it honestly.

Every command that writes results also writes ``provenance.json``: the exact command line, the
configuration, the git commit of the code (and whether the tree had uncommitted changes), the
device, the library versions, the start date and the wall time. The git state is the one the run
started from: the command line wraps every command in :func:`git_state_at_start`, so a commit made
while a long run works does not end up in its record.

A record also holds ``modules``: the SHA-256 of the source of every ``bayesnas_book`` module loaded
in the process that wrote it (:func:`module_hashes`), so that a record whose code has changed since
is found out (:func:`bayesnas_book.results.stale_modules`) whatever the git history says, uncommitted
edits included. Why the modules loaded, and not a declared list: they are exactly the library code
the run could execute (the package imports its submodules lazily, so a ``compress`` run loads no
search code and is not made stale by a change there), and no list has to be kept up to date by hand.
The command-line module counts too when it runs as ``__main__`` (``python -m bayesnas_book.cli``).
Sources are hashed with line endings normalised to ``\n``, so a checkout with CRLF endings agrees.
Left out are :data:`BOOKKEEPING_MODULES`, the modules that write and find records and compute none
of their numbers (this one and :mod:`bayesnas_book.results`): a new record kind or field there
changes no result, and every record of every command loads them.
Modules loaded when :func:`git_state_at_start` is entered are hashed there (the code that was read
when the run started, even if the file is edited while it runs); modules first imported later are
hashed when the record is written. A ``bench`` CPU suite measures in a spawned child
(:mod:`bayesnas_book.isolation`) whose modules are not in this process: the child unpickles the
suite's function from :mod:`bayesnas_book.bench_suites`, which the parent has imported with all it
imports, and the bench code imports no library module lazily, so the parent's set holds the child's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import shlex
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

__all__ = ["BOOKKEEPING_MODULES", "PACKAGE", "git_commit", "git_state_at_start", "module_hashes", "provenance_record",
           "source_hash", "write_json"]

PACKAGE = "bayesnas_book"

BOOKKEEPING_MODULES = frozenset({"bayesnas_book.provenance", "bayesnas_book.results"})
"""Modules that write or read records and compute none of their numbers: not hashed, not checked."""

_GIT_AT_START: dict[str, Any] | None = None  # set by git_state_at_start for the run under way
_MODULES_AT_START: dict[str, str] | None = None  # module hashes taken at the same moment


def source_hash(path: str | Path) -> str:
    """SHA-256 (hex) of a source file's bytes with ``\r\n`` and ``\r`` line endings read as ``\n``."""
    data = Path(path).read_bytes().replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return hashlib.sha256(data).hexdigest()


def _loaded_modules() -> dict[str, Path]:
    """Every loaded ``bayesnas_book`` module with a source file: name -> path."""
    found: dict[str, Path] = {}
    for key, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        name = spec.name if spec is not None and key == "__main__" else key  # python -m bayesnas_book.cli
        if (name != PACKAGE and not name.startswith(PACKAGE + ".")) or name in BOOKKEEPING_MODULES:
            continue
        file = getattr(module, "__file__", None)
        if file and file.endswith(".py") and Path(file).is_file():
            found[name] = Path(file)
    return found


def module_hashes() -> dict[str, str]:
    """``{module: source_hash}`` of every ``bayesnas_book`` module loaded here (but bookkeeping), by name.

    Modules hashed by an enclosing :func:`git_state_at_start` keep the hash they had there.
    """
    start = _MODULES_AT_START or {}
    return {name: start.get(name) or source_hash(path) for name, path in sorted(_loaded_modules().items())}


def git_commit(folder: str | Path | None = None) -> dict[str, Any]:
    """The commit of the source tree holding this package: ``{"commit": sha|None, "dirty": bool|None}``."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True,
                                  timeout=10).stdout

        sha = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": bool(status.strip())}


@contextlib.contextmanager
def git_state_at_start() -> Iterator[dict[str, Any]]:
    """Fix the git state :func:`provenance_record` reports to the one at entry, for the block's duration."""
    global _GIT_AT_START, _MODULES_AT_START
    previous, _GIT_AT_START = _GIT_AT_START, git_commit()
    previous_modules, _MODULES_AT_START = _MODULES_AT_START, None
    _MODULES_AT_START = module_hashes()
    try:
        yield _GIT_AT_START
    finally:
        _GIT_AT_START, _MODULES_AT_START = previous, previous_modules


def _command_line(argv: list[str] | None) -> str:
    # shlex.join: the recorded line pastes into a shell as it ran (--set 'device="cpu"' keeps its quotes)
    if argv is not None:
        return shlex.join(argv)
    if Path(sys.argv[0]).name == "bayesnas-book":
        return shlex.join(["bayesnas-book", *sys.argv[1:]])
    script = Path(sys.argv[0])
    if script.name == "cli.py" and script.parent.name == "bayesnas_book":  # python -m, e.g. under torchrun
        return " ".join(["python -m bayesnas_book.cli", *map(shlex.quote, sys.argv[1:])])
    return "called from Python (no bayesnas-book command line)"


def provenance_record(config: dict[str, Any], device: torch.device, started: float,
                      argv: list[str] | None = None) -> dict[str, Any]:
    """A JSON-ready provenance dict.

    Args:
        config: the run's whole configuration.
        device: where it ran.
        started: ``time.time()`` at the start of the run.
        argv: the command line (default ``sys.argv``).

    Returns:
        ``command``, ``config``, ``git``, ``device``, ``versions``, ``started``, ``wall_time_s`` and
        ``modules`` (:func:`module_hashes`).
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
        "modules": module_hashes(),
    }


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=1, sort_keys=False, default=str).encode("utf-8")
    return atomic_write_bytes(path, text)
