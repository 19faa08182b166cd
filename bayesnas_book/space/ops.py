"""The seven candidate operations of the BayesNAS search space, and their registry.

Every op maps ``(B, C, H, W)`` to ``(B, C, H', W')`` with ``H' = ceil(H / stride)``; it keeps the
channel count. Ops are built only from standard torch layers (``BatchNorm2d``, ``ReLU``,
``ZeroPad2d``, ``Conv2d``, ``MaxPool2d``, ``AvgPool2d``, ``Identity``) nested in
``nn.Sequential``, so the diagonal Gauss-Newton rules of :mod:`bayesnas_book.curvature.recursion`
cover each of them without op-specific code. Definitions follow the official code (see
``search_space.op_implementations`` in the released-genotypes JSON):

============== ================================================================================
name           layers
============== ================================================================================
sep_conv_3x3   2 x [BN -> ReLU -> ZeroPad2d(1) -> depthwise 3x3 (stride s, then 1) -> 1x1 conv]
sep_conv_5x5   2 x [BN -> ReLU -> ZeroPad2d(2) -> depthwise 5x5 (stride s, then 1) -> 1x1 conv]
dil_conv_3x3   BN -> ReLU -> ZeroPad2d(2) -> full 3x3 conv, dilation 2, stride s -> 1x1 conv
dil_conv_5x5   BN -> ReLU -> ZeroPad2d(4) -> full 5x5 conv, dilation 2, stride s -> 1x1 conv
max_pool_3x3   ZeroPad2d(1) -> MaxPool2d(3, s)     (zero padding, as official, not -inf)
avg_pool_3x3   ZeroPad2d(1) -> AvgPool2d(3, s)     (the padded zeros count in the mean)
skip_connect   Identity (stride 1);  BN -> 1x1 conv stride 2 (stride 2, no ReLU)
============== ================================================================================

No convolution has a bias; every BN is affine (the released nets' parameter counts include the
BN affine weights). There is no ``none`` op: the parent switch of an edge plays its role.

.. note::
   The dilated convs are full (``groups=1``) ``k x k`` convs, unlike DARTS's depthwise dil_conv,
   and the stride-2 skip is ``BN -> 1x1 conv`` rather than DARTS's FactorizedReduce: both as in
   the official BayesNAS code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from torch import nn

__all__ = [
    "CANDIDATE_OPS",
    "OPS",
    "OpBuilder",
    "OpRegistry",
    "build_op",
    "register_op",
]

OpBuilder = Callable[[int, int], nn.Module]
"""Builds an op from ``(channels, stride)``."""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _check_channels_stride(channels: int, stride: int) -> None:
    """Raise ``ValueError`` unless ``channels`` is a positive int and ``stride`` is 1 or 2."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels <= 0:
        raise ValueError(f"`channels` must be a positive integer, got {channels!r}")
    if isinstance(stride, bool) or stride not in (1, 2):
        raise ValueError(f"`stride` must be 1 or 2, got {stride!r}")


def _sep_block(channels: int, kernel_size: int, stride: int) -> nn.Sequential:
    """BN -> ReLU -> zero pad -> depthwise kxk conv (stride) -> pointwise 1x1 conv."""
    return nn.Sequential(
        nn.BatchNorm2d(channels, affine=True),
        nn.ReLU(inplace=False),
        nn.ZeroPad2d(kernel_size // 2),
        nn.Conv2d(channels, channels, kernel_size, stride=stride, groups=channels, bias=False),
        nn.Conv2d(channels, channels, 1, bias=False),
    )


def _sep_conv(channels: int, stride: int, kernel_size: int) -> nn.Sequential:
    """Two separable blocks; only the first one strides."""
    return nn.Sequential(
        _sep_block(channels, kernel_size, stride),
        _sep_block(channels, kernel_size, 1),
    )


def _dil_conv(channels: int, stride: int, kernel_size: int) -> nn.Sequential:
    """BN -> ReLU -> zero pad -> full kxk conv, dilation 2 (stride) -> 1x1 conv."""
    dilation = 2
    return nn.Sequential(
        nn.BatchNorm2d(channels, affine=True),
        nn.ReLU(inplace=False),
        # dilation * (k - 1) / 2 keeps the spatial size at stride 1
        nn.ZeroPad2d(dilation * (kernel_size - 1) // 2),
        nn.Conv2d(channels, channels, kernel_size, stride=stride, dilation=dilation, bias=False),
        nn.Conv2d(channels, channels, 1, bias=False),
    )


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


class OpRegistry(Mapping[str, OpBuilder]):
    """A read-only mapping ``name -> builder(channels, stride)``, filled by :meth:`register`.

    Registering a name twice is an error; looking up an unknown name raises ``KeyError``
    listing the valid names.
    """

    def __init__(self) -> None:
        self._builders: dict[str, OpBuilder] = {}

    def register(self, name: str, builder: OpBuilder) -> OpBuilder:
        """Add ``builder`` under ``name`` and return it.

        Raises:
            ValueError: if ``name`` is empty or already registered, or ``builder`` is not callable.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"op `name` must be a non-empty string, got {name!r}")
        if name in self._builders:
            raise ValueError(f"op {name!r} is already registered; choose another name")
        if not callable(builder):
            raise ValueError(f"`builder` for op {name!r} must be callable, got {builder!r}")
        self._builders[name] = builder
        return builder

    def __getitem__(self, name: str) -> OpBuilder:
        try:
            return self._builders[name]
        except KeyError:
            valid = ", ".join(self._builders)
            raise KeyError(f"unknown op {name!r}; valid ops: {valid}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)


OPS = OpRegistry()
"""The op registry: ``OPS[name](channels, stride) -> nn.Module``."""


def register_op(name: str) -> Callable[[OpBuilder], OpBuilder]:
    """Decorator form of ``OPS.register(name, builder)``."""

    def decorator(builder: OpBuilder) -> OpBuilder:
        return OPS.register(name, builder)

    return decorator


def build_op(name: str, channels: int, stride: int = 1) -> nn.Module:
    """Build the candidate op ``name`` for ``channels`` channels and ``stride``.

    Args:
        name: a key of :data:`OPS`, e.g. ``"sep_conv_3x3"``.
        channels: ``C``, input and output channels, a positive integer.
        stride: 1 (normal cell) or 2 (reduction-cell edges from the cell inputs).

    Returns:
        An ``nn.Module`` mapping ``(B, C, H, W)`` to ``(B, C, ceil(H/stride), ceil(W/stride))``.

    Raises:
        KeyError: for an unknown ``name``, listing the valid names.
        ValueError: for a non-positive ``channels`` or a stride other than 1 or 2.
    """
    builder = OPS[name]
    return builder(channels, stride)


# --------------------------------------------------------------------------------------------
# the seven BayesNAS ops
# --------------------------------------------------------------------------------------------


@register_op("sep_conv_3x3")
def sep_conv_3x3(channels: int, stride: int) -> nn.Module:
    """Separable 3x3 conv, applied twice (official class ``Sep3``)."""
    _check_channels_stride(channels, stride)
    return _sep_conv(channels, stride, 3)


@register_op("sep_conv_5x5")
def sep_conv_5x5(channels: int, stride: int) -> nn.Module:
    """Separable 5x5 conv, applied twice (official class ``Sep5``)."""
    _check_channels_stride(channels, stride)
    return _sep_conv(channels, stride, 5)


@register_op("dil_conv_3x3")
def dil_conv_3x3(channels: int, stride: int) -> nn.Module:
    """Full 3x3 conv with dilation 2 then 1x1 (official class ``Dil3``)."""
    _check_channels_stride(channels, stride)
    return _dil_conv(channels, stride, 3)


@register_op("dil_conv_5x5")
def dil_conv_5x5(channels: int, stride: int) -> nn.Module:
    """Full 5x5 conv with dilation 2 then 1x1 (official class ``Dil5``)."""
    _check_channels_stride(channels, stride)
    return _dil_conv(channels, stride, 5)


@register_op("max_pool_3x3")
def max_pool_3x3(channels: int, stride: int) -> nn.Module:
    """3x3 max pool after explicit zero padding (official class ``MaxPool``).

    .. note::
       Padding is with zeros, not ``-inf`` as ``MaxPool2d(padding=1)`` would do: on a window
       at the border whose inputs are all negative, the output is 0, as in the official code.
    """
    _check_channels_stride(channels, stride)
    return nn.Sequential(nn.ZeroPad2d(1), nn.MaxPool2d(3, stride=stride))


@register_op("avg_pool_3x3")
def avg_pool_3x3(channels: int, stride: int) -> nn.Module:
    """3x3 average pool after explicit zero padding; the zeros count (official ``AvgPool``)."""
    _check_channels_stride(channels, stride)
    return nn.Sequential(nn.ZeroPad2d(1), nn.AvgPool2d(3, stride=stride))


@register_op("skip_connect")
def skip_connect(channels: int, stride: int) -> nn.Module:
    """Identity at stride 1; ``BN -> 1x1 conv stride 2`` at stride 2 (official ``Ident``)."""
    _check_channels_stride(channels, stride)
    if stride == 1:
        return nn.Identity()
    return nn.Sequential(
        nn.BatchNorm2d(channels, affine=True),
        nn.Conv2d(channels, channels, 1, stride=2, bias=False),
    )


CANDIDATE_OPS: tuple[str, ...] = (
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
)
"""The seven BayesNAS candidate ops, in the official order (the child-switch order)."""
