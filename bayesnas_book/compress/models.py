"""The networks the paper compresses, with a unit gate on every prunable layer.

* ``lenet300``: LeNet-300-100 (LeCun et al. 1998), ``in -> 300 -> 100 -> classes`` with ReLU;
  gates on the inputs (784 pixels on MNIST, 64 on the 8x8 digits) and on both hidden layers.
* ``lenet5``: LeNet-5-Caffe, the variant the compression papers use (Caffe's ``lenet``
  example): conv 5x5 20 -> max-pool 2 -> conv 5x5 50 -> max-pool 2 -> 800 -> 500 -> classes;
  "20-50-800-500" counts conv1 filters, conv2 filters, fc1 inputs and fc1 units, each gated.
* ``vgg``: the VGG-16-like CIFAR-10 network of Zagoruyko (2015, "92.45% on CIFAR-10 in Torch"),
  the one Bayesian Compression (Louizos et al. 2017) prunes: 13 conv 3x3 layers with BatchNorm
  (64, 64, M, 128, 128, M, 256 x3, M, 512 x3, M, 512 x3, M), then Linear 512 -> 512, BatchNorm,
  ReLU, Linear 512 -> classes; a gate after every BatchNorm (14 gate layers).

Each builder takes the image shape ``(C, H, W)``; a shape the model cannot read raises a
``ValueError`` saying which datasets fit. The 8x8 digits get small variants of the LeNets.

.. note::
    LeNet-5-Caffe has no ReLU after its convolutions; we add one (as the PyTorch ports of the
    compression papers do). The digits variant of LeNet-5 uses 3x3 convolutions with padding 1
    (8x8 -> 4x4 -> 2x2, so fc1 reads 50 x 2 x 2 = 200 features). Zagoruyko's VGG has dropout
    between the convolutions; we leave it out (the pruning is the subject, and the curvature
    recursion needs a deterministic forward). ``width`` scales every layer's units (tests and
    the quick profile use small widths; the paper's networks have ``width = 1``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from bayesnas_book.compress.gates import GatedNet, UnitGate

__all__ = ["MODELS", "ModelSpec", "build_model", "lenet5", "lenet300", "model_names", "register_model", "vgg"]

#: Zagoruyko's VGG-16 for CIFAR-10: channels of each conv layer, "M" = 2x2 max-pool.
VGG16_LAYERS: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _scaled(units: int, width: float) -> int:
    return max(1, round(units * width))


def _check_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in input_shape):
        raise ValueError(f"`input_shape` must be (C, H, W) of positive integers, got {input_shape!r}")
    return input_shape  # type: ignore[return-value]


def _check_width(width: float) -> float:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 4:
        raise ValueError(f"`width` must be in (0, 4], got {width!r}")
    return float(width)


def lenet300(*, input_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10, width: float = 1.0) -> GatedNet:
    """LeNet-300-100 with gates on the inputs and the two hidden layers.

    Args:
        input_shape: ``(C, H, W)``; any image is flattened (MNIST 784 inputs, digits 64).
        num_classes: output units.
        width: scales the hidden layers (300, 100).
    """
    C, H, W = _check_shape(input_shape)
    width = _check_width(width)
    n_in, h1, h2 = C * H * W, _scaled(300, width), _scaled(100, width)
    return GatedNet(OrderedDict([
        ("flatten", nn.Flatten()),
        ("gate0", UnitGate(n_in)),  # feature gates: the input pixels
        ("fc1", nn.Linear(n_in, h1)), ("gate1", UnitGate(h1)), ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(h1, h2)), ("gate2", UnitGate(h2)), ("relu2", nn.ReLU()),
        ("fc3", nn.Linear(h2, num_classes)),
    ]), (C, H, W), "lenet300")


def lenet5(*, input_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10, width: float = 1.0) -> GatedNet:
    """LeNet-5-Caffe (20-50-800-500) with gates on both conv layers, the fc1 inputs and fc1.

    Args:
        input_shape: ``(1, 28, 28)`` (MNIST) or ``(1, 8, 8)`` (the digits variant, 3x3 convs).
        num_classes: output units.
        width: scales the filters (20, 50) and fc1 (500).

    Raises:
        ValueError: for another image shape.
    """
    C, H, W = _check_shape(input_shape)
    width = _check_width(width)
    if (H, W) == (28, 28):
        kernel, padding = 5, 0  # 28 -> 24 -> 12 -> 8 -> 4
    elif (H, W) == (8, 8):
        kernel, padding = 3, 1  # 8 -> 8 -> 4 -> 4 -> 2
    else:
        raise ValueError(
            f"model 'lenet5' reads 28x28 images (MNIST) or 8x8 images (digits), got input shape {(C, H, W)}; "
            "use --dataset mnist or digits, or --model vgg for CIFAR-10"
        )
    c1, c2, f1 = _scaled(20, width), _scaled(50, width), _scaled(500, width)
    side = ((H + 2 * padding - kernel + 1) // 2 + 2 * padding - kernel + 1) // 2  # conv, pool, conv, pool
    features = c2 * side * side
    return GatedNet(OrderedDict([
        ("conv1", nn.Conv2d(C, c1, kernel, padding=padding)), ("gate1", UnitGate(c1)), ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(c1, c2, kernel, padding=padding)), ("gate2", UnitGate(c2)), ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("gate3", UnitGate(features)),  # feature gates: the 800 inputs of fc1
        ("fc1", nn.Linear(features, f1)), ("gate4", UnitGate(f1)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(f1, num_classes)),
    ]), (C, H, W), "lenet5")


def vgg(*, input_shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10, width: float = 1.0) -> GatedNet:
    """Zagoruyko's VGG-16 for CIFAR-10 with BatchNorm and a gate on every conv and fc layer.

    Args:
        input_shape: ``(3, 32, 32)``.
        num_classes: output units.
        width: scales every layer's channels (and the 512-unit fc layer).

    Raises:
        ValueError: for another image shape.
    """
    C, H, W = _check_shape(input_shape)
    width = _check_width(width)
    if (C, H, W) != (3, 32, 32):
        raise ValueError(
            f"model 'vgg' reads 3x32x32 colour images (CIFAR-10), got input shape {(C, H, W)}; "
            "use --dataset cifar10, or --model lenet300 / lenet5 for digits and MNIST"
        )
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels, conv, pool = C, 0, 0
    for item in VGG16_LAYERS:
        if item == "M":
            pool += 1
            layers[f"pool{pool}"] = nn.MaxPool2d(2)
            continue
        conv += 1
        out = _scaled(int(item), width)
        layers[f"conv{conv}"] = nn.Conv2d(channels, out, 3, padding=1)
        layers[f"bn{conv}"] = nn.BatchNorm2d(out)
        layers[f"gate{conv}"] = UnitGate(out)
        layers[f"relu{conv}"] = nn.ReLU()
        channels = out
    hidden = _scaled(512, width)
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Linear(channels, hidden)
    layers["bn14"] = nn.BatchNorm1d(hidden)
    layers["gate14"] = UnitGate(hidden)
    layers["relu14"] = nn.ReLU()
    layers["fc2"] = nn.Linear(hidden, num_classes)
    return GatedNet(layers, (C, H, W), "vgg")


@dataclass(frozen=True)
class ModelSpec:
    """A registered compression model: its name, builder and one-line description."""

    name: str
    builder: Callable[..., GatedNet]
    description: str


MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to :data:`MODELS`.

    Raises:
        ValueError: if the name is taken.
    """
    if spec.name in MODELS:
        raise ValueError(f"compression model {spec.name!r} is already registered")
    MODELS[spec.name] = spec
    return spec


def model_names() -> tuple[str, ...]:
    """The registered model names."""
    return tuple(MODELS)


register_model(ModelSpec("lenet300", lenet300, "LeNet-300-100 (MNIST 784-300-100; digits 64-300-100)"))
register_model(ModelSpec("lenet5", lenet5, "LeNet-5-Caffe 20-50-800-500 (MNIST; digits variant 20-50-200-500)"))
register_model(ModelSpec("vgg", vgg, "VGG-16 of Zagoruyko with BatchNorm (CIFAR-10), as in Bayesian Compression"))


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int = 10, width: float = 1.0) -> GatedNet:
    """Build a registered gated model for images of ``input_shape``.

    Raises:
        ValueError: for an unknown name (listing the valid ones), or an image shape the model
            cannot read (saying which datasets fit).
    """
    if name not in MODELS:
        raise ValueError(f"unknown compression model {name!r}; valid models: {', '.join(MODELS)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes!r}")
    return MODELS[name].builder(input_shape=tuple(input_shape), num_classes=num_classes, width=width)
