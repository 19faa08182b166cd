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
=============  ====================================================  ==================
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from bayesnas_book.bench import bench_search, format_bench
from bayesnas_book.bench_scaling import bench_scaling, format_scaling
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


def _measure(suite: str, config: RunConfig, repeats: int, exact: bool, compile: bool, tiny: bool, fusion: bool,
             train_variants: tuple[str, ...] | None = None) -> tuple[dict[str, Any], str]:
    """One suite's result and text table, computed in this process (arguments as :func:`run_suite`)."""
    if suite == "gpu-check":
        result = run_gpu_check(gpu_check_config(config.device, tiny), tiny=tiny, repeats=repeats, compile=compile)
        return result, format_gpu_check(result)
    if suite == "search":
        result = bench_search(config, repeats=repeats, exact=exact, fusion=fusion)
        return result, format_bench(result)
    if suite == "train":
        variants = train_variants or (TRAIN_VARIANTS if compile else TRAIN_VARIANTS[:-1])
        result = bench_training(config, repeats=repeats, variants=variants)
        return result, format_training_bench(result)
    result = bench_scaling(config, repeats=repeats)
    return result, format_scaling(result)


def _measure_cpu_isolated(suite: str, config: RunConfig, repeats: int, exact: bool, compile: bool,
                          fusion: bool) -> tuple[dict[str, Any], str]:
    """A CPU suite run in a child process (:func:`~bayesnas_book.isolation.call_isolated`).

    A native crash there (oneDNN kernels, see :mod:`bayesnas_book.cpu_kernels`) costs the rows that
    can cause it, not the run: the suite is measured again here without bf16 and channels_last,
    and the variants left out are reported as failed with the crash.
    """
    try:
        return call_isolated(_measure, suite, config, repeats, exact, compile, False, fusion,
                             what=f"bench --suite {suite}")
    except NativeCrash as crash:
        failed = f"failed: {crash}"
    if suite == "train":
        result, _ = _measure(suite, config, repeats, exact, compile, False, fusion, train_variants=("fp32",))
        asked = TRAIN_VARIANTS if compile else TRAIN_VARIANTS[:-1]
        result["rows"] += [{"name": v, "skipped": failed} for v in asked if v != "fp32"]
        return result, format_training_bench(result)
    safe = dataclasses.replace(config, search=dataclasses.replace(config.search, amp="off", channels_last=False))
    result, _ = _measure(suite, safe, repeats, exact, compile, False, fusion)
    result["failed"] = failed
    text = format_bench(result) if suite == "search" else format_scaling(result)
    return result, f"{text}\n{failed} (measured again without bf16 and channels_last)"


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
    if suite == "gpu-check" or resolve_device(config.device).type != "cpu":
        result, text = _measure(suite, config, repeats, exact, compile, tiny, fusion)
    else:
        result, text = _measure_cpu_isolated(suite, config, repeats, exact, compile, fusion)
    if suite == "gpu-check":
        config = gpu_check_config(config.device, tiny)
    if out is not None:
        folder = Path(out)
        prepare_run_folder(folder, [BENCH_SUITES[suite]])  # a killed write of this file left its temporary
        record = provenance_record(config_to_dict(config), resolve_device(config.device), started)
        write_json(folder / BENCH_SUITES[suite], {"result": result, "provenance": record})
    return result, text
