"""Image transforms of the protocols: CIFAR-10 augmentation with cutout, MNIST normalisation.

Cutout (DeVries and Taylor, 2017) zeroes one ``size x size`` square at a uniformly random
centre (clipped at the border), after normalisation, as the official BayesNAS and DARTS
pipelines do. It draws from torch's global generator, whose state checkpoints save and restore.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import transforms

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "Cutout",
    "cifar10_eval_transform",
    "cifar10_train_transform",
    "cutout",
    "mnist_transform",
]

CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def cutout(image: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a ``size x size`` square of ``image`` ``(C, H, W)`` centred at a random pixel.

    Returns a new tensor; ``size == 0`` returns the image unchanged.
    """
    if size < 0:
        raise ValueError(f"`size` must be >= 0, got {size}")
    if size == 0:
        return image
    _, height, width = image.shape
    cy = int(torch.randint(height, (1,), generator=generator))
    cx = int(torch.randint(width, (1,), generator=generator))
    y0, y1 = max(cy - size // 2, 0), min(cy + size // 2, height)
    x0, x1 = max(cx - size // 2, 0), min(cx + size // 2, width)
    out = image.clone()
    out[:, y0:y1, x0:x1] = 0.0
    return out


class Cutout(nn.Module):
    """Module form of :func:`cutout` for ``transforms.Compose``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        if size < 0:
            raise ValueError(f"`size` must be >= 0, got {size}")
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return cutout(image, self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}"


def cifar10_train_transform(cutout_size: int = 16) -> transforms.Compose:
    """Random crop 32 with 4-pixel padding, horizontal flip, normalisation, cutout."""
    steps = [
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
    ]
    if cutout_size:
        steps.append(Cutout(cutout_size))
    return transforms.Compose(steps)


def cifar10_eval_transform() -> transforms.Compose:
    """Normalisation only."""
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)])


def mnist_transform() -> transforms.Compose:
    """Tensor and normalisation."""
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(MNIST_MEAN, MNIST_STD)])
