"""`bayesnas-book bench --suite NAME`: one entry point for every benchmark, each saved with provenance.

=============  ====================================================  ==================
suite          what it measures                                      file in ``--out``
=============  ====================================================  ==================
``search``     a search step, the fast path vs the straightforward   ``bench.json``
               supernet, the curvature methods, the projected search
``train``      evaluation-network training: fp32 / AMP /             ``bench_train.json``
               channels_last (/ compiled)
``scaling``    search step and curvature vs batch, width, depth,     ``bench_scaling.json``
               switches
``gpu-check``  CUDA correctness of the curvature, then the above at  ``gpu_check.json``
               the paper's sizes (:mod:`bayesnas_book.gpu_check`)
``tree``       a tree-search step's stored activations, peak memory  ``bench_tree.json``
               and time, checkpointed vs plain (:mod:`.bench_tree`)
=============  ====================================================  ==================
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from bayesnas_book.bench import bench_search, format_bench
from bayesnas_book.bench_scaling import bench_scaling, format_scaling
from bayesnas_book.bench_tree import bench_tree, format_tree_bench
from bayesnas_book.bench_train import TRAIN_VARIANTS, bench_training, format_training_bench
from bayesnas_book.checkpoint import prepare_run_folder
from bayesnas_book.config import RunConfig, config_to_dict
from bayesnas_book.device import resolve_device
from bayesnas_book.gpu_check import format_gpu_check, gpu_check_config, run_gpu_check
from bayesnas_book.isolation import NativeCrash, call_isolated
from bayesnas_book.provenance import provenance_record, write_json
from bayesnas_book.results import BENCH_FILES

__all__ = ["BENCH_SUITES", "run_suite"]

BENCH_SUITES = {suite: file for file, suite in BENCH_FILES.items()}  # suite -> the JSON file it writes


_FORMATS = {"gpu-check": format_gpu_check, "search": format_bench, "train": format_training_bench,
            "scaling": format_scaling, "tree": format_tree_bench}  # suite -> its text table


def _train_variants(compile: bool) -> tuple[str, ...]:
    """The training variants a ``train`` suite measures: the compiled one only with ``compile``."""
    return TRAIN_VARIANTS if compile else TRAIN_VARIANTS[:-1]


def _measure(suite: str, config: RunConfig, repeats: int, exact: bool, compile: bool, tiny: bool, fusion: bool,
             train_variants: tuple[str, ...] | None = None) -> dict[str, Any]:
    """One suite's result, computed in this process (arguments as :func:`run_suite`)."""
    if suite == "gpu-check":
        return run_gpu_check(gpu_check_config(config.device, tiny), tiny=tiny, repeats=repeats, compile=compile)
    if suite == "search":
        return bench_search(config, repeats=repeats, exact=exact, fusion=fusion)
    if suite == "tree":  # isolates each variant itself: a CPU peak is measured in a fresh process
        return bench_tree(config, repeats=repeats)
    if suite == "train":
        return bench_training(config, repeats=repeats, variants=train_variants or _train_variants(compile))
    return bench_scaling(config, repeats=repeats)


def _measure_cpu_isolated(suite: str, config: RunConfig, repeats: int, exact: bool, compile: bool,
                          fusion: bool) -> tuple[dict[str, Any], str | None]:
    """A CPU suite run in a child process (:func:`~bayesnas_book.isolation.call_isolated`).

    A native crash there (oneDNN kernels, see :mod:`bayesnas_book.cpu_kernels`) costs the rows that
    can cause it, not the run: the suite is measured again here without bf16 and channels_last,
    and the variants left out are reported as failed with the crash.

    Returns:
        ``(result, None)``, or ``(result, failure)`` after a crash: the line the text table ends with.
    """
    try:
        return call_isolated(_measure, suite, config, repeats, exact, compile, False, fusion,
                             what=f"bench --suite {suite}"), None
    except NativeCrash as crash:
        failed = f"failed: {crash}"
    if suite == "train":
        result = _measure(suite, config, repeats, exact, compile, False, fusion, train_variants=("fp32",))
        result["rows"] += [{"name": v, "skipped": failed} for v in _train_variants(compile) if v != "fp32"]
        return result, None
    safe = dataclasses.replace(config, search=dataclasses.replace(config.search, amp="off", channels_last=False))
    result = _measure(suite, safe, repeats, exact, compile, False, fusion)
    result["failed"] = failed
    return result, f"{failed} (measured again without bf16 and channels_last)"


def run_suite(suite: str, config: RunConfig, out: str | Path | None, repeats: int = 5, exact: bool = False,
              compile: bool = False, tiny: bool = False, fusion: bool = False) -> tuple[dict[str, Any], str]:
    """Run one benchmark suite; write its JSON with provenance into ``out`` when given.

    Args:
        suite: a key of :data:`BENCH_SUITES`.
        config: the profile (``gpu-check`` always uses the paper profile, on ``config.device``).
        out: folder for the JSON file, or ``None``.
        repeats: timed repetitions (median and spread), >= 1.
        exact: ``search``: also time the exact GGN.
        compile: ``train`` and ``gpu-check``: add the ``torch.compile`` variant.
        tiny: ``gpu-check``: toy sizes (for a CPU).
        fusion: ``search``: also time the other edge evaluation (fused vs plain; ``gpu-check`` always does).

    Returns:
        ``(result, text table)``.

    Raises:
        ValueError: for an unknown suite.
    """
    if suite not in BENCH_SUITES:
        raise ValueError(f"unknown benchmark suite {suite!r}; choose from {', '.join(BENCH_SUITES)}")
    started = time.time()
    failure = None
    if suite in ("gpu-check", "tree") or resolve_device(config.device).type != "cpu":  # tree isolates its variants
        result = _measure(suite, config, repeats, exact, compile, tiny, fusion)
    else:
        result, failure = _measure_cpu_isolated(suite, config, repeats, exact, compile, fusion)
    text = _FORMATS[suite](result) + (f"\n{failure}" if failure else "")
    if suite == "gpu-check":
        config = gpu_check_config(config.device, tiny)
    if out is not None:
        folder = Path(out)
        prepare_run_folder(folder, [BENCH_SUITES[suite]])  # a killed write of this file left its temporary
        record = provenance_record(config_to_dict(config), resolve_device(config.device), started)
        write_json(folder / BENCH_SUITES[suite], {"result": result, "provenance": record})
    return result, text
