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

import time
from pathlib import Path
from typing import Any

from bayesnas_book.bench import bench_search, format_bench
from bayesnas_book.bench_scaling import bench_scaling, format_scaling
from bayesnas_book.bench_train import TRAIN_VARIANTS, bench_training, format_training_bench
from bayesnas_book.config import RunConfig, config_to_dict
from bayesnas_book.device import resolve_device
from bayesnas_book.gpu_check import format_gpu_check, gpu_check_config, run_gpu_check
from bayesnas_book.provenance import provenance_record, write_json
from bayesnas_book.results import BENCH_FILES

__all__ = ["BENCH_SUITES", "run_suite"]

BENCH_SUITES = {suite: file for file, suite in BENCH_FILES.items()}  # suite -> the JSON file it writes


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
    if suite == "gpu-check":
        config = gpu_check_config(config.device, tiny)
        result = run_gpu_check(config, tiny=tiny, repeats=repeats, compile=compile)
        text = format_gpu_check(result)
    elif suite == "search":
        result = bench_search(config, repeats=repeats, exact=exact, fusion=fusion)
        text = format_bench(result)
    elif suite == "train":
        variants = TRAIN_VARIANTS if compile else TRAIN_VARIANTS[:-1]
        result = bench_training(config, repeats=repeats, variants=variants)
        text = format_training_bench(result)
    else:
        result = bench_scaling(config, repeats=repeats)
        text = format_scaling(result)
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        record = provenance_record(config_to_dict(config), resolve_device(config.device), started)
        write_json(folder / BENCH_SUITES[suite], {"result": result, "provenance": record})
    return result, text
