"""The seeding helper and the device helper."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from bayesnas_book import describe_device, resolve_device, seed_everything


def _draw() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_same_seed_same_numbers() -> None:
    seed_everything(5)
    first = _draw()
    seed_everything(5)
    assert _draw() == first
    seed_everything(6)
    assert _draw() != first


def test_generator_is_seeded_and_determinism_is_set() -> None:
    generator = seed_everything(3, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.equal(torch.rand(4, generator=generator), torch.rand(4, generator=torch.Generator().manual_seed(3)))
    seed_everything(3, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_bad_seed(seed) -> None:
    with pytest.raises(ValueError, match="`seed` must be a non-negative integer"):
        seed_everything(seed)


def test_auto_device_is_cuda_exactly_when_present() -> None:
    device = resolve_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert describe_device(resolve_device("cpu")).startswith("cpu (")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_gpu_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="no CUDA GPU; use device=cpu"):
        resolve_device("cuda")
