"""First-order DARTS on the supernet: the mixture, the gradients, the bilevel splits, the rule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bayesnas_book.config import load_config
from bayesnas_book.darts import DartsRun, darts_cell, mixing_switches
from bayesnas_book.search_data import build_search_data
from bayesnas_book.space.graph import get_cell_graph

TINY = ["search.channels=2", 'search.layout="NR"', "search.warmup_epochs=0",
        "search.switch_epochs=1", "search.rounds=1", "search.max_batches_per_epoch=2",
        "data.batch_size=16"]


@pytest.fixture(scope="module")
def run() -> DartsRun:
    config = load_config("quick", overrides=TINY)
    return DartsRun(config, build_search_data(config), arch_lr=0.1)


def test_mixing_switches_are_the_softmax_with_none_as_the_missing_mass() -> None:
    alpha = torch.randn(3, 8, dtype=torch.float64)
    values = mixing_switches(alpha)
    w = torch.exp(alpha) / torch.exp(alpha).sum(1, keepdim=True)  # softmax by its formula
    assert torch.equal(values[:, 0], torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(values[:, 1:], w[:, 1:])
    torch.testing.assert_close(values[:, 1:].sum(1) + w[:, 0], torch.ones(3, dtype=torch.float64))


def test_the_mixture_is_the_supernet_with_those_switches(run: DartsRun) -> None:
    x = torch.randn(4, 1, 8, 8)
    run.model.eval()
    with torch.no_grad():
        for kind in ("normal", "reduction"):
            cells = len(run.model.cell_indices(kind))
            values = mixing_switches(run.alpha[kind]).expand(cells, -1, -1)
            run.model.load_switch_values(kind, values.contiguous())
        torch.testing.assert_close(run.forward(x), run.model(x.to(run.dtype)))


def test_gradients_reach_alpha_and_not_the_switches(run: DartsRun) -> None:
    x, y = torch.randn(8, 1, 8, 8), torch.arange(8) % 10
    loss = F.cross_entropy(run.forward(x), y)
    grads = torch.autograd.grad(loss, list(run.alpha.values()))
    for g in grads:
        assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert all(not p.requires_grad for p in run.model.switch_parameters())
    # one entry by finite differences
    alpha, h = run.alpha["normal"], 1e-6
    with torch.no_grad():
        alpha[2, 3] += h
        up = F.cross_entropy(run.forward(x), y)
        alpha[2, 3] -= 2 * h
        down = F.cross_entropy(run.forward(x), y)
        alpha[2, 3] += h
    run.model.train()
    assert float(grads[0][2, 3]) == pytest.approx(float(up - down) / (2 * h), rel=1e-4, abs=1e-9)


def test_bilevel_splits_and_optimisers_are_disjoint(run: DartsRun) -> None:
    a, b = set(run.weight_split.indices), set(run.alpha_split.indices)
    assert not a & b and a | b == set(range(len(run.data.switch)))
    alpha_ids = {id(p) for p in run.alpha.values()}
    weight_ids = {id(p) for group in run.weight_optimizer.param_groups for p in group["params"]}
    assert not alpha_ids & weight_ids
    assert {id(p) for g in run.alpha_optimizer.param_groups for p in g["params"]} == alpha_ids


def test_an_epoch_moves_alpha_and_the_warmup_does_not() -> None:
    config = load_config("quick", overrides=TINY + ["search.warmup_epochs=1"])
    run = DartsRun(config, build_search_data(config), arch_lr=0.1)
    start = {k: v.detach().clone() for k, v in run.alpha.items()}
    run._epoch(0, bilevel=False)
    assert all(torch.equal(run.alpha[k], start[k]) for k in start)
    result = run.run()
    assert [m["phase"] for m in result.metrics] == ["warmup", "bilevel"]
    assert any(not torch.equal(result.alpha[k], start[k]) for k in start)
    assert result.genotype.space == "bayesnas"


def test_darts_rule_on_a_hand_made_alpha() -> None:
    graph = get_cell_graph("darts_normal")  # node j has 2 + j incoming edges
    alpha = torch.zeros(graph.num_edges, 1 + graph.num_ops, dtype=torch.float64)
    ops = graph.ops
    want = {0: {"c_{k-2}": "sep_conv_3x3", "c_{k-1}": "skip_connect"},
            1: {"c_{k-1}": "max_pool_3x3", "node_0": "dil_conv_5x5"},
            2: {"c_{k-2}": "avg_pool_3x3", "node_1": "sep_conv_5x5"},
            3: {"node_0": "dil_conv_3x3", "node_2": "sep_conv_3x3"}}
    for j, inputs in want.items():
        for source, op in inputs.items():
            alpha[graph.edge_index(source, j), 1 + ops.index(op)] = 3.0
    # `none` dominates an edge that is otherwise flat: it must not make that edge strong
    alpha[graph.edge_index("c_{k-1}", 3), 0] = 10.0
    cell = darts_cell(graph, alpha)
    got = {j: {i.source: i.ops for i in inputs} for j, inputs in enumerate(cell.nodes)}
    assert got == {j: {s: (op,) for s, op in inputs.items()} for j, inputs in want.items()}
    with pytest.raises(ValueError, match="edges_per_node"):
        darts_cell(graph, alpha, edges_per_node=0)
    with pytest.raises(ValueError, match="shape"):
        darts_cell(graph, alpha[:3])


def test_bad_settings_are_refused() -> None:
    config = load_config("quick", overrides=TINY)
    data = build_search_data(config)
    with pytest.raises(ValueError, match="arch_lr"):
        DartsRun(config, data, arch_lr=0.0)
    with pytest.raises(ValueError, match="arch_weight_decay"):
        DartsRun(config, data, arch_weight_decay=-1.0)
    with pytest.raises(ValueError, match="one N and one R"):
        DartsRun(load_config("quick", overrides=TINY + ['search.layout="NN"']), data)
