"""The edge ops of tree cells, in PyramidNet's ``BN -> ReLU -> weight`` order.

Path-level network transformation (Cai et al., ICML 2018, Section 4 and Figure 4) builds its
tree cells from these layers, each ``(B, C, H, W) -> (B, C, ceil(H / stride), ceil(W / stride))``:

=====================  ===================================================================
name                   layers
=====================  ===================================================================
``conv_1x1``           BN -> ReLU -> 1x1 conv
``group_conv_3x3``     BN -> ReLU -> 3x3 conv in :data:`GROUPS` groups (the cell's root edges)
``sep_conv_kxk``       BN -> ReLU -> depthwise kxk conv -> 1x1 conv, ``k`` in 3, 5, 7 (a single
                       separable block, unlike the doubled DARTS op of :mod:`.ops`)
``dil_sep_conv_3x3``   BN -> ReLU -> depthwise 3x3 conv, dilation 2 -> 1x1 conv
``max_pool_3x3``       3x3 max pool, padding 1
``avg_pool_3x3``       3x3 average pool, padding 1, border windows averaged over the pixels inside
``identity``           the input itself; at stride 2 every other pixel (no parameters)
=====================  ===================================================================

The registry :data:`TREE_OPS` is separate from :data:`bayesnas_book.space.ops.OPS`: the two op
sets differ in layer order and in the separable block, and the 8-edge space's tests run over
every op of ``OPS``.
"""

from __future__ import annotations

from torch import nn

from bayesnas_book.space.ops import OpRegistry

__all__ = ["GROUPS", "PROXYLESS_OPS", "TREE_OPS", "TREECELL_A_OPS", "build_tree_op"]

#: Groups of the root edges' 3x3 convolution (the backbone's widths are multiples of it).
GROUPS = 2

TREE_OPS = OpRegistry()
"""``TREE_OPS[name](channels, stride) -> nn.Module``."""


def _check(channels: int, stride: int, name: str) -> None:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels <= 0:
        raise ValueError(f"op {name}: `channels` must be a positive integer, got {channels!r}")
    if isinstance(stride, bool) or stride not in (1, 2):
        raise ValueError(f"op {name}: `stride` must be 1 or 2, got {stride!r}")


def _bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=False)]


def _conv_1x1(channels: int, stride: int) -> nn.Module:
    _check(channels, stride, "conv_1x1")
    return nn.Sequential(
        *_bn_relu(channels), nn.Conv2d(channels, channels, 1, stride=stride, bias=False)
    )


def _group_conv_3x3(channels: int, stride: int) -> nn.Module:
    _check(channels, stride, "group_conv_3x3")
    if channels % GROUPS:
        raise ValueError(
            f"op group_conv_3x3: {channels} channels do not split into {GROUPS} groups; the backbone's "
            f"widths must be multiples of {GROUPS} (choose alpha / start channels that give even widths)"
        )
    conv = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=GROUPS, bias=False)
    return nn.Sequential(*_bn_relu(channels), conv)


def _sep(kernel_size: int, dilation: int = 1):
    name = (
        f"dil_sep_conv_{kernel_size}x{kernel_size}"
        if dilation > 1
        else f"sep_conv_{kernel_size}x{kernel_size}"
    )

    def build(channels: int, stride: int) -> nn.Module:
        _check(channels, stride, name)
        padding = dilation * (kernel_size - 1) // 2
        return nn.Sequential(
            *_bn_relu(channels),
            nn.Conv2d(
                channels,
                channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=channels,
                bias=False,
            ),
            nn.Conv2d(channels, channels, 1, bias=False),
        )

    return name, build


def _max_pool(channels: int, stride: int) -> nn.Module:
    _check(channels, stride, "max_pool_3x3")
    return nn.MaxPool2d(3, stride=stride, padding=1)


def _avg_pool(channels: int, stride: int) -> nn.Module:
    _check(channels, stride, "avg_pool_3x3")
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


def _identity(channels: int, stride: int) -> nn.Module:
    _check(channels, stride, "identity")
    # at stride 2 a 1x1 pool keeps every other pixel: the op stays parameter-free on a strided root
    # edge
    return nn.Identity() if stride == 1 else nn.AvgPool2d(1, stride=2)


TREE_OPS.register("conv_1x1", _conv_1x1)
TREE_OPS.register("group_conv_3x3", _group_conv_3x3)
for _k in (3, 5, 7):
    TREE_OPS.register(*_sep(_k))
TREE_OPS.register(*_sep(3, dilation=2))
TREE_OPS.register("max_pool_3x3", _max_pool)
TREE_OPS.register("avg_pool_3x3", _avg_pool)
TREE_OPS.register("identity", _identity)
del _k

#: The op vocabulary of TreeCell-A: every op one of its 15 edges carries.
TREECELL_A_OPS: tuple[str, ...] = (
    "group_conv_3x3",
    "conv_1x1",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
    "max_pool_3x3",
    "avg_pool_3x3",
)


# : The candidate ops of ProxylessNAS's CIFAR-10 tree cells (Cai, Zhu and Han, ICLR 2019, Section
# 4.1 and
#: Appendix): the child-switch columns 1..K of every edge of the tree search space.
PROXYLESS_OPS: tuple[str, ...] = (
    "identity",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
    "dil_sep_conv_3x3",
    "max_pool_3x3",
    "avg_pool_3x3",
)


def build_tree_op(name: str, channels: int, stride: int = 1) -> nn.Module:
    """Build tree op ``name`` for ``channels`` channels and ``stride`` (KeyError lists the names)."""
    return TREE_OPS[name](channels, stride)
