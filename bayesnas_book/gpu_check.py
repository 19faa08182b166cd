"""The GPU check: CUDA correctness of the curvature, then the benchmarks at the paper's sizes.

``bayesnas-book bench --suite gpu-check --out data/results`` runs, in one process (under eight
minutes on one H100-class GPU):

1. **Correctness** on a small supernet (``C = 4``, one normal and one reduction cell, 8x8 images):
   the ``recursion`` and ``exact_ggn`` switch curvatures on the GPU against the same methods on the
   CPU, in float64 (they must agree to ``1e-9`` relative error), and the GPU curvatures of the
   methods the search runs under mixed precision (``recursion``, and ``mc_ggn`` with the same
   seeded label draws; bf16, or fp16 where bf16 is missing) against the GPU float32 ones (relative
   error reported and bounded by :data:`MIXED_PRECISION_TOLERANCE`), the prune/keep agreement
   of the recursion with the exact GGN, and the recursion of the fused-edge supernet
   (``search.fused_edges``) on the GPU against the plain one on the CPU, in float64.
2. **The search step** of the paper-profile supernet on synthetic CIFAR-shaped data at the
   official batch (18) and the paper profile's batch: fast path vs the straightforward supernet,
   the curvature methods vs one forward+backward, fused vs plain edges (speed and compute ops
   per step), peak memory, and the projected wall time of the full paper search in GPU days.
3. **Evaluation training**: the 20-cell CIFAR-10 network at batch 64, fp32 vs mixed precision vs
   channels_last (vs ``torch.compile`` with ``compile=True``), images/s and peak memory.
   With ``compile=True`` the search step at the official batch is also timed compiled; both
   compile in ``reduce-overhead`` mode (CUDA graphs, no per-kernel launch cost).
4. **Scaling** of the search step and the curvature with the batch size.

Everything is written to ``gpu_check.json`` with provenance (the card's name is in it). With
``tiny=True`` the same code runs at toy sizes on any device, which is how the test suite checks
the script on a CPU.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from bayesnas_book.bench import bench_search
from bayesnas_book.bench_scaling import bench_scaling
from bayesnas_book.bench_train import TRAIN_VARIANTS, bench_training, training_amp_dtype
from bayesnas_book.config import RunConfig, load_config
from bayesnas_book.curvature.api import switch_curvature
from bayesnas_book.device import resolve_device
from bayesnas_book.space.supernet import Supernet, SupernetSpec

__all__ = ["MIXED_PRECISION_TOLERANCE", "curvature_correctness", "format_gpu_check", "gpu_check_config", "run_gpu_check"]

MIXED_PRECISION_TOLERANCE = 0.1  # relative error of a bf16/fp16 forward's curvature vs float32
FLOAT64_TOLERANCE = 1e-9
OFFICIAL_SEARCH_BATCH = 18


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def curvature_correctness(device: torch.device, seed: int = 0, batch_size: int = 16) -> dict[str, Any]:
    """Curvature on ``device`` vs the CPU in float64, and mixed precision vs float32 on ``device``.

    Args:
        device: the device under test.
        seed: seeds the supernet, the batch and the Monte-Carlo labels.
        batch_size: images in the batch (the exact GGN costs ``batch_size * 10`` backward passes).

    Returns:
        ``{"float64": {method: relative error vs CPU}, "mixed_precision": {method: relative error vs
        float32}, "mixed_dtype": str, "prune_keep_agreement": float, "passed": bool}``.
    """
    torch.manual_seed(seed)
    model = Supernet(SupernetSpec(in_channels=1, num_classes=10, channels=4, layout="NR", stem_multiplier=3)).train()
    generator = torch.Generator().manual_seed(seed)
    batch = (torch.randn(batch_size, 1, 8, 8, generator=generator),
             torch.randint(0, 10, (batch_size,), generator=generator))
    result: dict[str, Any] = {"float64": {}, "mixed_precision": {}}
    reference: dict[str, torch.Tensor] = {}
    for method in ("recursion", "exact_ggn"):
        cpu = switch_curvature(model.double(), [(batch[0].double(), batch[1])], method=method).diagonal
        gpu_model = model.double().to(device)
        gpu = switch_curvature(gpu_model, [(batch[0].double().to(device), batch[1].to(device))], method=method).diagonal
        model = gpu_model.cpu()
        result["float64"][method] = _relative_error(gpu, cpu)
        reference[method] = cpu
    fused = Supernet(dataclasses.replace(model.spec, fused_edges=True)).train().double()
    fused.load_state_dict(model.state_dict())
    fused_gpu = switch_curvature(fused.to(device), [(batch[0].double().to(device), batch[1].to(device))],
                                 method="recursion").diagonal
    result["float64"]["recursion, fused edges"] = _relative_error(fused_gpu, reference["recursion"])
    mixed = training_amp_dtype(device)
    result["mixed_dtype"] = str(mixed).removeprefix("torch.")
    model = model.float().to(device)
    x, y = batch[0].to(device), batch[1].to(device)
    def options(method: str) -> dict[str, Any]:  # the same seeded label draws for both precisions
        if method == "mc_ggn":
            return {"num_samples": 16, "generator": torch.Generator(device).manual_seed(seed)}
        return {}

    for method in ("recursion", "mc_ggn"):
        full = switch_curvature(model, [(x, y)], method=method, **options(method)).diagonal
        with torch.autocast(device.type, dtype=mixed):
            low = switch_curvature(model, [(x, y)], method=method, **options(method)).diagonal
        result["mixed_precision"][method] = _relative_error(low, full)
    threshold = reference["exact_ggn"].median()
    agree = ((reference["recursion"] > threshold) == (reference["exact_ggn"] > threshold)).double().mean()
    result["prune_keep_agreement"] = float(agree)
    result["passed"] = (max(result["float64"].values()) <= FLOAT64_TOLERANCE
                        and max(result["mixed_precision"].values()) <= MIXED_PRECISION_TOLERANCE)
    return result


def gpu_check_config(device: str = "auto", tiny: bool = False) -> RunConfig:
    """The paper profile on ``device``; with ``tiny``, shrunk to toy sizes (the same code path)."""
    overrides = [f'device="{device}"', 'search.compile_mode="reduce-overhead"', 'train.compile_mode="reduce-overhead"']
    if tiny:  # the same code path at toy sizes
        overrides += ["num_threads=1", "search.channels=2", 'search.layout="NR"', "network.channels=2", "network.num_cells=3",
                      "data.batch_size=4", "train.batch_size=4"]
    return load_config("paper", overrides=overrides)


def run_gpu_check(config: RunConfig, tiny: bool = False, repeats: int = 5, compile: bool = False,
                  warmup: int = 2) -> dict[str, Any]:
    """Run the whole check (module docstring); ``bayesnas-book bench`` writes it as ``gpu_check.json``.

    Args:
        config: :func:`gpu_check_config`'s configuration (its ``device``: ``"auto"`` takes CUDA).
        tiny: ``config`` is the toy-size one (for a CPU); the numbers then say nothing about the
            paper's sizes.
        repeats: timed repetitions per benchmark; warmup: untimed ones first.
        compile: add the ``torch.compile`` variants: evaluation training, and the search step at the
            official batch (``search_compiled``); compiling takes minutes.

    Returns:
        The JSON-ready result (``correctness``, ``search`` per batch size, ``training``,
        ``scaling``, ``projected_search_gpu_days``).

    Raises:
        ValueError: without a CUDA device unless ``tiny``.
    """
    started = time.time()
    target = resolve_device(config.device)
    if target.type != "cuda" and not tiny:
        raise ValueError(f"the GPU check measures the paper's sizes and needs a CUDA device, got {target}; "
                         "pass --tiny to run the same code at toy sizes on this device")
    result: dict[str, Any] = {"device": str(target), "tiny": tiny,
                              "card": torch.cuda.get_device_name(target) if target.type == "cuda" else None}
    result["correctness"] = curvature_correctness(target, seed=config.seed, batch_size=4 if tiny else 16)
    batches = (2, config.data.batch_size) if tiny else (OFFICIAL_SEARCH_BATCH, config.data.batch_size)
    result["search"] = {}
    for batch in dict.fromkeys(batches):
        setting = dataclasses.replace(config, data=dataclasses.replace(config.data, batch_size=batch))
        result["search"][str(batch)] = bench_search(setting, repeats=repeats, warmup=warmup, fusion=True)
    if compile:
        setting = dataclasses.replace(config, data=dataclasses.replace(config.data, batch_size=batches[0]),
                                      search=dataclasses.replace(config.search, compile=True))
        result["search_compiled"] = bench_search(setting, repeats=repeats, warmup=max(warmup, 1), straightforward=False)
    variants = TRAIN_VARIANTS if compile else TRAIN_VARIANTS[:-1]
    result["training"] = bench_training(config, repeats=repeats, warmup=warmup, variants=variants)
    result["scaling"] = bench_scaling(config, repeats=max(1, repeats // 2), warmup=min(warmup, 1), factors=("batch",))
    paper_batch = result["search"][str(config.data.batch_size)]
    result["projected_search_gpu_days"] = paper_batch["projected_search_s"] / 86_400
    result["wall_s"] = time.time() - started
    return result


def format_gpu_check(result: dict[str, Any]) -> str:
    """A short text summary of :func:`run_gpu_check`'s result."""
    c = result["correctness"]
    lines = [f"GPU check on {result['card'] or result['device']}{' (tiny sizes)' if result['tiny'] else ''}",
             "curvature float64 vs CPU: " + ", ".join(f"{m} {e:.1e}" for m, e in c["float64"].items()),
             f"curvature {c['mixed_dtype']} vs float32: " + ", ".join(f"{m} {e:.3f}" for m, e in c["mixed_precision"].items()),
             f"correctness {'passed' if c['passed'] else 'FAILED'}"]
    for batch, search in result["search"].items():
        rows = {r["name"]: r for r in search["rows"]}
        lines.append(f"search batch {batch}: switch step {rows['switch step']['images_per_s']:.0f} img/s, "
                     f"{search['speedup_vs_straightforward']:.2f}x straightforward; curvature "
                     + ", ".join(f"{n.removeprefix('curvature ')} {r['ratio_to_forward_backward']:.2f}x"
                                 for n, r in rows.items() if n.startswith("curvature ")) + " fwd+bwd")
        fusion = search["fusion"]
        lines.append(f"  fused edges: switch step {fusion['speedup_of_fused_edges']['switch step']:.2f}x, recursion "
                     f"{fusion['speedup_of_fused_edges']['curvature recursion']:.2f}x the plain edges' speed")
    compiled = result.get("search_compiled")
    if compiled:
        rows = {r["name"]: r for r in compiled["rows"]}
        lines.append(f"search batch {compiled['batch_size']}, compiled ({compiled['fast_path']['compile']}): switch step "
                     f"{rows['switch step']['images_per_s']:.0f} img/s")
    lines.append(f"projected paper search: {result['projected_search_gpu_days']:.4f} GPU days (target < 0.01)")
    return "\n".join(lines)
