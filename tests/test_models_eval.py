"""Evaluation networks from genotypes: the official parameter and MAC counts, shapes, options."""

from __future__ import annotations

import pytest
import torch

from bayesnas_book.models.counting import count_macs, count_parameters
from bayesnas_book.models.eval_net import cifar_network, drop_path, imagenet_network
from bayesnas_book.space.genotype import genotype_names, get_genotype


@pytest.mark.parametrize("name", genotype_names())
def test_official_counts_are_reproduced_exactly(name: str) -> None:
    """The official nets, counted: 2,575,702 / 3,197,350 / 2,512,198 params (lambda 0.01 / 0.007 / 0.005), ImageNet 4,008,928."""
    genotype = get_genotype(name)
    official = genotype.metadata["official"]
    imagenet = official["dataset"] == "imagenet"
    network = imagenet_network(genotype) if imagenet else cifar_network(genotype)
    assert count_parameters(network) == official["params"]
    assert count_macs(network, (3, 224, 224) if imagenet else (3, 32, 32)) == official["macs"]


def test_imagenet_net_is_a_mobile_setting_net() -> None:
    network = imagenet_network(get_genotype("bayesnas_imagenet"))
    assert count_macs(network, (3, 224, 224)) < 600_000_000


def test_small_network_trains_with_dropout_drop_path_and_auxiliary_head() -> None:
    torch.manual_seed(0)
    network = cifar_network(get_genotype("bayesnas_cifar10_lambda0.01"), channels=4, num_cells=5, auxiliary=True)
    network.set_drop_prob(0.2, 0.1)
    logits, auxiliary = network(torch.randn(2, 3, 32, 32))
    assert logits.shape == auxiliary.shape == (2, 10)
    (logits.sum() + auxiliary.sum()).backward()
    network.eval()
    assert network(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"drop probabilities must be in \[0, 1\)"):
        network.set_drop_prob(1.0)


def test_drop_path_keeps_the_expectation() -> None:
    torch.manual_seed(0)
    x = torch.ones(20000, 1)
    assert abs(float(drop_path(x, 0.3, True).mean()) - 1.0) < 0.02
    assert torch.equal(drop_path(x, 0.3, False), x)


def test_bad_arguments() -> None:
    genotype = get_genotype("bayesnas_cifar10_lambda0.01")
    with pytest.raises(ValueError, match="`num_cells` must be >= 3"):
        cifar_network(genotype, num_cells=2)
    with pytest.raises(ValueError, match="`size_reduction` must be conv or factorized"):
        cifar_network(genotype, size_reduction="pool")
