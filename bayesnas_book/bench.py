"""`bayesnas-book bench`: what a search step costs, as ratios against a baseline in the same process.

For the supernet of a profile, on synthetic data of the profile's image shape and batch size:

* images per second of a weight step (forward, backward, SGD; switches frozen) — the baseline;
* images per second of a switch step (the same plus the reweighted group penalty and switch
  gradients), as a ratio to the weight step;
* the same switch step on the *straightforward* supernet — the shape of the official code: every
  op computed and summed in Python per edge, float32, NCHW, eager, the loss read back with
  ``.item()`` every step — and the speed-up of the profile's fast path (``search.amp``,
  ``search.channels_last``, ``search.compile``) over it, with the peak memory of both on a GPU;
* each curvature method (``recursion``, ``mc_ggn``, ``exact_ggn`` where affordable) per batch, as a
  ratio to one forward+backward of the same batch;
* with ``fusion=True``, the switch step and the recursion of the same fast path with the other
  edge evaluation (channel-stacked convolution ops, ``search.fused_edges``, or plain), and the
  number of compute ops each dispatches per switch step (:func:`count_compute_ops`: what a GPU
  launches as kernels, roughly; a count, not a timing);
* the share of a whole search's wall time spent outside weight training (curvature and update),
  projected from these per-step costs and the profile's schedule, and the projected wall time of
  the whole search on this device.

Every figure is the median over ``repeats`` timed repetitions, with the spread (min, max); the
timings of the methods being compared are interleaved, so a drifting machine load hits all alike.
Results print as a table and are written as JSON with provenance. Timings never enter a test.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import (
    TorchDispatchMode,  # also the base of torch's FlopCounterMode
)

from bayesnas_book.bayes.laplace import initial_state, penalty_weights, switch_penalty
from bayesnas_book.config import RunConfig
from bayesnas_book.cpu_kernels import channels_last_hazard, cpu_bf16_unsupported
from bayesnas_book.curvature.api import switch_curvature
from bayesnas_book.device import resolve_device
from bayesnas_book.seeding import seed_everything, with_default_dtype
from bayesnas_book.space.supernet import CELL_TYPES, Supernet, SupernetSpec
from bayesnas_book.train.precision import amp_dtype, autocast, compiled_forward, to_memory_format

__all__ = ["IMAGE_SHAPES", "bench_search", "count_compute_ops", "format_bench", "peak_memory_bytes", "summarize_times",
           "time_interleaved"]

IMAGE_SHAPES = {"digits": (1, 8, 8), "cifar10": (3, 32, 32), "mnist": (1, 28, 28)}
TRAIN_IMAGES = {"digits": 1078, "cifar10": 45_000, "mnist": 54_000}  # search-training images after validation


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(functions: dict[str, Callable[[], None]], device: torch.device, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Wall seconds of each function, ``repeats`` times, the functions interleaved in every round.

    Args:
        functions: name -> a function that runs one step.
        device: synchronised before and after each call (CUDA work is asynchronous).
        repeats: timed rounds; warmup: untimed rounds first.

    Returns:
        name -> ``repeats`` durations in seconds.
    """
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def summarize_times(times: dict[str, list[float]], batch_size: int, baseline: str) -> list[dict[str, Any]]:
    """Rows of median / min / max seconds, images per second and the ratio to ``baseline``'s median."""
    reference = statistics.median(times[baseline])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append({"name": name, "median_s": median, "min_s": min(values), "max_s": max(values),
                     "images_per_s": batch_size / median, "ratio_to_baseline": median / reference})
    return rows


def peak_memory_bytes(step: Callable[[], None], device: torch.device) -> int | None:
    """Peak CUDA memory one call of ``step`` allocates above what was held before it; ``None`` off CUDA."""
    if device.type != "cuda":
        return None
    _sync(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - before


_ALLOCATIONS = {"aten.empty.memory_format", "aten.empty_strided.default", "aten.empty_like.default"}


class _ComputeOpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if not func.is_view and str(func) not in _ALLOCATIONS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def count_compute_ops(step: Callable[[], None]) -> int:
    """How many compute ops (aten ops that are neither views nor bare allocations) ``step`` dispatches.

    Forward and backward both count. On a GPU each is about one kernel launch, which is what
    bounds a step of small tensors; on any device it is a deterministic count, not a timing.
    """
    with _ComputeOpCounter() as counter:
        step()
    return counter.count


def _supernet(config: RunConfig, shape: tuple[int, ...], device: torch.device, fast: bool,
              fused_edges: bool | None = None) -> Supernet:
    """The profile's supernet, seeded the same way; ``fast`` applies ``search.channels_last``.

    ``fused_edges`` defaults to ``search.fused_edges`` for the fast path, plain edges otherwise.
    """
    torch.manual_seed(config.seed)
    search = config.search
    fused = (search.fused_edges and fast) if fused_edges is None else fused_edges
    model = Supernet(SupernetSpec(in_channels=shape[0], num_classes=10, channels=search.channels, layout=search.layout,
                                  stem_multiplier=search.stem_multiplier, space=search.space,
                                  fused_edges=fused)).to(device).train()
    if fast and search.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _without_unsafe_cpu_settings(config: RunConfig, shape: tuple[int, ...],
                                  device: torch.device) -> tuple[RunConfig, dict[str, str]]:
    """``config`` with the fast-path settings this CPU has no safe kernels for turned off, and why."""
    skipped: dict[str, str] = {}
    search = config.search
    if device.type == "cpu" and search.amp in ("bf16", "auto") and amp_dtype(search.amp, device) is not None \
            and (reason := cpu_bf16_unsupported()):
        skipped["amp"], search = reason, dataclasses.replace(search, amp="off")
    if search.channels_last and (reason := channels_last_hazard(_supernet(config, shape, device, fast=False), device)):
        skipped["channels_last"], search = reason, dataclasses.replace(search, channels_last=False)
    return dataclasses.replace(config, search=search), skipped


@with_default_dtype(torch.float32)  # the kernels a real run uses, whatever the profile computes in
def bench_search(config: RunConfig, repeats: int = 5, warmup: int = 2, exact: bool = False,
                 straightforward: bool = True, fusion: bool = False) -> dict[str, Any]:
    """Measure a search step of ``config``'s supernet (see the module docstring).

    Args:
        config: the run configuration (``search`` section, ``data.batch_size``, ``data.dataset``).
        repeats: timed repetitions (median and spread), >= 1.
        warmup: untimed repetitions first, >= 0.
        exact: also time ``exact_ggn`` (tens of forward+backward passes per batch: opt-in).
        straightforward: also time the straightforward supernet's switch step (the fast path's baseline).
        fusion: also time the fast path with the other edge evaluation (``search.fused_edges``
            flipped) and count the compute ops of both (module docstring).

    Returns:
        A JSON-ready dict: ``rows`` (name, seconds median/min/max, images_per_s, ratio), ``share``
        (projected share of search wall time outside weight training), ``projected_search_s``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"`repeats` must be >= 1 and `warmup` >= 0, got {repeats} and {warmup}")
    seed_everything(config.seed, deterministic=config.deterministic, num_threads=config.num_threads)
    device = resolve_device(config.device)
    shape = IMAGE_SHAPES[config.data.dataset] if config.data.dataset in IMAGE_SHAPES else (3, 32, 32)
    config, skipped = _without_unsafe_cpu_settings(config, shape, device)
    search, B = config.search, config.data.batch_size
    dtype = amp_dtype(search.amp, device)
    model = _supernet(config, shape, device, fast=True)
    plain = _supernet(config, shape, device, fast=False)
    x = torch.randn(B, *shape, device=device)
    y = torch.randint(0, 10, (B,), device=device)
    x_fast = to_memory_format(x, search.channels_last)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    omega = {kind: initial_state(model.graphs[kind], dtype=torch.float32)[1].to(device) for kind in CELL_TYPES}

    def penalty(net: Supernet) -> torch.Tensor:
        return sum(switch_penalty(net.switch_values(k), penalty_weights(omega[k], search.lambda_o, search.lambda_c))
                   for k in CELL_TYPES)

    def fast_path(net: Supernet) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.optim.Optimizer]:
        """``net``'s (compiled, with ``search.compile``) forward and its SGD optimiser."""
        forward = compiled_forward(net, search.compile, search.compile_mode)
        return forward, torch.optim.SGD(net.parameters(), lr=1e-3, momentum=search.momentum)

    def training_step(net: Supernet, forward: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer,
                      train_switches: bool) -> Callable[[], None]:
        """A weight step (switches frozen) or a switch step (switches and their penalty too) of ``net``."""
        switches = net.switch_parameters()

        def step() -> None:
            for p in switches:
                p.requires_grad_(train_switches)
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                loss = F.cross_entropy(forward(x_fast), y)
            scaler.scale(loss + penalty(net) if train_switches else loss).backward()
            scaler.step(optimizer)
            scaler.update()
        return step

    forward, optimizer = fast_path(model)
    weight_step, switch_step = training_step(model, forward, optimizer, False), training_step(model, forward, optimizer, True)
    plain_optimizer = torch.optim.SGD(plain.parameters(), lr=1e-3, momentum=search.momentum)

    def straightforward_step() -> None:
        plain_optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(plain(x), y)
        (loss + penalty(plain)).backward()
        plain_optimizer.step()
        loss.item()  # the official loop logs the loss every step: a host synchronisation

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = F.cross_entropy(forward(x_fast), y)
        loss.backward()

    def curvature(net: Supernet, method: str) -> Callable[[], None]:
        def run() -> None:
            with autocast(device, dtype):
                switch_curvature(net, [(x_fast, y)], method=method)
        return run

    functions: dict[str, Callable[[], None]] = {"forward+backward": forward_backward, "weight step": weight_step,
                                                "switch step": switch_step}
    if straightforward:
        functions["straightforward switch step"] = straightforward_step
    for method in ("recursion", "mc_ggn") + (("exact_ggn",) if exact else ()):
        functions[f"curvature {method}"] = curvature(model, method)
    fusion_result = None
    own = "fused edges" if search.fused_edges else "plain edges"  # the profile's edge evaluation
    if fusion:
        other = "plain edges" if search.fused_edges else "fused edges"
        other_net = _supernet(config, shape, device, fast=True, fused_edges=not search.fused_edges)
        functions[f"switch step, {other}"] = training_step(other_net, *fast_path(other_net), True)
        functions[f"curvature recursion, {other}"] = curvature(other_net, "recursion")
        # counted eagerly (a compiled step is one graph); a throwaway optimiser: the timed ones keep their state
        fusion_result = {"compared": other, "compute_ops_per_switch_step": {
            name: count_compute_ops(training_step(net, net, torch.optim.SGD(net.parameters(), lr=0.0), True))
            for name, net in ((own, model), (other, other_net))}}
    times = time_interleaved(functions, device, repeats, warmup)
    rows = summarize_times(times, B, baseline="forward+backward")
    for row in rows:
        row["ratio_to_forward_backward"] = row.pop("ratio_to_baseline")
    by_name = {r["name"]: r["median_s"] for r in rows}
    if fusion_result is not None:
        def seconds(step: str, edges: str) -> float:
            return by_name[step if edges == own else f"{step}, {edges}"]

        # > 1: the fused edges are faster
        fusion_result["speedup_of_fused_edges"] = {
            step: seconds(step, "plain edges") / seconds(step, "fused edges") for step in ("switch step", "curvature recursion")}
    memory = {"switch step": peak_memory_bytes(switch_step, device),
              "straightforward switch step": peak_memory_bytes(straightforward_step, device) if straightforward else None}
    train_images = TRAIN_IMAGES.get(config.data.dataset, 45_000)
    warm_steps = search.warmup_epochs * train_images * search.warmup_fraction / B
    switch_steps = search.rounds * search.switch_epochs * train_images * (1 - search.warmup_fraction) / B
    curvature = search.rounds * search.curvature_batches * by_name[f"curvature {search.curvature_method}"] \
        if f"curvature {search.curvature_method}" in by_name else float("nan")
    training = warm_steps * by_name["weight step"] + switch_steps * by_name["switch step"]
    return {
        "device": str(device),
        "batch_size": B,
        "image_shape": list(shape),
        "switches": sum(p.numel() for p in model.switch_parameters()),
        "weights": sum(p.numel() for p in model.weight_parameters()),
        "repeats": repeats,
        "fast_path": {"amp": str(dtype).removeprefix("torch.") if dtype is not None else "off",
                      "channels_last": search.channels_last,
                      "compile": search.compile_mode if search.compile else False,
                      "fused_edges": search.fused_edges},
        "skipped": skipped,
        "fusion": fusion_result,
        "rows": rows,
        "speedup_vs_straightforward": by_name["straightforward switch step"] / by_name["switch step"] if straightforward else None,
        "peak_memory_bytes": memory,
        "share_outside_weight_training": curvature / (training + curvature),
        "projected_search_s": training + curvature,
        "projected_search_gpu_days": (training + curvature) / 86_400 if device.type == "cuda" else None,
    }


def format_bench(result: dict[str, Any]) -> str:
    """The benchmark as a text table."""
    lines = [f"supernet: {result['switches']} switches, {result['weights']:,} weights; batch {result['batch_size']} "
             f"of {tuple(result['image_shape'])} on {result['device']} (median of {result['repeats']})",
             f"{'step':<36}{'median ms':>11}{'min..max ms':>17}{'images/s':>11}{'x fwd+bwd':>11}"]
    for row in result["rows"]:
        spread = f"{1e3 * row['min_s']:.1f}..{1e3 * row['max_s']:.1f}"
        lines.append(f"{row['name']:<36}{1e3 * row['median_s']:>11.1f}{spread:>17}{row['images_per_s']:>11.0f}"
                     f"{row['ratio_to_forward_backward']:>11.2f}")
    fast = result["fast_path"]
    for setting, reason in (result.get("skipped") or {}).items():
        lines.append(f"fast path without {setting}: {reason}")
    if result["speedup_vs_straightforward"] is not None:
        lines.append(f"fast path (amp {fast['amp']}, channels_last {fast['channels_last']}, compile {fast['compile']}): "
                     f"switch step {result['speedup_vs_straightforward']:.2f}x the straightforward one's images/s")
    memory = result["peak_memory_bytes"]
    if memory["switch step"] is not None and memory["straightforward switch step"] is not None:
        lines.append(f"peak memory of a switch step: {memory['switch step'] / 2**20:.0f} MiB "
                     f"(straightforward {memory['straightforward switch step'] / 2**20:.0f} MiB)")
    fusion = result.get("fusion")
    if fusion:
        speed, ops = fusion["speedup_of_fused_edges"], fusion["compute_ops_per_switch_step"]
        lines.append(f"fused edges: switch step {speed['switch step']:.2f}x, recursion {speed['curvature recursion']:.2f}x "
                     f"the plain edges' speed; compute ops per switch step {ops['fused edges']} vs {ops['plain edges']}")
    lines.append(f"projected search: {result['projected_search_s']:.0f} s, "
                 f"{100 * result['share_outside_weight_training']:.1f}% of it outside weight training")
    return "\n".join(lines)
