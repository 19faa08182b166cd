"""The curvature comparison: structure, the reference against itself, bounds on the quick net."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

from bayesnas_book.config import load_config
from bayesnas_book.curvature.api import switch_curvature
from bayesnas_book.curvature.compare import (
    DEFAULT_METHODS,
    EXACT_REFERENCE,
    CurvatureComparison,
    MethodResult,
    MethodSpec,
    compare_curvature_methods,
    pearson,
    spearman,
)
from bayesnas_book.data import digits_splits
from bayesnas_book.space.supernet import CELL_TYPES, Supernet, SupernetSpec

LAMBDAS = {"lambda_o": 0.05, "lambda_c": 0.05}


def tiny_supernet(seed: int = 0) -> Supernet:
    """Two cells (N, R), C = 2, 1-channel 4x4 inputs; float64; switches spread in [0, 0.3)."""
    torch.manual_seed(seed)
    net = Supernet(SupernetSpec(in_channels=1, num_classes=3, channels=2, layout="NR"))
    net = net.double().train()
    g = torch.Generator().manual_seed(seed)
    for kind in CELL_TYPES:
        shape = net.switch_values(kind).shape
        net.load_switch_values(kind, 0.3 * torch.rand(shape, generator=g, dtype=torch.float64))
    return net


def tiny_batch(seed: int = 0, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 4, 4, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


@pytest.fixture(scope="module")
def tiny_comparison() -> tuple[Supernet, CurvatureComparison]:
    net = tiny_supernet()
    comparison = compare_curvature_methods(
        net, [tiny_batch(0), tiny_batch(1, n=2)], repeats=2, warmup=1, **LAMBDAS
    )
    return net, comparison


# --------------------------------------------------------------------------------------------
# structure
# --------------------------------------------------------------------------------------------


def test_structure_rows_records_and_table(tiny_comparison) -> None:
    net, c = tiny_comparison
    labels = [r.label for r in c.rows]
    assert labels == [EXACT_REFERENCE.label] + [m.label for m in DEFAULT_METHODS]
    assert c.reference == "exact_ggn" and c.rows[0].is_reference
    assert not any(r.is_reference for r in c.rows[1:])
    S = sum(p.numel() for p in net.switch_parameters())  # 2 cells x 8 edges x 8 switches
    assert len(c.names) == S == 128
    assert c.num_groups == 2 * 8 * 8  # (E, 1 + K) groups per cell type
    assert (c.num_batches, c.num_examples, c.repeats) == (2, 6, 2)
    for r in c.rows:
        assert r.diagonal.shape == (S,) and r.diagonal.dtype == torch.float64
        assert r.prune_mask.shape == r.keep_mask.shape == (c.num_groups,)
        assert r.pruned == int(r.prune_mask.sum())
        assert 0.0 <= r.agreement <= 1.0 and 0.0 <= r.keep_agreement <= 1.0
        assert r.seconds > 0 and r.cost_ratio == pytest.approx(r.seconds / c.forward_backward_s)
        # the reference runs once per batch, the others `repeats` times per batch
        assert r.timings == (2 if r.is_reference else 4)
    records = c.records()
    assert [rec["label"] for rec in records] == labels
    assert set(records[0]) >= {"relative_error", "pearson", "spearman", "agreement", "cost_ratio"}
    table = c.table()
    assert [row[0] for row in table.rows] == [
        label + (" (ref)" if label == "exact_ggn" else "") for label in labels
    ]
    assert table.header[-1].startswith("cost") and "cost" in str(table)
    assert "cost" not in str(c.table(cost=False)) and "<table" in table._repr_html_()
    assert c.row("mc_ggn x1").method == "mc_ggn"
    with pytest.raises(KeyError, match="no method labelled 'nope'; labels: 'exact_ggn'"):
        c.row("nope")


def test_rows_are_the_api_methods_on_the_same_batches(tiny_comparison) -> None:
    net, c = tiny_comparison
    batches = [tiny_batch(0), tiny_batch(1, n=2)]
    switches = [dict(net.named_modules())[n] for n in c.names]
    exact = switch_curvature(net, batches, "exact_ggn", switches)
    torch.testing.assert_close(c.rows[0].diagonal, exact.diagonal, rtol=1e-12, atol=0)
    rec = switch_curvature(net, batches, "recursion", switches)
    torch.testing.assert_close(c.row("recursion").diagonal, rec.diagonal, rtol=1e-12, atol=0)
    net.eval()
    rec_eval = switch_curvature(net, batches, "recursion", switches)
    net.train()
    torch.testing.assert_close(
        c.row("recursion, eval BN").diagonal, rec_eval.diagonal, rtol=1e-12, atol=0
    )
    # the relative error and the correlations are computed as documented
    r = c.row("recursion")
    expected = float((rec.diagonal - exact.diagonal).norm() / exact.diagonal.norm())
    assert r.relative_error == pytest.approx(expected, rel=1e-12)
    assert r.pearson == pytest.approx(
        float(torch.corrcoef(torch.stack([rec.diagonal, exact.diagonal]))[0, 1])
    )


def test_model_modes_and_state_are_restored() -> None:
    net = tiny_supernet(1)
    net.cells[0].eval()  # a mixed-mode model keeps its modes
    modes = [m.training for m in net.modules()]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    compare_curvature_methods(net, [tiny_batch(2)], repeats=1, warmup=0, **LAMBDAS)
    assert [m.training for m in net.modules()] == modes
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)  # running statistics included
    assert all(p.grad is None for p in net.parameters())


def test_the_reference_against_itself_has_error_0_and_agreement_1() -> None:
    net = tiny_supernet(2)
    again = MethodSpec("exact again", "exact_ggn", {"mode": "fwd"})
    c = compare_curvature_methods(net, [tiny_batch(3)], (again,), repeats=1, warmup=0, **LAMBDAS)
    row = c.row("exact again")
    assert row.relative_error < 1e-10 and row.norm_ratio == pytest.approx(1.0, abs=1e-10)
    assert row.pearson == pytest.approx(1.0, abs=1e-12)
    assert row.spearman == pytest.approx(1.0, abs=1e-12)
    assert row.agreement == 1.0 and row.keep_agreement == 1.0
    assert torch.equal(row.prune_mask, c.rows[0].prune_mask)
    assert 0 < c.rows[0].pruned < c.num_groups  # the decisions are not trivial here


def test_monte_carlo_results_do_not_depend_on_repeats_or_warmup() -> None:
    net = tiny_supernet(3)
    mc = (MethodSpec("mc", "mc_ggn", {"num_samples": 2}),)
    data = [tiny_batch(4), tiny_batch(5)]
    one = compare_curvature_methods(net, data, mc, repeats=1, warmup=0, seed=7, **LAMBDAS)
    two = compare_curvature_methods(net, data, mc, repeats=2, warmup=2, seed=7, **LAMBDAS)
    other = compare_curvature_methods(net, data, mc, repeats=1, warmup=0, seed=8, **LAMBDAS)
    torch.testing.assert_close(one.row("mc").diagonal, two.row("mc").diagonal, rtol=0, atol=0)
    assert not torch.equal(one.row("mc").diagonal, other.row("mc").diagonal)


def test_decisions_follow_lambda_and_the_threshold() -> None:
    """Agreement is measured on real decisions: a tiny threshold prunes only zero switches."""
    net = tiny_supernet(4)
    rec = (MethodSpec("recursion", "recursion"),)
    c = compare_curvature_methods(
        net, [tiny_batch(6)], rec, threshold=1e-12, repeats=1, warmup=0, **LAMBDAS
    )
    assert all(r.pruned == 0 and r.agreement == 1.0 for r in c.rows)
    gamma = {kind: torch.full((8, 8), 1e-3, dtype=torch.float64) for kind in CELL_TYPES}
    c = compare_curvature_methods(
        net, [tiny_batch(6)], rec, prior_variance=gamma, repeats=1, warmup=0, **LAMBDAS
    )
    assert (
        c.rows[0].pruned
        != compare_curvature_methods(net, [tiny_batch(6)], rec, repeats=1, warmup=0, **LAMBDAS)
        .rows[0]
        .pruned
    )


# --------------------------------------------------------------------------------------------
# statistics and the selection rule
# --------------------------------------------------------------------------------------------


def test_pearson_and_spearman_match_scipy_with_ties() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (40,), generator=g).double()  # many ties
    b = a + torch.rand(40, generator=g, dtype=torch.float64) * 3
    assert spearman(a, b) == pytest.approx(spearmanr(a.numpy(), b.numpy()).statistic, abs=1e-12)
    assert pearson(a, b) == pytest.approx(
        float(torch.corrcoef(torch.stack([a, b]))[0, 1]), abs=1e-12
    )
    assert math.isnan(pearson(torch.ones(3), torch.arange(3.0)))


def _row(
    label: str, agreement: float, cost: float, batchnorm: str = "train", ref: bool = False
) -> MethodResult:
    empty = torch.zeros(1, dtype=torch.bool)
    return MethodResult(
        label,
        "recursion",
        batchnorm,
        {},
        torch.zeros(1),
        0.0,
        1.0,
        1.0,
        1.0,
        agreement,
        agreement,
        0,
        empty,
        empty,
        cost,
        cost,
        1,
        ref,
    )


def _comparison(*rows: MethodResult) -> CurvatureComparison:
    return CurvatureComparison(rows, "ref", ("s",), 1, 1.0, 1, 1, 1, 0.05, 0.05, 0.0585)


def test_best_method_rule() -> None:
    c = _comparison(
        _row("ref", 1.0, 100.0, ref=True),
        _row("a", 0.95, 1.0),
        _row("b", 0.99, 4.0),
        _row("c", 0.98, 2.0),
        _row("eval", 1.0, 0.5, batchnorm="eval"),  # not a default candidate
    )
    assert c.best_method().label == "b"  # highest agreement
    assert c.best_method(tolerance=0.015).label == "c"  # b and c tie: the cheaper
    assert c.best_method(tolerance=0.05).label == "a"
    assert c.best_method(candidates=["a", "eval"]).label == "eval"
    assert "1.0" in str(c.table()) and "100" in str(c.table())  # costs: two significant digits
    with pytest.raises(ValueError, match=r"`tolerance` must be in \[0, 1\), got 1.5"):
        c.best_method(tolerance=1.5)
    with pytest.raises(ValueError, match="no candidate method to choose from"):
        c.best_method(candidates=[])
    with pytest.raises(KeyError, match="no method labelled 'zzz'"):
        c.best_method(candidates=["zzz"])


# --------------------------------------------------------------------------------------------
# the quick search net: measured values, with a margin
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_comparison() -> CurvatureComparison:
    """The quick profile's supernet, 4 SGD steps on the digits, switches spread in [0, 0.3)."""
    config = load_config("quick")
    torch.manual_seed(0)
    net = Supernet(
        SupernetSpec(
            in_channels=1,
            num_classes=10,
            channels=config.search.channels,
            layout=config.search.layout,
        )
    ).train()
    x, y = digits_splits(seed=0)["train"].tensors
    optimizer = torch.optim.SGD(net.weight_parameters(), lr=0.1, momentum=0.9)
    for step in range(4):
        batch = slice(32 * step, 32 * (step + 1))
        optimizer.zero_grad()
        F.cross_entropy(net(x[batch]), y[batch]).backward()
        optimizer.step()
    g = torch.Generator().manual_seed(0)
    for kind in CELL_TYPES:
        shape = net.switch_values(kind).shape
        net.load_switch_values(kind, 0.3 * torch.rand(shape, generator=g))
    methods = (
        MethodSpec("recursion", "recursion"),
        MethodSpec("mc_ggn x16", "mc_ggn", {"num_samples": 16}),
    )
    return compare_curvature_methods(
        net,
        [(x[-8:], y[-8:])],
        methods,
        repeats=1,
        warmup=0,
        lambda_o=config.search.lambda_o,
        lambda_c=config.search.lambda_c,
    )


def test_quick_net_bounds(quick_comparison: CurvatureComparison) -> None:
    c = quick_comparison
    assert c.num_groups == 128 and 10 < c.rows[0].pruned < 60  # measured: 21 of 128
    rec, mc = c.row("recursion"), c.row("mc_ggn x16")
    # measured: recursion rel. error 101, norm ratio 102 (train-mode BN: it ignores the scale
    # invariance of the batch statistics), Pearson 0.660, agreement 0.969
    assert rec.relative_error > 20 and rec.norm_ratio > 20
    assert rec.pearson < 0.8
    assert rec.agreement > 0.9
    # measured: mc_ggn x16 rel. error 0.332, Pearson 0.946, Spearman 0.980, agreement 0.984
    assert mc.relative_error < 0.5
    assert mc.pearson > 0.85 and mc.spearman > 0.9
    assert mc.agreement > 0.95
    assert mc.relative_error < rec.relative_error / 20


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unchecked_net() -> Supernet:
    """One net for every argument check (each is refused before the net is used)."""
    return tiny_supernet()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lambda_o": -0.01}, "`lambda_o` must be > 0, got -0.01"),
        ({"lambda_c": float("nan")}, "`lambda_c` must be a finite number > 0, got nan"),
        ({"threshold": 0.0}, "`threshold` must be > 0, got 0.0"),
        ({"repeats": 0}, "`repeats` must be a positive integer, got 0"),
        ({"warmup": -1}, "`warmup` must be a non-negative integer, got -1"),
        ({"seed": 1.5}, "`seed` must be a non-negative integer, got 1.5"),
        ({"methods": ()}, "`methods` must be a non-empty sequence of MethodSpec"),
        ({"methods": ("recursion",)}, "`methods` entries must be MethodSpec, got 'recursion'"),
        (
            {"methods": (MethodSpec("x", "newton"),)},
            "unknown curvature method 'newton' .*valid methods: recursion",
        ),
        (
            {"methods": (MethodSpec("x", "recursion", batchnorm="frozen"),)},
            "`batchnorm` must be 'train' or 'eval', got 'frozen'",
        ),
        ({"methods": (MethodSpec("x", "mc_ggn", {"generator": None}),)}, "passes a generator"),
        ({"methods": (MethodSpec("x", "mc_ggn", {"full": True}),)}, "passes `full`"),
        (
            {"methods": (MethodSpec("exact_ggn", "recursion"),)},
            r"labels must be unique .*\['exact_ggn'\]",
        ),
        (
            {"reference": MethodSpec("r", "recursion", batchnorm="x")},
            "`reference`: `batchnorm` must be",
        ),
        ({"batches": []}, "`batches` is empty"),
        ({"batches": [torch.zeros(1)]}, "batch 0 must be an \\(x, y\\) pair, got Tensor"),
        (
            {"prior_variance": {"normal": torch.ones(8, 8)}},
            "`prior_variance` is missing cell type 'reduction'",
        ),
    ],
)
def test_bad_arguments(kwargs: dict, message: str, unchecked_net: Supernet) -> None:
    arguments = {"model": unchecked_net, "batches": [tiny_batch(0)], **LAMBDAS, **kwargs}
    with pytest.raises(ValueError, match=message):
        compare_curvature_methods(**arguments)


def test_model_must_be_a_supernet() -> None:
    with pytest.raises(
        ValueError, match="`model` must be a bayesnas_book.space.supernet.Supernet .*got Linear"
    ):
        compare_curvature_methods(nn.Linear(2, 2), [tiny_batch(0)], **LAMBDAS)
