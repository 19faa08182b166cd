"""torch.distributed training: two CPU processes (gloo) follow the single-process run; torchrun trains and resumes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import TensorDataset

from bayesnas_book.checkpoint import load_checkpoint
from bayesnas_book.search_data import epoch_loader
from bayesnas_book.train import (
    DistributedError,
    TrainConfig,
    TrainError,
    init_distributed,
    train_model,
)
from bayesnas_book.train.distributed import (
    DistributedContext,
    EpochOrderSampler,
    distributed_env,
    epoch_order,
    local_batch_size,
    shard_indices,
)

WORLD = 2
N_TRAIN, N_EVAL = 48, 21  # N_TRAIN a multiple of the global batch: no padding, exact equivalence


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def data() -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(N_TRAIN + N_EVAL, 1, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (N_TRAIN + N_EVAL,), generator=g)
    return TensorDataset(x[:N_TRAIN], y[:N_TRAIN]), TensorDataset(x[N_TRAIN:], y[N_TRAIN:])


def net() -> nn.Module:
    """A conv net without batch statistics (and without dropout), float64."""
    torch.manual_seed(11)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).double()


CONFIG = TrainConfig(epochs=2, batch_size=8, eval_batch_size=5, lr=0.2, momentum=0.9, weight_decay=1e-3,
                     schedule="cosine", grad_clip=0.5, drop_prob=0.0)


def _worker(rank: int, port: int, folder: str) -> None:
    """One process of the two-process run; logs which files this rank wrote."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from bayesnas_book.train import engine

    written: list[str] = []

    def logged(function):
        def wrapper(path, *args, **kwargs):
            written.append(Path(path).name)
            return function(path, *args, **kwargs)
        return wrapper

    for name in ("save_checkpoint", "atomic_write_bytes", "atomic_writer", "write_json"):
        setattr(engine, name, logged(getattr(engine, name)))
    context = init_distributed("cpu", timeout_s=60)
    assert context is not None and context.backend == "gloo" and not context.sync_batchnorm
    train_set, eval_set = data()
    result = train_model(net(), train_set, eval_set, CONFIG, out=Path(folder) / "dist", device="cpu", seed=3,
                         distributed=context)
    (Path(folder) / f"rank{rank}.json").write_text(json.dumps({"written": written, "metrics": result.metrics}))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def test_two_processes_follow_the_single_process_run(tmp_path) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    processes = mp.start_processes(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=False,
                                   start_method="spawn")
    deadline = time.monotonic() + 120
    while not processes.join(timeout=1):
        if time.monotonic() > deadline:
            for process in processes.processes:
                process.terminate()
            pytest.fail("the two-process run did not finish within 120 s")
    train_set, eval_set = data()
    single = train_model(net(), train_set, eval_set, CONFIG, out=tmp_path / "single", device="cpu", seed=3)
    two = torch.load(tmp_path / "dist" / "model.pt", weights_only=True)
    one = single.model.state_dict()
    assert not torch.equal(one["3.weight"], net().state_dict()["3.weight"])  # it trained
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-10, atol=1e-12)  # float64: rounding only
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    for metrics in (ranks[0]["metrics"], ranks[1]["metrics"]):  # every rank records the all-reduced metrics
        for mine, theirs in zip(metrics, single.metrics, strict=True):
            for key in ("train_loss", "grad_norm", "eval_loss", "lr"):
                assert mine[key] == pytest.approx(theirs[key], rel=1e-10), key
            for key in ("train_top1", "eval_top1", "eval_top5", "images"):
                assert mine[key] == theirs[key], key
    assert ranks[1]["written"] == []  # rank 0 alone writes
    assert {"checkpoint.pt", "metrics.jsonl", "model.pt", "provenance.json"} <= set(ranks[0]["written"])
    payload = load_checkpoint(tmp_path / "dist" / "checkpoint.pt", "train")
    assert len(payload["state"]["rank_rng"]) == WORLD
    assert payload["config"]["distributed"] == {"world_size": WORLD, "backend": "gloo", "sync_batchnorm": False}


def test_the_sampler_splits_the_single_process_order() -> None:
    dataset = TensorDataset(torch.arange(10))
    order = epoch_order(10, seed=4, epoch=2)
    loader_order = torch.cat([batch[0] for batch in epoch_loader(dataset, 3, 4, 2)])
    assert torch.equal(order, loader_order)  # exactly the engine's single-process order
    padded = torch.cat([order, order[:2]])  # 10 images padded to 12, DistributedSampler's way
    for rank in range(3):
        sampler = EpochOrderSampler(dataset, 3, rank, seed=4)
        sampler.set_epoch(2)
        assert list(sampler) == padded[rank::3].tolist()
    parts = [list(EpochOrderSampler(dataset, 3, rank, seed=4)) for rank in range(3)]  # epoch 0
    assert [len(part) for part in parts] == [4, 4, 4] and set(sum(parts, [])) == set(range(10))
    assert parts[0] != list(EpochOrderSampler(dataset, 3, 0, seed=5))  # the seed matters


def test_torchrun_trains_an_evaluation_net_and_resumes(tmp_path) -> None:
    out = tmp_path / "run"
    tiny = ["train.epochs=2", "train.max_batches_per_epoch=2", "network.channels=4", "network.num_cells=3"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    script = tmp_path / "first.py"  # a job killed after one epoch: stop_after=1
    script.write_text(textwrap.dedent(f"""
        from bayesnas_book.config import load_config
        from bayesnas_book.evaluation import train_genotype
        from bayesnas_book.space.genotype import get_genotype
        config = load_config("quick", overrides={tiny!r})
        train_genotype(get_genotype("bayesnas_cifar10_lambda0.01"), config, out={str(out)!r}, stop_after=1)
    """))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(WORLD), "--max-restarts", "0"]

    def launch(*args: str) -> subprocess.CompletedProcess:
        command = [*torchrun, "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *args]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    launch(str(script))
    first = (out / "metrics.jsonl").read_text().splitlines()
    assert len(first) == 1 and not (out / "model.pt").exists()
    cli = ["-m", "bayesnas_book.cli", "train", "--genotype", "bayesnas_cifar10_lambda0.01", "--out", str(out),
           "--resume", "--no-progress", *[a for o in tiny for a in ("--set", o)]]
    done = launch(*cli)
    assert done.stdout.count("test top-1 error") == 1  # rank 0 alone reports
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and lines[0] == first[0]
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["resumed_from_epoch"] == 1
    assert provenance["config"]["distributed"]["world_size"] == WORLD
    record = json.loads(lines[1])
    assert record["images"] == 2 * 64  # two global batches of train.batch_size = 64 (32 per process)
    from bayesnas_book.evaluation import evaluate_run

    report = evaluate_run(out)
    assert report.top1_error == pytest.approx(1 - record["eval_top1"])
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "genotype.json", "metrics.jsonl", "model.pt",
                                                     "provenance.json"]


def test_environment_and_batch_errors_are_clear() -> None:
    assert distributed_env({}) is None and distributed_env({"WORLD_SIZE": "1"}) is None
    assert distributed_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == (3, 4, 1)
    with pytest.raises(DistributedError, match="WORLD_SIZE must be an integer, got 'two'"):
        distributed_env({"WORLD_SIZE": "two"})
    with pytest.raises(DistributedError, match="WORLD_SIZE is set but RANK is not"):
        distributed_env({"WORLD_SIZE": "2"})
    with pytest.raises(DistributedError, match=r"RANK must be < WORLD_SIZE \(2\), got 2"):
        distributed_env({"WORLD_SIZE": "2", "RANK": "2"})
    with pytest.raises(DistributedError, match="WORLD_SIZE must be >= 1, got 0"):
        distributed_env({"WORLD_SIZE": "0"})
    with pytest.raises(DistributedError, match="RANK must be >= 0, got -1"):
        distributed_env({"WORLD_SIZE": "2", "RANK": "-1"})
    with pytest.raises(DistributedError, match="`timeout_s` must be > 0, got 0"):
        init_distributed("cpu", timeout_s=0)
    env = {"WORLD_SIZE": "2", "RANK": "0"}
    with pytest.raises(DistributedError, match="must be auto, cpu or cuda under torchrun"):
        init_distributed("cuda:1", environ=env)
    if not torch.cuda.is_available():
        with pytest.raises(DistributedError, match="CUDA is not available"):
            init_distributed("cuda", environ=env)
    context = DistributedContext(1, 3, 1, "gloo", torch.device("cpu"))
    assert local_batch_size(12, context) == 4 and local_batch_size(12, None) == 12
    assert shard_indices(7, context) == [1, 4]
    with pytest.raises(ValueError, match=r"global batch and must be a multiple of the number of processes \(3\), got 10"):
        local_batch_size(10, context)
    train_set, eval_set = data()
    config = TrainConfig(epochs=1, batch_size=10, drop_prob=0.0)
    with pytest.raises(TrainError, match="must be a multiple of the number of processes"):
        train_model(net(), train_set, eval_set, config, device="cpu", distributed=context)
