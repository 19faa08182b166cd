"""`bayesnas-book bench --suite tree`: memory and time of a tree-search step, checkpointed vs plain.

One switch-training step (forward, mean cross-entropy, backward to weights and switches) of the
tree supernet of ``config.tree`` (:class:`~bayesnas_book.space.tree_supernet.TreeSupernet`) at the
batch ``config.data.batch_size``, with and without per-unit gradient checkpointing. Measured:

* ``stored_bytes``: the bytes autograd keeps for the backward (tensors saved by the forward,
  unique storages, through :func:`torch.autograd.graph.saved_tensors_hooks`), plus under
  checkpointing the unit inputs each checkpoint keeps. The same on any machine;
* ``peak_bytes``: on a GPU the peak CUDA memory of the step above what was allocated before it;
  on a CPU the growth of the process's peak resident memory during the first full-batch step
  (gradients allocated and kernels loaded by a two-image step before it), each variant in a fresh
  child process (so that memory freed and kept by
  the allocator after one step does not hide the next step's demand);
* ``seconds``: the median step time over ``repeats``.
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

from bayesnas_book.bench import peak_memory_bytes
from bayesnas_book.config import RunConfig
from bayesnas_book.device import resolve_device
from bayesnas_book.isolation import call_isolated
from bayesnas_book.models.counting import count_parameters
from bayesnas_book.space.tree_supernet import TreeSupernet, build_tree_supernet

__all__ = ["bench_tree", "format_tree_bench", "stored_bytes"]

_CHANNELS = {"digits": 1, "mnist": 1, "cifar10": 3}
_SIZE = {"digits": 8, "mnist": 28, "cifar10": 32}


def stored_bytes(model: TreeSupernet, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes kept for the backward of one training forward of ``model`` on ``(x, y)``."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    if model.checkpoint:  # a checkpoint keeps its unit's input to run the unit again
        with torch.no_grad():
            h = model.net.stem(x)
            for unit in model.net.units:
                storages[h.untyped_storage().data_ptr() + 1] = h.untyped_storage().nbytes()
                h = unit(h)
    del loss
    return sum(storages.values())


def _rss_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def _current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * resource.getpagesize()
    except OSError:  # not Linux: the peak so far is the best lower bound there is
        return _rss_peak_bytes()


def _measure_variant(config: RunConfig, checkpoint: bool, repeats: int) -> dict[str, Any]:
    """One variant in this process: build, run one step for the peak, then time ``repeats`` steps."""
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    dataset = config.data.dataset
    model = build_tree_supernet(config, _CHANNELS.get(dataset, 3), 10).to(device)
    model.checkpoint = checkpoint
    model.train()
    batch = config.data.batch_size
    x = torch.randn(
        batch,
        _CHANNELS.get(dataset, 3),
        _SIZE.get(dataset, 32),
        _SIZE.get(dataset, 32),
        device=device,
    )
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        model.zero_grad(set_to_none=False)
        F.cross_entropy(model(x), y).backward()

    for p in model.parameters():  # gradients allocated up front: the peak below is the step's own
        p.grad = torch.zeros_like(p)
    if device.type == "cuda":
        step()
        peak = peak_memory_bytes(step, device)
    else:  # a fresh process: a two-image step loads the kernels, then the full step is measured
        model.zero_grad(set_to_none=False)
        F.cross_entropy(model(x[:2]), y[:2]).backward()
        before = _current_rss_bytes()
        step()
        peak = max(_rss_peak_bytes() - before, 0)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return {
        "checkpoint": checkpoint,
        "parameters": count_parameters(model),
        "stored_bytes": stored_bytes(model, x, y),
        "peak_bytes": peak,
        "seconds": statistics.median(times),
    }


def bench_tree(config: RunConfig, repeats: int = 3) -> dict[str, Any]:
    """Both variants of a tree-search step (see the module docstring); on a CPU each in a child process."""
    device = resolve_device(config.device)
    rows = []
    for checkpoint in (False, True):
        if device.type == "cpu":
            rows.append(
                call_isolated(
                    _measure_variant, config, checkpoint, repeats, what="bench --suite tree"
                )
            )
        else:
            rows.append(_measure_variant(config, checkpoint, repeats))
    tree = dataclasses.asdict(config.tree)
    tree.pop("train")
    return {
        "device": str(device),
        "batch_size": config.data.batch_size,
        "dataset": config.data.dataset,
        "tree": tree,
        "rows": rows,
    }


def format_tree_bench(result: dict[str, Any]) -> str:
    """A text table of :func:`bench_tree`'s result, with the checkpointed / plain ratios."""
    tree = result["tree"]
    lines = [
        f"tree-search step, depth {tree['depth']}, alpha {tree['alpha']:g}, batch {result['batch_size']} "
        f"({result['dataset']} shapes), {result['device']}:",
        f"{'variant':<14}{'parameters':>12}{'stored MiB':>12}{'peak MiB':>10}{'step s':>9}",
    ]
    for row in result["rows"]:
        name = "checkpointed" if row["checkpoint"] else "plain"
        lines.append(
            f"{name:<14}{row['parameters']:>12,}{row['stored_bytes'] / 2**20:>12.2f}"
            f"{row['peak_bytes'] / 2**20:>10.2f}{row['seconds']:>9.3f}"
        )
    plain, ckpt = result["rows"]
    lines.append(
        f"checkpointed / plain: stored {ckpt['stored_bytes'] / max(plain['stored_bytes'], 1):.3f}, "
        f"peak {ckpt['peak_bytes'] / max(plain['peak_bytes'], 1):.3f}, "
        f"time {ckpt['seconds'] / max(plain['seconds'], 1e-12):.2f}"
    )
    return "\n".join(lines)
