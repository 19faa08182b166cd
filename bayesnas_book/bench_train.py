"""Training throughput of the evaluation network: fp32 vs mixed precision vs channels_last vs compiled.

One process, one network built from an official released genotype with the profile's
``[network]`` width and depth, synthetic images of the profile's dataset shape at the profile's
training batch size. Each variant trains its own copy of the same initial weights (SGD, the
profile's momentum); the variants' steps are interleaved (:func:`~bayesnas_book.bench.time_interleaved`)
and reported as images per second and as a ratio to the fp32 NCHW eager baseline, with the peak
memory of one step on a GPU.

Variants (``amp`` means bf16 where the device has it, fp16 with a ``GradScaler`` on older GPUs, and
bf16 on a CPU, which runs it but rarely gains from it):

============================  ============================================================
``fp32``                      float32, NCHW, eager: the baseline
``amp``                       autocast
``channels_last``             NHWC weights and images
``amp+channels_last``         both (the paper profile's setting)
``amp+channels_last+compile`` both, ``torch.compile``d in ``train.compile_mode`` (opt-in: minutes)
============================  ============================================================
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bayesnas_book.bench import IMAGE_SHAPES, peak_memory_bytes, summarize_times, time_interleaved
from bayesnas_book.config import RunConfig
from bayesnas_book.cpu_kernels import channels_last_hazard, cpu_bf16_unsupported
from bayesnas_book.device import resolve_device
from bayesnas_book.models.eval_net import cifar_network
from bayesnas_book.seeding import seed_everything, with_default_dtype
from bayesnas_book.space.genotype import get_genotype
from bayesnas_book.train.losses import split_output
from bayesnas_book.train.precision import autocast, compiled_forward, to_memory_format

__all__ = ["TRAIN_VARIANTS", "bench_training", "format_training_bench", "training_amp_dtype", "variant_skip_reason"]

TRAIN_VARIANTS = ("fp32", "amp", "channels_last", "amp+channels_last", "amp+channels_last+compile")
DEFAULT_GENOTYPE = "bayesnas_cifar10_lambda0.01"


def training_amp_dtype(device: torch.device) -> torch.dtype:
    """The mixed-precision dtype a variant named ``amp`` uses on ``device``."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _training_step(model: nn.Module, variant: str, x: torch.Tensor, y: torch.Tensor, momentum: float,
                   device: torch.device, compile_mode: str = "default") -> Callable[[], None]:
    """One SGD step of ``model`` (already in the variant's memory format) as the variant trains it."""
    parts = set(variant.split("+"))
    dtype = training_amp_dtype(device) if "amp" in parts else None
    forward = compiled_forward(model, "compile" in parts, compile_mode)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=momentum)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    images = to_memory_format(x, "channels_last" in parts)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = F.cross_entropy(split_output(forward(images))[0], y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def variant_skip_reason(variant: str, model: nn.Module, device: torch.device) -> str | None:
    """Why ``variant`` is not measured on ``device`` (a CPU without its kernels), or ``None``."""
    parts = set(variant.split("+"))
    if device.type != "cpu":
        return None
    if "amp" in parts and (reason := cpu_bf16_unsupported()):
        return reason
    if "channels_last" in parts and (reason := channels_last_hazard(model, device)):
        return reason
    return None


@with_default_dtype(torch.float32)  # the kernels a real run uses, whatever the profile computes in
def bench_training(config: RunConfig, repeats: int = 5, warmup: int = 2, variants: tuple[str, ...] | None = None,
                   genotype: str = DEFAULT_GENOTYPE, batch_size: int | None = None) -> dict[str, Any]:
    """Images per second of an evaluation-network training step, per variant (module docstring).

    Args:
        config: the profile (``network`` width and depth, ``data.dataset`` image shape,
            ``train.batch_size``, ``train.momentum``, ``seed``, ``device``).
        repeats: timed repetitions (median and spread), >= 1; warmup: untimed first, >= 0 (compiled
            variants compile during the first call, so give them at least 1).
        variants: names from :data:`TRAIN_VARIANTS`; default every one but the compiled one.
        genotype: an official genotype name (see :func:`~bayesnas_book.space.genotype.genotype_names`).
        batch_size: images per step; default ``config.train.batch_size``.

    Returns:
        A JSON-ready dict: ``rows`` (name, seconds median/min/max, images_per_s, ratio_to_fp32; or
        name and ``skipped``, the reason, for a variant this CPU has no safe kernels for, see
        :func:`variant_skip_reason`), ``peak_memory_bytes`` per measured variant (``None`` off a
        GPU), the network and the batch.

    Raises:
        ValueError: for an unknown variant, ``repeats < 1`` or ``warmup < 0``.
    """
    variants = tuple(variants) if variants is not None else TRAIN_VARIANTS[:-1]
    unknown = [v for v in variants if v not in TRAIN_VARIANTS]
    if unknown or not variants:
        raise ValueError(f"unknown training variant(s) {unknown or variants}; choose from {', '.join(TRAIN_VARIANTS)}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"`repeats` must be >= 1 and `warmup` >= 0, got {repeats} and {warmup}")
    seed_everything(config.seed, deterministic=config.deterministic, num_threads=config.num_threads)
    device = resolve_device(config.device)
    shape = IMAGE_SHAPES.get(config.data.dataset, (3, 32, 32))
    B = batch_size or config.train.batch_size
    base = cifar_network(get_genotype(genotype), channels=config.network.channels, num_cells=config.network.num_cells,
                         in_channels=shape[0]).to(device).train()
    x = torch.randn(B, *shape, device=device)
    y = torch.randint(0, 10, (B,), device=device)
    steps: dict[str, Callable[[], None]] = {}
    if "fp32" not in variants:
        variants = ("fp32", *variants)  # the baseline is always measured
    skipped = {v: reason for v in variants if (reason := variant_skip_reason(v, base, device))}
    for variant in variants:
        if variant in skipped:
            continue
        model = copy.deepcopy(base)
        if "channels_last" in variant:
            model = model.to(memory_format=torch.channels_last)
        steps[variant] = _training_step(model, variant, x, y, config.train.momentum, device, config.train.compile_mode)
    times = time_interleaved(steps, device, repeats, warmup)
    measured = {row["name"]: row for row in summarize_times(times, B, baseline="fp32")}
    for row in measured.values():
        row["ratio_to_fp32"] = row.pop("ratio_to_baseline")
    rows = [measured.get(v) or {"name": v, "skipped": skipped[v]} for v in variants]
    return {
        "device": str(device),
        "genotype": genotype,
        "network": {"channels": config.network.channels, "num_cells": config.network.num_cells,
                    "parameters": sum(p.numel() for p in base.parameters())},
        "batch_size": B,
        "image_shape": list(shape),
        "amp_dtype": str(training_amp_dtype(device)).removeprefix("torch."),
        "repeats": repeats,
        "rows": rows,
        "peak_memory_bytes": {variant: peak_memory_bytes(step, device) for variant, step in steps.items()},
    }


def format_training_bench(result: dict[str, Any]) -> str:
    """The training benchmark as a text table."""
    net = result["network"]
    lines = [f"evaluation network {result['genotype']}: {net['num_cells']} cells, C = {net['channels']}, "
             f"{net['parameters']:,} parameters; batch {result['batch_size']} of {tuple(result['image_shape'])} "
             f"on {result['device']}, amp = {result['amp_dtype']} (median of {result['repeats']})",
             f"{'variant':<28}{'median ms':>11}{'images/s':>11}{'x fp32 speed':>14}{'peak MiB':>10}"]
    for row in result["rows"]:
        if "skipped" in row:
            lines.append(f"{row['name']:<28}  skipped: {row['skipped']}")
            continue
        memory = result["peak_memory_bytes"][row["name"]]
        shown = f"{memory / 2**20:.0f}" if memory is not None else "-"
        lines.append(f"{row['name']:<28}{1e3 * row['median_s']:>11.1f}{row['images_per_s']:>11.0f}"
                     f"{1 / row['ratio_to_fp32']:>14.2f}{shown:>10}")
    return "\n".join(lines)
