"""Compression models: group shapes, removal equals masking, counts, and bad inputs."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from bayesnas_book.compress import (
    GatedNet,
    UnitGate,
    build_model,
    gate_groups,
    gate_modules,
    kept_counts,
    physically_prune,
    size_report,
)
from bayesnas_book.config import ConfigError, load_config

SHAPES = {"lenet300": (1, 28, 28), "lenet5": (1, 28, 28), "vgg": (3, 32, 32)}


def _groups(model):
    return {g.gate: (g.num_units, g.kind, g.incoming_shape, g.outgoing_shape) for g in gate_groups(model)}


def test_lenet300_groups() -> None:
    assert _groups(build_model("lenet300", (1, 28, 28))) == {
        "gate0": (784, "feature", (), (300,)),
        "gate1": (300, "neuron", (784,), (100,)),
        "gate2": (100, "neuron", (300,), (10,)),
    }
    assert _groups(build_model("lenet300", (1, 8, 8)))["gate0"] == (64, "feature", (), (300,))


def test_lenet5_groups() -> None:
    assert _groups(build_model("lenet5", (1, 28, 28))) == {
        "gate1": (20, "filter", (1, 5, 5), (50, 5, 5)),
        "gate2": (50, "filter", (20, 5, 5), (500, 16)),  # each filter feeds 4 x 4 columns of fc1
        "gate3": (800, "feature", (), (500,)),
        "gate4": (500, "neuron", (800,), (10,)),
    }
    assert _groups(build_model("lenet5", (1, 8, 8)))["gate2"] == (50, "filter", (20, 3, 3), (500, 4))


def test_vgg_groups() -> None:
    groups = _groups(build_model("vgg", (3, 32, 32), width=1 / 16))
    assert len(groups) == 14
    assert groups["gate1"] == (4, "filter", (3, 3, 3), (4, 3, 3))
    assert groups["gate13"] == (32, "filter", (32, 3, 3), (32,))  # the last conv feeds fc1 (1 x 1 map)
    assert groups["gate14"] == (32, "neuron", (32,), (10,))
    full = _groups(build_model("vgg", (3, 32, 32)))
    assert [v[0] for v in full.values()] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512]


@pytest.mark.parametrize("name,shape,width", [("lenet300", (1, 28, 28), 0.5), ("lenet5", (1, 28, 28), 0.5),
                                              ("lenet5", (1, 8, 8), 1.0), ("vgg", (3, 32, 32), 1 / 16)])
@pytest.mark.parametrize("train_mode", [False, True])
def test_removal_equals_masking(name: str, shape, width: float, train_mode: bool) -> None:
    torch.manual_seed(0)
    model = build_model(name, shape, width=width).double()
    for _, gate in gate_modules(model):
        with torch.no_grad():
            gate.value.uniform_(-2.0, 2.0)  # negative gates too: folding must keep the sign
        pruned = torch.rand(gate.num_units) < 0.5
        pruned[0] = False
        gate.prune(pruned)
    x = torch.randn(6, *shape, dtype=torch.float64)
    if train_mode:  # BatchNorm with batch statistics: still per channel
        model.train()
    else:
        model.train()
        model(x)  # non-trivial running statistics
        model.eval()
    plain = physically_prune(model)
    assert not any(isinstance(m, UnitGate) for m in plain.modules())
    assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in model.parameters())
    torch.testing.assert_close(plain(x), model(x), rtol=1e-10, atol=1e-10)


def test_counts_before_and_after_match_hand_counts() -> None:
    model = build_model("lenet300", (1, 28, 28))
    for (_name, gate), keep in zip(gate_modules(model), (100, 50, 20), strict=True):
        pruned = torch.ones(gate.num_units, dtype=torch.bool)
        pruned[torch.randperm(gate.num_units, generator=torch.Generator().manual_seed(0))[:keep]] = False
        gate.prune(pruned)
    report = size_report(model)
    assert report["before"].params == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10 == 266_610
    assert report["before"].macs == 784 * 300 + 300 * 100 + 100 * 10
    assert report["after"].units == {"gate0": 100, "gate1": 50, "gate2": 20}
    assert report["after"].params == 100 * 50 + 50 + 50 * 20 + 20 + 20 * 10 + 10
    assert report["after"].macs == 100 * 50 + 50 * 20 + 20 * 10
    lenet5 = size_report(build_model("lenet5", (1, 28, 28)))["before"]
    assert lenet5.params == 20 * 25 + 20 + 50 * 20 * 25 + 50 + 800 * 500 + 500 + 500 * 10 + 10 == 431_080
    assert lenet5.macs == 20 * 24 * 24 * 25 + 50 * 8 * 8 * 20 * 25 + 800 * 500 + 500 * 10
    net = build_model("lenet5", (1, 28, 28))
    gates = dict(gate_modules(net))
    gates["gate2"].prune(torch.arange(50) >= 10)  # 10 filters left: fc1 reads at most 160 features
    after = size_report(net)["after"]
    assert after.units["gate2"] == 10 and after.units["gate3"] == 160
    assert after.macs == 20 * 24 * 24 * 25 + 10 * 8 * 8 * 20 * 25 + 160 * 500 + 500 * 10


def test_no_prunable_layer() -> None:
    plain = GatedNet(OrderedDict([("flatten", nn.Flatten()), ("fc", nn.Linear(64, 10))]), (1, 8, 8), "plain")
    with pytest.raises(ValueError, match="has no prunable layer"):
        gate_groups(plain)
    with pytest.raises(ValueError, match="has no prunable layer"):
        physically_prune(plain)


def test_bad_layouts_and_shapes() -> None:
    bad = GatedNet(OrderedDict([("flatten", nn.Flatten()), ("fc", nn.Linear(64, 10)), ("relu", nn.ReLU()),
                                ("gate", UnitGate(10)), ("out", nn.Linear(10, 10))]), (1, 8, 8), "bad")
    with pytest.raises(ValueError, match="must follow a Linear or Conv2d"):
        gate_groups(bad)
    with pytest.raises(ValueError, match="model 'vgg' reads 3x32x32 colour images"):
        build_model("vgg", (1, 28, 28))
    with pytest.raises(ValueError, match="model 'lenet5' reads 28x28 images"):
        build_model("lenet5", (3, 32, 32))
    with pytest.raises(ValueError, match="unknown compression model 'resnet'; valid models: lenet300, lenet5, vgg"):
        build_model("resnet", (3, 32, 32))
    with pytest.raises(ValueError, match=r"`width` must be in \(0, 4\], got 0"):
        build_model("lenet300", (1, 8, 8), width=0)
    with pytest.raises(ValueError, match="`num_units` must be an integer >= 1, got 0"):
        UnitGate(0)


def test_whole_layer_pruned_is_refused() -> None:
    model = build_model("lenet300", (1, 8, 8), width=0.1)
    dict(gate_modules(model))["gate1"].prune(torch.ones(30, dtype=torch.bool))
    with pytest.raises(ValueError, match="every unit of gate layer 'gate1' is pruned"):
        physically_prune(model)


def test_sparsity_target_out_of_range() -> None:
    assert kept_counts({"a": 300, "b": 100}, 0.9) == {"a": 30, "b": 10}
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"`sparsity` must be in \[0, 1\)"):
            kept_counts({"a": 300}, bad)
    with pytest.raises(ConfigError, match=r"`compress.baseline_sparsity` must be in \[0, 1\), got 1.5"):
        load_config("quick", overrides=["compress.baseline_sparsity=1.5"])
