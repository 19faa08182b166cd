"""The proxyless tree search end to end on the digits: artefacts, resume == uninterrupted, the CLI."""

from __future__ import annotations

import json

import pytest

from bayesnas_book.cli import main
from bayesnas_book.config import ConfigError, load_config
from bayesnas_book.search import run_search
from bayesnas_book.space.tree_supernet import build_tree_network, load_tree_genotype

TINY_TREE = [
    'search.space="tree"',
    "tree.depth=11",
    "tree.alpha=4",
    "tree.start_channels=4",
    "search.warmup_epochs=1",
    "search.switch_epochs=1",
    "search.rounds=2",
    "search.curvature_batches=1",
    "search.max_batches_per_epoch=2",
    "data.batch_size=32",
    "search.reference_batch_size=32",
    "search.lambda_o=0.2",
    "search.lambda_c=0.2",
]


def tiny_tree(*extra: str):
    return load_config("quick", overrides=[*TINY_TREE, *extra])


@pytest.fixture(scope="module")
def whole_tree_search(tmp_path_factory):
    """One uninterrupted tiny tree search, shared by the tests that need its result."""
    out = tmp_path_factory.mktemp("tree") / "whole"
    return run_search(tiny_tree(), out=out), out


def test_tree_search_resumes_to_the_same_result(tmp_path, whole_tree_search) -> None:
    config = tiny_tree()
    whole, out = whole_tree_search
    partial = run_search(config, out=tmp_path / "killed", stop_after=3)
    assert partial.genotype is None
    resumed = run_search(config, out=tmp_path / "killed", resume=True)
    assert resumed.genotype == whole.genotype
    assert resumed.magnitude_genotype == whole.magnitude_genotype
    assert set(whole.pruning) == {
        "cell_00",
        "cell_01",
        "cell_02",
    }  # one cell type per unit: not shared
    for kind in whole.pruning:
        assert resumed.history[-1][kind]["gamma"] == whole.history[-1][kind]["gamma"]
    assert [m["loss"] for m in resumed.metrics] == [m["loss"] for m in whole.metrics]
    for name in (
        "genotype.json",
        "genotype_magnitude.json",
        "cells.png",
        "history.json",
        "provenance.json",
    ):
        assert (out / name).exists(), name
    genotype = load_tree_genotype(out / "genotype.json")
    assert genotype == whole.genotype
    assert build_tree_network(genotype)  # the derived net builds from the file
    history = json.loads((out / "history.json").read_text())
    assert len(history[0]["cell_00"]["gamma"]) == 15


def test_tree_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="tree.depth"):
        tiny_tree("tree.depth=100")
    with pytest.raises(ConfigError, match="tree.shape"):
        tiny_tree('tree.shape="treecell_z"')


def test_paper_profile_holds_the_published_protocol() -> None:
    tree = load_config("paper").tree
    assert (tree.depth, tree.alpha, tree.bottleneck, tree.cutout) == (164, 84, True, 16)
    train = tree.train
    assert (train.epochs, train.batch_size, train.nesterov, train.schedule, train.weight_decay) == (
        300,
        64,
        True,
        "cosine",
        1e-4,
    )


def test_cli_search_space_tree(tmp_path, capsys) -> None:
    args = ["search", "--space", "tree", "--out", str(tmp_path / "run"), "--no-progress"]
    for override in [*TINY_TREE[1:], "search.rounds=1"]:  # the CLI path once; resume is above
        args += ["--set", override]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "tree genotype (treecell_a" in printed and "cell_02 cell" in printed


def test_derived_tree_network_trains_with_the_shared_engine_and_resumes(
    tmp_path, whole_tree_search
) -> None:
    from bayesnas_book.train_tree import train_tree_genotype

    config = tiny_tree("tree.train.epochs=2", "tree.train.max_batches_per_epoch=2")
    genotype = whole_tree_search[0].genotype
    whole = train_tree_genotype(genotype, config, out=tmp_path / "whole")
    train_tree_genotype(genotype, config, out=tmp_path / "killed", stop_after=1)
    resumed = train_tree_genotype(genotype, config, out=tmp_path / "killed", resume=True)
    assert resumed.final == whole.final and 0.0 <= whole.final["top1"] <= 1.0
    losses = [[m["train_loss"] for m in r.metrics] for r in (resumed, whole)]
    assert losses[0] == losses[1] and len(losses[1]) == 2
    assert (tmp_path / "whole" / "tree_genotype.json").exists()
