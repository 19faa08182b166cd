"""Atomic checkpoints that resume a run exactly.

Layout of a checkpoint file (a ``torch.save`` dict)::

    {
      "format": "bayesnas-book-checkpoint",  # identifies our files
      "format_version": 1,
      "library_version": "0.1.0",
      "kind": "search" | "train" | "compress",   # what wrote it; resume refuses another kind
      "config": {...},                          # the run's whole configuration (a dict)
      "step": {...},                            # where the run is: epoch, round, batch, ...
      "state": {...},                           # model, optimiser, scheduler, scaler, search state
      "rng": {"python": ..., "numpy": ..., "torch": ..., "cuda": [...]}
    }

Writes go to a temporary file in the same folder, are flushed and fsync'ed, then renamed over
the target with ``os.replace``, so a crash leaves either the old checkpoint or the new one,
never a partial file (nanoGPT's plain ``torch.save`` to the final path is what not to do).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bayesnas_book.atomic import atomic_writer, remove_stale_temporaries

__all__ = [
    "CheckpointError",
    "capture_rng_state",
    "claim_run_folder",
    "config_differences",
    "load_checkpoint",
    "prepare_run_folder",
    "restore_rng_state",
    "save_checkpoint",
]

FORMAT = "bayesnas-book-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, foreign, or from another kind of run."""


def capture_rng_state() -> dict[str, Any]:
    """Every random number generator state a run depends on."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | os.PathLike[str],
    kind: str,
    config: dict[str, Any],
    step: dict[str, Any],
    state: dict[str, Any],
) -> Path:
    """Write a checkpoint atomically (layout in the module docstring), with the RNG states."""
    from bayesnas_book import __version__

    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "kind": kind,
        "config": config,
        "step": step,
        "state": state,
        "rng": capture_rng_state(),
    }
    with atomic_writer(path) as handle:
        torch.save(payload, handle)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], kind: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` for a run of ``kind``.

    Raises:
        CheckpointError: if the file is missing, unreadable (truncated, not a torch file), not
            ours, of a newer format, or written by another kind of run; the message says what
            to do.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; start a new run without --resume")
    try:
        # the checkpoint holds numpy RNG state and plain config dicts, not only tensors
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # torch raises many types for a corrupt file
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(error).__name__}: {error}); "
            "it may be truncated or not a checkpoint: start a new run or pick another file"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} was not written by bayesnas-book (no '{FORMAT}' marker); refusing to resume from it")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {payload['format_version']}, newer than this library reads "
            f"({FORMAT_VERSION}); upgrade bayesnas-book"
        )
    if payload.get("kind") != kind:
        raise CheckpointError(f"{path} is a {payload.get('kind')!r} checkpoint, not a {kind!r} one; pass the right --out folder")
    return payload


def config_differences(saved: Any, current: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Every dotted key whose value differs between two nested config dicts: ``(key, saved, current)``."""
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(saved) | set(current)):
            found += config_differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return found
    return [] if saved == current else [(prefix.rstrip("."), saved, current)]


def claim_run_folder(
    out: Path,
    kind: str,
    outputs: Sequence[str],
    resume: bool,
    *,
    describe: str,
    resume_hint: str = "pass --resume to continue it",
    config: dict[str, Any] | None = None,
    checkpoint_name: str = "checkpoint.pt",
) -> dict[str, Any] | None:
    """Refuse to overwrite another run in ``out``; on resume, load its checkpoint and check it.

    Args:
        out: the run's output folder.
        kind: the checkpoint kind (``"search"``, ``"train"``, ``"compress"`` ...).
        outputs: the files a run of this kind writes besides its checkpoint.
        resume: continue the run in ``out``.
        describe: what such a run is called in messages, e.g. ``"a search"``.
        resume_hint: how the user asks to resume.
        config: the configuration now; when given, a resumed checkpoint must have the same.
        checkpoint_name: the checkpoint's file name in ``out``.

    Returns:
        ``None`` for a fresh run, else the loaded checkpoint payload.

    Raises:
        CheckpointError: ``out`` holds a run and ``resume`` is off (nothing is overwritten), or the
            checkpoint is missing, corrupt, foreign, or was written with another configuration.

    It only reads: ``out`` is created by :func:`prepare_run_folder` once the run's inputs are
    checked too, so a refused run leaves no folder behind.
    """
    checkpoint = out / checkpoint_name
    if not resume:
        taken = [name for name in (checkpoint_name, *outputs) if (out / name).exists()]
        if taken:
            raise CheckpointError(f"{out} already holds {describe} ({taken[0]}); {resume_hint}, "
                                  "or choose another output folder (nothing was overwritten)")
        return None
    payload = load_checkpoint(checkpoint, kind)
    if config is not None:
        differences = config_differences(payload["config"], config)
        if differences:
            listed = "; ".join(f"{key}: checkpoint {a!r}, now {b!r}" for key, a, b in differences[:6])
            raise CheckpointError(f"cannot resume {checkpoint}: its configuration differs ({listed}); "
                                  "resume with the same settings or start a new --out")
    return payload


def prepare_run_folder(out: Path, names: Sequence[str]) -> Path:
    """Create a claimed output folder (see :func:`claim_run_folder`) and clear what killed writes left.

    Call it after the run's inputs (configuration, dataset, genotype, checkpoint) are checked,
    before its first write: a run that refuses creates no folder. The atomic writer's stale
    temporaries of ``names`` (``.checkpoint.pt.XXXXXXXX.tmp`` ...) are removed, nothing else.

    Args:
        out: the run's output folder (parents are created as needed).
        names: every file the run writes there, its checkpoint included.

    Returns:
        ``out``.
    """
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out, names)
    return out
