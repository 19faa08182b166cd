r"""Training on several processes (GPUs) with ``torch.distributed``, launched by ``torchrun``.

Launch any training command with one process per GPU::

    torchrun --nproc-per-node 8 -m bayesnas_book.cli transfer --profile paper --genotype bayesnas_imagenet --imagenet DIR
    torchrun --nproc-per-node 2 -m bayesnas_book.cli train --genotype bayesnas_cifar10_lambda0.01

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them (and does nothing without them, so the same command runs as
one ordinary process). With ``W`` processes and ``train.batch_size = B``:

* ``train.batch_size`` is the **global** batch: each process takes ``b = B / W`` images per
  step (``B`` must be a multiple of ``W``), so the learning rate keeps its meaning whatever ``W``;
  ``train.eval_batch_size`` is per process (it does not change any result);
* data order: :class:`EpochOrderSampler` (a ``DistributedSampler``; the engine calls
  ``set_epoch``) takes the single process's permutation of epoch ``e`` (the order of
  :func:`~bayesnas_book.search_data.epoch_loader` for ``(seed, e)``), and process ``r`` takes
  positions ``r, r + W, r + 2W, ...``; step ``k`` of the ``W`` processes together therefore sees
  exactly batch ``k`` of a single process;
* gradients: ``DistributedDataParallel`` averages the per-process mean gradients,
  :math:`\frac1W \sum_r \frac1b \sum_{i \in r} g_i = \frac1B \sum_i g_i`, the single
  process's gradient of the same global batch; a network without batch statistics therefore
  follows the single-process trajectory up to float rounding (``tests/test_distributed.py``);
* BatchNorm: converted to ``SyncBatchNorm`` (statistics of the global batch) with CUDA / nccl;
  the gloo backend (CPU) has no SyncBatchNorm, so each process normalises over its own ``b``
  images (logged once); running statistics are broadcast from rank 0 before every evaluation
  and checkpoint, so every process evaluates and rank 0 saves the same model;
* metrics: loss, accuracy and image counts are summed over processes (``all_reduce``) before
  they are recorded; evaluation splits the evaluation set across processes and sums likewise;
* files: rank 0 alone writes checkpoints, ``metrics.jsonl``, ``model.pt`` and the provenance,
  then every process waits at a barrier; each process's RNG states are gathered into the
  checkpoint, so a resumed run restores every process's generators;
* randomness: every process builds the same initial model (same seed); process ``r > 0`` then
  reseeds torch's generator with ``seed + r * RANK_SEED_STRIDE`` so that dropout masks and
  random crops differ between processes.

.. note::
   The last batch of an epoch: when ``W`` does not divide the training set,
   ``DistributedSampler`` pads it by repeating the first images of the permutation, so a few
   images count twice in that epoch (a single process never repeats one).
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from bayesnas_book.search_data import epoch_loader

__all__ = [
    "RANK_SEED_STRIDE",
    "DistributedContext",
    "DistributedError",
    "EpochOrderSampler",
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "distributed_env",
    "distributed_loader",
    "epoch_order",
    "evaluate_distributed",
    "gather_objects",
    "init_distributed",
    "local_batch_size",
    "shard",
    "shard_indices",
    "shutdown_distributed",
    "wrap_model",
]

logger = logging.getLogger(__name__)

RANK_SEED_STRIDE = 1_000_033  # process r > 0 reseeds torch with seed + r * stride (a prime)


class DistributedError(RuntimeError):
    """The process group cannot be set up as asked (the message says why and what to do)."""


@dataclass(frozen=True)
class DistributedContext:
    """One process of a ``torchrun`` job.

    Attributes:
        rank: this process, ``0 .. world_size - 1`` (rank 0 writes the files).
        world_size: ``W``, the number of processes.
        local_rank: this process on its machine (its GPU index).
        backend: ``"nccl"`` (CUDA) or ``"gloo"`` (CPU).
        device: where this process trains (``cuda:LOCAL_RANK`` or ``cpu``).
        owns_group: :func:`init_distributed` created the process group (and
            :func:`shutdown_distributed` destroys it).
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    owns_group: bool = True

    @property
    def is_main(self) -> bool:
        """Rank 0, the process that writes files and prints."""
        return self.rank == 0

    @property
    def sync_batchnorm(self) -> bool:
        """Whether BatchNorm layers become ``SyncBatchNorm`` (nccl only)."""
        return self.backend == "nccl"

    def record(self) -> dict[str, Any]:
        """What the run's configuration record keeps (compared on resume)."""
        return {"world_size": self.world_size, "backend": self.backend, "sync_batchnorm": self.sync_batchnorm}


def _env_int(name: str, environ: dict[str, str]) -> int:
    raw = environ[name]
    try:
        value = int(raw)
    except ValueError:
        raise DistributedError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise DistributedError(f"environment variable {name} must be >= 0, got {value}")
    return value


def distributed_env(environ: dict[str, str] | None = None) -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's variables, or ``None`` outside torchrun.

    Args:
        environ: the environment (default ``os.environ``).

    Returns:
        ``None`` when ``WORLD_SIZE`` is unset or 1 (one ordinary process).

    Raises:
        DistributedError: for a non-integer or out-of-range ``RANK`` / ``WORLD_SIZE`` /
            ``LOCAL_RANK``, or ``WORLD_SIZE`` set without ``RANK``.
    """
    environ = dict(os.environ if environ is None else environ)
    if "WORLD_SIZE" not in environ:
        return None
    world_size = _env_int("WORLD_SIZE", environ)
    if world_size == 0:
        raise DistributedError("environment variable WORLD_SIZE must be >= 1, got 0")
    if world_size == 1:
        return None
    if "RANK" not in environ:
        raise DistributedError("WORLD_SIZE is set but RANK is not; launch the command with torchrun")
    rank = _env_int("RANK", environ)
    local_rank = _env_int("LOCAL_RANK", environ) if "LOCAL_RANK" in environ else rank
    if rank >= world_size:
        raise DistributedError(f"environment variable RANK must be < WORLD_SIZE ({world_size}), got {rank}")
    return rank, world_size, local_rank


def _pick_device(device: str | torch.device, local_rank: int) -> torch.device:
    """``cuda:LOCAL_RANK`` for ``auto`` / ``cuda`` with CUDA present, ``cpu`` for ``cpu``."""
    name = str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DistributedError("`device` is cuda but CUDA is not available; use device=cpu (gloo) or auto")
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"LOCAL_RANK {local_rank} has no GPU (this machine has {torch.cuda.device_count()}); "
                "start at most one process per GPU (torchrun --nproc-per-node)"
            )
        return torch.device("cuda", local_rank)
    raise DistributedError(
        f"`device` must be auto, cpu or cuda under torchrun (each process takes cuda:LOCAL_RANK), got {name!r}"
    )


def init_distributed(
    device: str | torch.device = "auto", *, timeout_s: float = 1800.0, environ: dict[str, str] | None = None
) -> DistributedContext | None:
    """Join the process group torchrun describes; ``None`` when the command runs as one process.

    nccl on CUDA (each process on ``cuda:LOCAL_RANK``), gloo on the CPU. An already initialised
    default group is reused (and left alone by :func:`shutdown_distributed`).

    Args:
        device: the run's ``device`` setting (``auto``, ``cpu`` or ``cuda``).
        timeout_s: how long a collective waits for the other processes before failing.
        environ: the environment (default ``os.environ``).

    Returns:
        The :class:`DistributedContext`, or ``None`` outside torchrun (or with one process).

    Raises:
        DistributedError: for bad torchrun variables, a device that cannot be used, or a
            non-positive ``timeout_s``.
    """
    if not timeout_s > 0:
        raise DistributedError(f"`timeout_s` must be > 0, got {timeout_s}")
    found = distributed_env(environ)
    if found is None:
        return None
    rank, world_size, local_rank = found
    target = _pick_device(device, local_rank)
    backend = "nccl" if target.type == "cuda" else "gloo"
    owns = not dist.is_initialized()
    if owns:
        if target.type == "cuda":
            torch.cuda.set_device(target)
        dist.init_process_group(backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    else:
        backend = dist.get_backend()
        if dist.get_world_size() != world_size or dist.get_rank() != rank:
            raise DistributedError(
                f"the initialised process group (rank {dist.get_rank()} of {dist.get_world_size()}) does not match "
                f"RANK={rank}, WORLD_SIZE={world_size}"
            )
    return DistributedContext(rank, world_size, local_rank, backend, target, owns)


def shutdown_distributed(context: DistributedContext | None) -> None:
    """Wait for every process, then destroy the process group :func:`init_distributed` created."""
    if context is None or not dist.is_initialized():
        return
    if context.owns_group:
        dist.barrier()
        dist.destroy_process_group()


def barrier(context: DistributedContext | None) -> None:
    """Wait until every process arrives (nothing with one process)."""
    if context is not None:
        dist.barrier()


def local_batch_size(batch_size: int, context: DistributedContext | None, name: str = "train.batch_size") -> int:
    """``b = B / W``, the images each process takes per step of a global batch ``B``.

    Raises:
        ValueError: if ``W`` does not divide ``B``.
    """
    if context is None:
        return batch_size
    if batch_size % context.world_size:
        raise ValueError(
            f"`{name}` is the global batch and must be a multiple of the number of processes "
            f"({context.world_size}), got {batch_size}"
        )
    return batch_size // context.world_size


class _Indices(Dataset):
    """``0 .. n-1``: a dataset whose items are their own indices (fetched a batch at a time)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index

    def __getitems__(self, indices: Sequence[int]) -> list[int]:
        return list(indices)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order in which one process visits ``n`` training images in epoch ``epoch``.

    Read off :func:`~bayesnas_book.search_data.epoch_loader` itself (one batch of all indices),
    so it is the single-process engine's order by construction.

    Returns:
        A permutation of ``0 .. n-1``, ``(n,)`` int64.
    """
    loader = epoch_loader(_Indices(n), max(n, 1), seed, epoch)
    return next(iter(loader)) if n else torch.zeros(0, dtype=torch.int64)


class EpochOrderSampler(DistributedSampler):
    """A ``DistributedSampler`` over the single process's order of each epoch.

    Padded like ``DistributedSampler`` (the first images repeated) to a multiple of ``W``;
    process ``r`` takes positions ``r, r + W, ...`` of the padded order, so step ``k`` of all
    processes together covers positions ``k B .. (k + 1) B - 1``: batch ``k`` of one process.

    Args:
        dataset: the training set.
        num_replicas: ``W``; rank: this process.
        seed: the run's seed (the order depends on ``(seed, epoch)`` only).
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)

    def __iter__(self) -> Iterator[int]:
        order = epoch_order(len(self.dataset), self.seed, self.epoch)  # type: ignore[arg-type]
        padding = self.total_size - len(order)
        if padding:
            repeats = -(-padding // len(order))
            order = torch.cat([order, order.repeat(repeats)[:padding]])
        assert len(order) == self.total_size
        return iter(order[self.rank:self.total_size:self.num_replicas].tolist())


def distributed_loader(
    dataset: Dataset, batch_size: int, seed: int, epoch: int, context: DistributedContext, num_workers: int = 0
) -> DataLoader:
    """This process's loader for epoch ``epoch``: ``b = batch_size`` images per step.

    The generator (it seeds DataLoader workers) depends on ``(seed, epoch, rank)``, so workers
    of different processes draw different random augmentations.
    """
    sampler = EpochOrderSampler(dataset, context.world_size, context.rank, seed)
    sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + RANK_SEED_STRIDE * (context.rank + 1))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, generator=generator, num_workers=num_workers,
                      pin_memory=context.device.type == "cuda", persistent_workers=False)


def shard_indices(n: int, context: DistributedContext) -> list[int]:
    """This process's share of an evaluation set of ``n`` items: ``rank, rank + W, ...`` (no padding)."""
    return list(range(context.rank, n, context.world_size))


def shard(dataset: Dataset, context: DistributedContext) -> Subset:
    """This process's share of ``dataset`` (see :func:`shard_indices`)."""
    return Subset(dataset, shard_indices(len(dataset), context))  # type: ignore[arg-type]


def all_reduce_sum(values: Sequence[float | int | torch.Tensor], context: DistributedContext | None,
                   device: torch.device) -> list[float]:
    """The sums over processes of ``values`` (float64, exact for integers below 2**53)."""
    packed = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in values])  # (n,)
    if context is not None:
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return packed.tolist()


def gather_objects(value: Any, context: DistributedContext) -> list[Any]:
    """Every process's ``value``, in rank order (on every process)."""
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


@torch.no_grad()
def broadcast_buffers(model: nn.Module, context: DistributedContext | None) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every process."""
    if context is None:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def wrap_model(model: nn.Module, context: DistributedContext) -> tuple[nn.Module, nn.Module]:
    """``(module, ddp)``: the model (BatchNorm synced where nccl allows) and its DDP wrapper.

    The first is what the engine saves, evaluates and sets dropout on; the second is what it
    trains through.
    """
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        if context.sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif context.is_main:
            logger.warning(
                "SyncBatchNorm needs CUDA and the nccl backend; with %s each of the %d processes normalises "
                "over its own share of the batch (running statistics are taken from rank 0)",
                context.backend, context.world_size,
            )
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    return model, ddp


def evaluate_distributed(model: nn.Module, dataset: Dataset, context: DistributedContext, batch_size: int,
                         **options: Any) -> dict[str, float]:
    """:func:`~bayesnas_book.train.evaluate.evaluate` with the set split across processes.

    Rank 0's buffers are broadcast first (every process evaluates the same model); each process
    evaluates its share (:func:`shard_indices`) and the sums of the loss, the top-1 and top-5
    hits and the image counts are all-reduced, so every process returns the whole set's means.

    Args:
        model: the bare module (not its DDP wrapper).
        dataset: the evaluation set, the same on every process.
        context: the process group.
        batch_size: images per batch and process.
        options: ``amp``, ``channels_last``, ``num_workers`` of :func:`evaluate`.

    Returns:
        ``{"loss", "top1", "top5"}`` over the whole set.
    """
    from bayesnas_book.train.evaluate import evaluate

    broadcast_buffers(model, context)
    part = shard(dataset, context)
    n = len(part)
    scores = evaluate(model, part, batch_size, context.device, **options) if n else {"loss": 0.0, "top1": 0.0, "top5": 0.0}
    # the means back to sums: loss_sum = loss * n, hits = top1 * n (integers, rounded)
    loss_sum, top1, top5, seen = all_reduce_sum(
        [scores["loss"] * n, round(scores["top1"] * n), round(scores["top5"] * n), n], context, context.device
    )
    return {"loss": loss_sum / seen, "top1": round(top1) / seen, "top5": round(top5) / seen}
