"""Tests of bayesnas_book.experiments: trajectories, sweeps, RQ1, random cells, RQ2 scores."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from bayesnas_book import load_config
from bayesnas_book.bayes.hard import dangling_nodes, edge_alive
from bayesnas_book.experiments import (
    RULES,
    SweepRecord,
    SwitchTrajectory,
    compare_cells,
    connectivity_rows,
    genotype_keep,
    one_shot_accuracy,
    one_shot_rows,
    random_cell,
    random_genotype,
    search_sweep,
    summarize,
    train_and_test,
)
from bayesnas_book.models.counting import count_parameters
from bayesnas_book.models.eval_net import cifar_network
from bayesnas_book.search import SearchRun, run_search, search_schedule
from bayesnas_book.search_data import build_search_data
from bayesnas_book.space.derive import derive_cell
from bayesnas_book.space.genotype import get_genotype
from bayesnas_book.space.graph import get_cell_graph

TINY = [
    "search.channels=2",
    "search.layout=NR",
    "search.rounds=1",
    "search.warmup_epochs=1",
    "search.switch_epochs=1",
    "search.max_batches_per_epoch=2",
    "search.curvature_batches=1",
    "data.batch_size=16",
    "search.reference_batch_size=16",
    "search.lambda_o=0.1",
    "search.lambda_c=0.1",
]


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    config = load_config("quick", overrides=TINY)
    data = build_search_data(config)
    data.validation = Subset(data.validation, range(32))
    return config, data


@pytest.fixture(scope="module")
def stepped(tiny):
    config, data = tiny
    run = SearchRun(config, data=data)
    trajectory = SwitchTrajectory.attach(run)
    for index in range(len(search_schedule(config))):
        run.run_step(index)
        trajectory(run, index)
    trajectory.detach()
    return run, trajectory


def test_trajectory_records_every_optimiser_step(stepped, tiny):
    run, trajectory = stepped
    config, _ = tiny
    values = trajectory.stacked("normal")
    # start + 2 warm-up + 2 switch optimiser steps + 3 schedule-step records
    assert trajectory.phases[0] == "start"
    assert trajectory.phases.count("switch") == 2 + 1 and trajectory.phases.count("warmup") == 2 + 1
    assert values.shape[0] == len(trajectory.phases) == 8
    assert values.shape[1:] == run.model.switch_values("normal").shape
    assert torch.equal(values[0], torch.ones_like(values[0]))  # switches start at 1
    warm = values[: trajectory.phases.index("switch")]
    assert torch.equal(warm, torch.ones_like(warm))  # the warm-up trains the weights only
    assert not torch.equal(values[-2], values[0])  # the switch epoch moved them
    assert trajectory.step_ends == [3, 6, 7]
    torch.testing.assert_close(
        values[-1], run.model.switch_values("normal").detach().double(), rtol=0, atol=0
    )


def test_trajectory_errors(stepped):
    run, trajectory = stepped
    with pytest.raises(ValueError, match="attach the trajectory before the first step"):
        SwitchTrajectory.attach(run)
    with pytest.raises(ValueError, match="`kind` must be one of normal, reduction"):
        trajectory.stacked("other")
    with pytest.raises(ValueError, match="the trajectory is empty"):
        SwitchTrajectory().stacked("normal")


def test_stepping_matches_run_search(stepped, tiny):
    run, _ = stepped
    config, data = tiny
    result = run_search(config, data=data)
    record = SweepRecord.from_run(run)
    assert result.genotype == record.genotype
    assert result.magnitude_genotype == record.magnitude_genotype
    for kind in ("normal", "reduction"):
        torch.testing.assert_close(record.gamma[kind], run.gamma[kind], rtol=0, atol=0)


def test_record_needs_a_finished_run(tiny):
    config, data = tiny
    run = SearchRun(config, data=data)
    with pytest.raises(ValueError, match="has completed 0 of 3 schedule steps"):
        SweepRecord.from_run(run)


def test_sweep_and_connectivity(tiny, stepped):
    config, data = tiny
    run, _ = stepped
    records = search_sweep(config, [(0, 0.1), (1, 0.2)], data=data)
    assert [(r.seed, r.lambda_o, r.lambda_c) for r in records] == [(0, 0.1, 0.1), (1, 0.2, 0.2)]
    assert (
        records[0].genotype == SweepRecord.from_run(run).genotype
    )  # same seed, same data: same search
    for record in records:
        rows = connectivity_rows(record)
        assert [row["cell"] for row in rows] == ["normal", "reduction"]
        for row in rows:
            assert row["dangling"] == ()
            assert (
                row["pairs"]
                == row["derived_pairs"]
                == len(getattr(record.genotype, row["cell"]).edges())
            )


def test_connectivity_counts_dangling_without_node_rule(stepped):
    run, _ = stepped
    record = SweepRecord.from_run(run)
    # a gamma that prunes both inputs of node_0 but keeps node_0 -> node_3: the node rule must act
    graph = get_cell_graph("bayesnas_normal")
    gamma = torch.ones(graph.num_edges, 1 + graph.num_ops, dtype=torch.float64)
    gamma[list(graph.edges_into(0)), 0] = 1e-3
    record = SweepRecord(
        record.seed,
        record.lambda_o,
        record.lambda_c,
        record.genotype,
        record.magnitude_genotype,
        {**record.gamma, "normal": gamma},
        record.pruning,
        record.validation_accuracy,
    )
    row = connectivity_rows(record)[0]
    assert row["dangling_without_node_rule"] == (0,)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ([], "at least one"),
        ([(0,)], r"\(seed, lambda\) pairs"),
        ([(-1, 0.1)], "integer >= 0, got -1"),
        ([(0, 0.0)], "lambda in `settings` must be > 0, got 0.0"),
    ],
)
def test_sweep_errors(tiny, settings, message):
    config, data = tiny
    with pytest.raises(ValueError, match=message):
        search_sweep(config, settings, data=data)


@pytest.mark.parametrize("name", ["bayesnas_normal", "bayesnas_reduction", "darts_normal"])
@pytest.mark.parametrize("num_pairs", [1, 5, 20, 56])
def test_random_cell_size_and_connectivity(name, num_pairs):
    graph = get_cell_graph(name)
    cell = random_cell(graph, num_pairs, torch.Generator().manual_seed(num_pairs))
    assert len(cell.edges()) == num_pairs
    keep = genotype_keep(graph, cell)
    assert int(keep[:, 1:].sum()) == num_pairs
    assert not dangling_nodes(graph, edge_alive(keep))
    assert derive_cell(graph, keep) == cell  # the mask round-trips


def test_random_cell_is_uniform_over_pairs():
    graph = get_cell_graph("bayesnas_normal")
    generator = torch.Generator().manual_seed(0)
    draws, n = 600, 10
    freq = torch.zeros(graph.num_edges, graph.num_ops)
    for _ in range(draws):
        freq += (
            genotype_keep(graph, random_cell(graph, n, generator))[:, 1:].double().float() / draws
        )
    p = n / 56  # nearly uniform: the rare dangling draws are rejected
    se = math.sqrt(p * (1 - p) / draws)
    assert (freq - p).abs().max() < 5 * se


def test_random_cell_errors():
    graph = get_cell_graph("bayesnas_normal")
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"`num_pairs` must be an integer in \[1, 56\]"):
        random_cell(graph, 0, generator)
    with pytest.raises(ValueError, match=r"`num_pairs` must be an integer in \[1, 56\]"):
        random_cell(graph, 57, generator)
    # 1 pair from the 7 of node_0 -> node_3 alone dangles; with max_tries=1 some seed must fail
    failures = 0
    for seed in range(60):
        try:
            random_cell(graph, 1, torch.Generator().manual_seed(seed), max_tries=1)
        except ValueError as error:
            assert "no connected bayesnas_normal cell with 1 pairs in 1 draws" in str(error)
            failures += 1
    assert failures > 0


def test_random_genotype_matches_sizes():
    like = get_genotype("bayesnas_cifar10_lambda0.005")
    random = random_genotype(like, torch.Generator().manual_seed(0))
    assert len(random.normal.edges()) == len(like.normal.edges())
    assert len(random.reduction.edges()) == len(like.reduction.edges())
    assert random.metadata["rule"] == "random"


def test_genotype_keep_errors():
    graph = get_cell_graph("bayesnas_normal")
    darts = get_cell_graph("darts_normal")
    cell = random_cell(
        darts, 56, torch.Generator().manual_seed(0)
    )  # uses edges the BayesNAS graph lacks
    with pytest.raises(ValueError, match="that bayesnas_normal lacks"):
        genotype_keep(graph, cell)


def test_one_shot_accuracy(stepped, tiny):
    run, _ = stepped
    _, data = tiny
    record = SweepRecord.from_run(run)
    before = {
        kind: run.model.switch_values(kind).detach().clone() for kind in ("normal", "reduction")
    }
    everything = {kind: torch.ones(8, 8, dtype=torch.bool) for kind in ("normal", "reduction")}
    nothing = {kind: torch.zeros(8, 8, dtype=torch.bool) for kind in ("normal", "reduction")}
    full = one_shot_accuracy(run.model, everything, data.validation)
    bayes = one_shot_accuracy(
        run.model, {k: record.pruning[k].keep for k in ("normal", "reduction")}, data.validation
    )
    assert full == bayes  # pruned switches are already 0 in the model
    empty = one_shot_accuracy(run.model, nothing, data.validation)
    labels = torch.stack([data.validation[i][1] for i in range(len(data.validation))])
    shares = {float((labels == c).double().mean()) for c in range(10)}
    assert empty in shares  # every switch off: the cells output zeros, one class for every image
    for kind in ("normal", "reduction"):  # switches restored
        assert torch.equal(run.model.switch_values(kind).detach(), before[kind])
    with pytest.raises(
        ValueError, match=r"`keep\['normal'\]` must be a bool tensor of shape \(8, 8\)"
    ):
        one_shot_accuracy(
            run.model,
            {"normal": torch.ones(8, 7, dtype=torch.bool), "reduction": everything["reduction"]},
            data.validation,
        )
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer, got 0"):
        one_shot_accuracy(run.model, everything, data.validation, batch_size=0)


def test_one_shot_rows(stepped, tiny):
    run, _ = stepped
    _, data = tiny
    record = SweepRecord.from_run(run)
    rows = one_shot_rows([record], data.validation, num_random=2)
    assert [(r["rule"], r["draw"]) for r in rows] == [
        ("bayesnas", 0),
        ("magnitude", 0),
        ("random", 0),
        ("random", 1),
    ]
    assert rows[1]["pairs_normal"] == 8 and rows[2]["pairs_normal"] == rows[0]["pairs_normal"]
    assert all(0.0 <= r["one_shot_top1"] <= 1.0 for r in rows)
    with pytest.raises(ValueError, match="`num_random` must be an integer >= 0, got -1"):
        one_shot_rows([record], data.validation, num_random=-1)
    bare = SweepRecord(
        record.seed,
        record.lambda_o,
        record.lambda_c,
        record.genotype,
        record.magnitude_genotype,
        record.gamma,
        record.pruning,
        record.validation_accuracy,
    )
    with pytest.raises(ValueError, match="has no model to evaluate"):
        one_shot_rows([bare], data.validation)


def test_train_and_test_learns_and_is_deterministic():
    torch.set_num_threads(1)
    config = load_config(
        "quick", overrides=["train.epochs=2", "train.batch_size=32", "train.drop_prob=0.0"]
    ).train
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(128, 1, 8, 8, generator=gen)
    labels = (images.mean(dim=(1, 2, 3)) > 0).long()  # a learnable rule
    train, test = TensorDataset(images[:96], labels[:96]), TensorDataset(images[96:], labels[96:])
    genotype = get_genotype("bayesnas_cifar10_lambda0.01")
    first = train_and_test(
        genotype, train, test, config, channels=2, num_cells=3, num_classes=2, seed=1
    )
    again = train_and_test(
        genotype, train, test, config, channels=2, num_cells=3, num_classes=2, seed=1
    )
    assert first["test_top1"] == again["test_top1"] and first["params"] == again["params"]
    assert first["params"] == count_parameters(
        cifar_network(genotype, channels=2, num_cells=3, num_classes=2, in_channels=1)
    )
    assert first["test_top1"] > 0.6  # it learnt the rule (chance is about 0.5)
    record = SweepRecord(
        3, 0.01, 0.01, genotype, get_genotype("bayesnas_cifar10_lambda0.007"), {}, {}, 0.0
    )
    rows = compare_cells([record], train, test, config, channels=2, num_cells=3, num_classes=2)
    assert [r["rule"] for r in rows] == list(RULES)
    assert rows[0]["pairs_normal"] == rows[2]["pairs_normal"] == len(genotype.normal.edges())
    assert rows[2]["pairs_reduction"] == len(genotype.reduction.edges())
    assert all(r["seed"] == 3 and 0.0 <= r["test_top1"] <= 1.0 for r in rows)


def test_summarize():
    rows = [{"rule": "a", "x": 1.0}, {"rule": "b", "x": 5.0}, {"rule": "a", "x": 3.0}]
    out = summarize(rows, "rule", "x")
    assert list(out) == ["a", "b"]
    assert out["a"] == {"mean": 2.0, "std": math.sqrt(2.0), "n": 2.0}
    assert out["b"] == {"mean": 5.0, "std": 0.0, "n": 1.0}
    with pytest.raises(ValueError, match="every row must have the keys 'rule' and 'y'"):
        summarize(rows, "rule", "y")
    with pytest.raises(ValueError, match="`rows` is empty"):
        summarize([], "rule", "x")
    assert RULES == ("bayesnas", "magnitude", "random")
