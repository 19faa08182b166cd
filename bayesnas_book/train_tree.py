"""Training a derived tree network (:mod:`bayesnas_book.space.tree_supernet`) with the shared engine.

The network of a :class:`~bayesnas_book.space.tree_supernet.TreeGenotype` is trained by
:func:`bayesnas_book.train.train_model` with the ``[tree.train]`` protocol (paper profile: the
path-level paper's 300 epochs, batch 64, SGD with Nesterov momentum 0.9, weight decay 1e-4, a
cosine learning rate from 0.1 updated every iteration) and ``tree.cutout`` on CIFAR-10.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bayesnas_book.config import RunConfig, config_to_dict
from bayesnas_book.evaluation import evaluation_data
from bayesnas_book.seeding import seed_everything
from bayesnas_book.space.tree_supernet import TreeGenotype, build_tree_network
from bayesnas_book.train import TrainResult, train_model

__all__ = ["train_tree_genotype", "tree_training_config"]


def tree_training_config(config: RunConfig) -> RunConfig:
    """``config`` with ``[train]`` replaced by ``[tree.train]`` and the cutout by ``tree.cutout``."""
    search = dataclasses.replace(config.search, cutout=config.tree.cutout)
    return dataclasses.replace(config, train=config.tree.train, search=search)


def train_tree_genotype(
    genotype: TreeGenotype,
    config: RunConfig,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    stop_after: int | None = None,
) -> TrainResult:
    """Build, train and evaluate the derived network of ``genotype``; resumable like every engine run.

    Raises:
        ValueError: if the dataset's image channels differ from the genotype's backbone.
    """
    run = tree_training_config(config)
    seed_everything(
        run.seed, deterministic=run.deterministic, num_threads=run.num_threads, dtype=run.dtype
    )
    train_set, test_set, shape = evaluation_data(run)
    if shape[0] != genotype.spec.in_channels:
        raise ValueError(
            f"the genotype's backbone reads {genotype.spec.in_channels}-channel images, "
            f"data.dataset {run.data.dataset!r} has {shape[0]}; search and train on one dataset"
        )
    network = build_tree_network(genotype, root_bn=config.tree.root_bn)
    result = train_model(
        network,
        train_set,
        test_set,
        run.train,
        out=out,
        resume=resume,
        device=run.device,
        progress=progress,
        seed=run.seed,
        num_workers=run.data.num_workers,
        run_config=config_to_dict(run),
        stop_after=stop_after,
    )
    if out is not None:
        genotype.save(Path(out) / "tree_genotype.json")
    return result
