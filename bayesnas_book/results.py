"""Finding the records of real runs under ``data/results/``, for the chapters that show them.

Every command that writes results also writes its provenance (:mod:`bayesnas_book.provenance`):
``search``, ``train``, ``transfer``, ``compress`` and ``study`` as ``provenance.json`` in the run
folder, ``bench`` inside its JSON file (``{"result": ..., "provenance": ...}``, e.g.
``bench.json`` or ``gpu_check.json``). A chapter shows a number of a real run only from such a
record, with the record's provenance beside it, and says "not run" where there is none. This
module is the one place that scans for them:

* :func:`results_folder`: ``data/results`` of the repository, found from a folder upwards;
* :func:`load_result`: one record (a run folder, its ``provenance.json`` or a bench JSON file);
* :func:`iter_records`: every record under the results folder, optionally of one kind;
* :func:`stale_modules`: the library modules a record ran whose source has changed since
  (the record's ``modules`` hashes, :func:`bayesnas_book.provenance.module_hashes`, against the
  sources now), and :func:`regenerate_command`, the command line that writes the record again.

The *kind* of a record is the ``bayesnas-book`` subcommand that wrote it, read from the recorded
command line (``bayesnas-book compress ...`` or ``python -m bayesnas_book.cli compress ...``);
a record written from Python (no command line) is recognised by what it holds (see
:func:`record_kind`).

A record that cannot be read (not JSON, not an object, or missing a provenance field) is never
shown: :func:`load_result` raises :class:`ResultError` naming the file and the reason;
:func:`iter_records` skips it with a :class:`ResultWarning` carrying the same message, or raises
with ``strict=True``.
"""

from __future__ import annotations

import json
import re
import shlex
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH_FILES",
    "KINDS",
    "PROVENANCE_FIELDS",
    "ResultError",
    "ResultRecord",
    "ResultWarning",
    "format_wall_time",
    "iter_records",
    "load_result",
    "record_kind",
    "regenerate_command",
    "results_folder",
    "stale_modules",
]

KINDS = ("search", "train", "transfer", "compress", "study", "bench")
"""The commands whose records :func:`iter_records` can filter by."""

BENCH_FILES = {"bench.json": "search", "bench_train.json": "train", "bench_scaling.json": "scaling",
               "gpu_check.json": "gpu-check", "bench_tree.json": "tree"}
"""File name of a ``bench`` record -> its suite (``bench_suites.BENCH_SUITES`` is derived from it)."""

PROVENANCE_FIELDS = ("command", "config", "git", "device", "started", "wall_time_s")
"""The fields every provenance record holds (:func:`bayesnas_book.provenance.provenance_record`)."""

PROVENANCE_FILE = "provenance.json"


class ResultError(ValueError):
    """A record cannot be read or a results folder does not exist (the message names the path)."""


class ResultWarning(UserWarning):
    """:func:`iter_records` skipped a record it cannot read (the message names the file and why)."""


def results_folder(start: str | Path | None = None) -> Path | None:
    """The repository's ``data/results``, found from ``start`` (default: the working directory) upwards.

    Args:
        start: the folder to search from.

    Returns:
        The first ``data/results`` folder in ``start`` or one of its parents, or ``None``.
    """
    here = Path.cwd() if start is None else Path(start).resolve()
    for folder in (here, *here.parents):
        if (folder / "data" / "results").is_dir():
            return folder / "data" / "results"
    return None


def _subcommand(command: str) -> str | None:
    """The ``bayesnas-book`` subcommand of a recorded command line, or ``None``."""
    try:
        tokens = shlex.split(command)
    except ValueError:  # unbalanced quotes: fall back to whitespace
        tokens = command.split()
    starts = [1] if tokens and Path(tokens[0]).name == "bayesnas-book" else []  # the program itself
    starts += [i + 2 for i in range(len(tokens) - 1) if tokens[i] == "-m" and tokens[i + 1] == "bayesnas_book.cli"]
    for start in starts[:1]:
        following = [t for t in tokens[start:] if not t.startswith("-")]
        return following[0] if following else None
    return None


def record_kind(provenance: Mapping[str, Any], file_name: str = PROVENANCE_FILE) -> str:
    """The command that wrote a record: one of :data:`KINDS`, another subcommand, or ``"unknown"``.

    The recorded command line decides. Without one (a run started from Python): a bench file name
    (:data:`BENCH_FILES`) means ``bench``; ``config["run"]["command"]`` (``transfer``) names
    itself; final metrics with a ``config["run"]`` mean ``train``; a ``report`` means
    ``compress``; a ``study`` entry means ``study``; a search's ``history`` file is not in the
    provenance, so a search from Python stays ``"unknown"``.

    Args:
        provenance: the provenance dict.
        file_name: the name of the file that held it.
    """
    command = provenance.get("command")
    sub = _subcommand(command) if isinstance(command, str) else None
    if sub is not None:
        return sub
    if file_name in BENCH_FILES:
        return "bench"
    config = provenance.get("config")
    run = config.get("run") if isinstance(config, Mapping) else None
    if isinstance(run, Mapping) and run.get("command") in KINDS:
        return str(run["command"])
    if isinstance(run, Mapping) and "final" in provenance:
        return "train"
    if "report" in provenance:
        return "compress"
    if "study" in provenance:
        return "study"
    return "unknown"


def format_wall_time(seconds: float) -> str:
    """``"44.1 s"``, ``"12.5 min"`` or ``"3.20 h"``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


# The machine-specific part of an absolute path into data/results: "/CHECKOUT/" in
# "--out /CHECKOUT/data/results/x" (also after "="), where CHECKOUT is the clone's folder.
_ABSOLUTE_RESULTS_PREFIX = re.compile(r"(?<![^\s=])/\S*?/(?=data/results/)")


@dataclass(frozen=True)
class ResultRecord:
    """One real run's record.

    Attributes:
        path: the file holding the provenance (``provenance.json`` or a bench JSON file).
        kind: the command that wrote it (:func:`record_kind`).
        provenance: the provenance dict (:data:`PROVENANCE_FIELDS` and what the command added).
        result: a bench file's ``"result"``; ``None`` for a run folder (its files hold the results).
        root: the results folder it was found under, if any (for :attr:`name`).
    """

    path: Path
    kind: str
    provenance: Mapping[str, Any]
    result: Any = None
    root: Path | None = None

    @property
    def folder(self) -> Path:
        """The folder holding the record and the run's other files."""
        return self.path.parent

    @property
    def name(self) -> str:
        """The record's path relative to the results folder (``study-digits-quick``, ``bench-x/bench.json``)."""
        target = self.folder if self.path.name == PROVENANCE_FILE else self.path
        if self.root is not None:
            try:
                return target.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return target.as_posix()

    @property
    def config(self) -> Mapping[str, Any]:
        """The recorded configuration (a train or transfer run's own is under ``config["run"]``)."""
        return self.provenance["config"]

    def _run_config(self) -> Mapping[str, Any]:
        run = self.config.get("run")
        return run if isinstance(run, Mapping) else self.config

    @property
    def dataset(self) -> str | None:
        """``config["data"]["dataset"]`` of the run (``None`` if not recorded)."""
        data = self._run_config().get("data")
        return data.get("dataset") if isinstance(data, Mapping) else None

    @property
    def profile(self) -> str | None:
        """The configuration profile (``quick`` or ``paper``), if recorded."""
        return self._run_config().get("profile")

    @property
    def suite(self) -> str | None:
        """A bench record's suite (``search``, ``train``, ``scaling``, ``gpu-check``), else ``None``."""
        return BENCH_FILES.get(self.path.name) if self.kind == "bench" else None

    @property
    def commit(self) -> str | None:
        """The git commit of the code that ran."""
        return self.provenance["git"].get("commit")

    @property
    def dirty(self) -> bool | None:
        """Whether the tree had uncommitted changes."""
        return self.provenance["git"].get("dirty")

    @property
    def device(self) -> str:
        """Where it ran, in words."""
        return str(self.provenance["device"])

    @property
    def wall_time_s(self) -> float:
        """The wall time of the whole command in seconds."""
        return float(self.provenance["wall_time_s"])

    @property
    def modules(self) -> Mapping[str, str] | None:
        """The recorded ``{module: source SHA-256}`` of the library code that ran (``None``: not recorded)."""
        modules = self.provenance.get("modules")
        return modules if isinstance(modules, Mapping) else None

    def provenance_line(self) -> str:
        """One line: command, commit, device, start date and wall time.

        An absolute path into a ``data/results`` folder in the command is shown from
        ``data/results`` on, so that the line names no folder of the machine that ran it.
        """
        commit = (self.commit or "unknown")[:12]
        dirty = " + uncommitted changes" if self.dirty else ""
        command = _ABSOLUTE_RESULTS_PREFIX.sub("", str(self.provenance["command"]))
        return (f"`{command}` | commit {commit}{dirty} | {self.device} | "
                f"started {self.provenance['started']} | wall time {format_wall_time(self.wall_time_s)}")

    def has(self, name: str) -> bool:
        """Whether the run folder holds the file ``name``."""
        return (self.folder / name).is_file()

    def read_json(self, name: str) -> Any:
        """The JSON file ``name`` of the run folder.

        Raises:
            ResultError: if it is missing or not JSON.
        """
        path = self.folder / name
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ResultError(f"cannot read {path}: {error}") from None

    def read_jsonl(self, name: str) -> list[Any]:
        """The JSON-lines file ``name`` of the run folder, one value per non-empty line.

        Raises:
            ResultError: if it is missing or a line is not JSON.
        """
        path = self.folder / name
        try:
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ResultError(f"cannot read {path}: {error}") from None


def load_result(path: str | Path, root: str | Path | None = None) -> ResultRecord:
    """Read one record.

    Args:
        path: a run folder (holding ``provenance.json``), a ``provenance.json``, or a bench JSON
            file (``{"result": ..., "provenance": ...}``).
        root: the results folder, for :attr:`ResultRecord.name`.

    Returns:
        The record.

    Raises:
        ResultError: if the path does not exist, the folder has no ``provenance.json``, the file
            is not a JSON object, a bench file has no ``provenance``, or a provenance field of
            :data:`PROVENANCE_FIELDS` is missing.
    """
    path = Path(path)
    if path.is_dir():
        path = path / PROVENANCE_FILE
        if not path.is_file():
            raise ResultError(f"{path.parent} holds no {PROVENANCE_FILE}: it is not the folder of a recorded run")
    if not path.is_file():
        raise ResultError(f"{path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ResultError(f"{path} must hold a JSON object, got {type(data).__name__}")
    result = None
    if path.name != PROVENANCE_FILE:
        if not isinstance(data.get("provenance"), dict) or "result" not in data:
            raise ResultError(f"{path} must hold {{\"result\": ..., \"provenance\": {{...}}}} "
                              f"(a bench record), got the keys {sorted(data)}")
        result, data = data["result"], data["provenance"]
    missing = [field for field in PROVENANCE_FIELDS if field not in data]
    if missing:
        raise ResultError(f"{path} lacks the provenance fields {missing}; "
                          "it was not written by a bayesnas-book command")
    if not isinstance(data["config"], dict) or not isinstance(data["git"], dict):
        raise ResultError(f"{path}: `config` and `git` must be JSON objects")
    return ResultRecord(path=path, kind=record_kind(data, path.name), provenance=data, result=result,
                        root=Path(root) if root is not None else None)


def iter_records(kind: str | None = None, root: str | Path | None = None, *,
                 strict: bool = False) -> Iterator[ResultRecord]:
    """Every record under the results folder, in path order, optionally of one kind.

    Args:
        kind: one of :data:`KINDS` (or another recorded subcommand), or ``None`` for all.
        root: the results folder (default :func:`results_folder`; none found means no record).
        strict: raise on a record that cannot be read instead of skipping it with a warning.

    Yields:
        The records of ``kind``.

    Raises:
        ValueError: if ``kind`` is an empty string or not a string.
        ResultError: if an explicit ``root`` is not a folder, or (``strict``) a record cannot be read.

    Warns:
        ResultWarning: for each record skipped because it cannot be read (not ``strict``).
    """
    if kind is not None and (not isinstance(kind, str) or not kind):
        raise ValueError(f"`kind` must be None or a command name such as {', '.join(KINDS)}; got {kind!r}")
    if root is None:
        folder = results_folder()
        if folder is None:
            return
    else:
        folder = Path(root)
        if not folder.is_dir():
            raise ResultError(f"the results folder {folder} does not exist or is not a folder")
    names = (PROVENANCE_FILE, *BENCH_FILES)
    paths = sorted(p for p in folder.rglob("*.json") if p.name in names and p.is_file())
    for path in paths:
        try:
            record = load_result(path, root=folder)
        except ResultError as error:
            if strict:
                raise
            warnings.warn(f"skipped {error}", ResultWarning, stacklevel=2)
            continue
        if kind is None or record.kind == kind:
            yield record


def _module_source(name: str, package_root: Path) -> Path | None:
    """The source file of module ``name`` (``bayesnas_book.x.y``) under ``package_root``, or ``None``."""
    parts = name.split(".")[1:]
    if not parts:
        candidates = [package_root / "__init__.py"]
    else:
        base = package_root.joinpath(*parts)
        candidates = [base / "__init__.py", base.with_name(base.name + ".py")]
    return next((path for path in candidates if path.is_file()), None)


def stale_modules(record: ResultRecord, package_root: str | Path | None = None) -> dict[str, str] | None:
    """The modules whose source differs from the one the record's run loaded.

    Args:
        record: the record (its ``modules`` provenance field).
        package_root: the ``bayesnas_book`` package folder to compare with (default: the one imported).

    Returns:
        ``{module: "changed" | "removed"}`` (empty when the record is fresh), or ``None`` when the
        record holds no module hashes (written before they were recorded: treat it as stale).
        :data:`~bayesnas_book.provenance.BOOKKEEPING_MODULES` are not compared.
    """
    from bayesnas_book.provenance import BOOKKEEPING_MODULES, PACKAGE, source_hash

    recorded = record.modules
    if recorded is None:
        return None
    if package_root is None:
        import bayesnas_book

        package_root = Path(bayesnas_book.__file__).parent
    root = Path(package_root)
    changes: dict[str, str] = {}
    for name, digest in sorted(recorded.items()):
        if name in BOOKKEEPING_MODULES:  # they compute no result (records written before they were left out)
            continue
        path = _module_source(name, root) if name == PACKAGE or name.startswith(PACKAGE + ".") else None
        if path is None:
            changes[name] = "removed"
        elif source_hash(path) != digest:
            changes[name] = "changed"
    return changes


def regenerate_command(record: ResultRecord) -> str:
    """The command line that writes ``record`` again, as a ``bayesnas-book`` command run from the repository root.

    The recorded command with ``python -m bayesnas_book.cli`` shown as ``bayesnas-book`` and an
    absolute path into ``data/results`` shown from ``data/results`` on.
    """
    command = _ABSOLUTE_RESULTS_PREFIX.sub("", str(record.provenance["command"]))
    return re.sub(r"^\S*python\S*\s+-m\s+bayesnas_book\.cli\b", "bayesnas-book", command)
