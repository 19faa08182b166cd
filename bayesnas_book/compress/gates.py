r"""Unit gates and the structured groups they define: a gate per neuron and per filter.

BayesNAS (Zhou et al., ICML 2019) notes that its prior, applied to *structured* groups, prunes
whole neurons and filters (its compression experiments). Here every prunable unit ``j`` of a layer gets a
scalar gate ``s_j`` (a switch, :mod:`bayesnas_book.space.switch`, one per unit) multiplying the
unit's output right after its affine part::

    y_j = s_j * a_j,    a = W x + b   (Linear),   a = conv(x, W) + b   (Conv2d),
                        a = BN(conv(x, W))        (Conv2d -> BatchNorm, the VGG case)

so ``s_j = 0`` makes the unit's output exactly 0 after the ReLU and max-pool that follow. The
**group** of unit ``j`` is what the gate switches off, and what physical pruning removes:

* its *incoming* weights: row ``j`` of the Linear weight, ``(in_features,)``, or filter ``j`` of
  the convolution, ``(C_in, k, k)``, with bias ``b_j`` (and BN scale and shift for VGG);
* its *outgoing* slice: column ``j`` of the next Linear, ``(out_features,)``, the input channel
  ``j`` of the next convolution, ``(C_out, k, k)``, or, when a Flatten lies between a
  convolution and a Linear, the ``H W`` columns that channel ``j`` feeds, ``(out_features, H W)``.

A *feature gate* sits on the input of a Linear (the 784 pixels of LeNet-300-100, the 800
flattened features of LeNet-5); its group is the outgoing slice only. This is how the published
"units per layer" (784-300-100, 20-50-800-500) count.

Each gate is its own ARD group ``s_j ~ N(0, gamma_j)`` and gets the switches' prior, update and
entropy rule (:mod:`bayesnas_book.compress.bayes_prune`). The curvature of the loss in the gates
comes from the three methods of :mod:`bayesnas_book.curvature`: the exact GGN and the
Monte-Carlo GGN work on any parameter, and this module registers the diagonal Gauss-Newton rule
of a gate with the fast recursion (:func:`bayesnas_book.curvature.recursion.register_gn_rule`)::

    d2L/ds_j^2 ~= sum over batch and positions of  a_j^2 H_y[j],       H_a = s^2 H_y

Layout: a gated network is a :class:`GatedNet`, an ``nn.Sequential`` of Linear, Conv2d,
BatchNorm, ReLU, pooling, Flatten, Dropout and :class:`UnitGate` modules, with its input shape.
:func:`gate_groups` reads the groups off it and checks the layout.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bayesnas_book.curvature.recursion import GNTape, register_gn_rule

__all__ = [
    "GateGroup",
    "GatedNet",
    "UnitGate",
    "gate_groups",
    "gate_modules",
    "kept_units",
    "trace_shapes",
    "unit_gate",
]

# modules a gated network may contain besides gates and affine layers; each acts per channel
PASS_THROUGH = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Identity)
AFFINE = (nn.Linear, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


# -- the gate ----------------------------------------------------------------------------------
def unit_gate(z: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """Gate each unit (dimension 1) of ``z``: ``y[:, j, ...] = s_j * z[:, j, ...]``.

    Args:
        z: ``(B, C)`` or ``(B, C, H, W)``.
        gates: ``s``, ``(C,)``.

    Returns:
        ``s * z``, the shape of ``z``.

    Raises:
        ValueError: if ``z`` has no dimension 1 of size ``C``.
    """
    if z.dim() < 2 or z.shape[1] != gates.shape[0]:
        raise ValueError(f"`z` must have {gates.shape[0]} units in dimension 1, got shape {tuple(z.shape)}")
    shape = (1, -1) + (1,) * (z.dim() - 2)  # broadcast (C,) over (B, C, ...)
    return z * gates.view(shape)


class UnitGate(nn.Module):
    """One learnable gate per unit, ``y[:, j] = s_j z[:, j]``, with a pruning mask.

    The gate in effect is ``value * mask``: a pruned unit (mask False) stays exactly 0 whatever
    the optimiser does to ``value``, and its gradient is 0.

    Args:
        num_units: ``C``, units (neurons or filters) gated, >= 1.
        init: the initial gate value (BayesNAS starts every switch at 1).

    Raises:
        ValueError: for ``num_units`` < 1.
    """

    def __init__(self, num_units: int, init: float = 1.0) -> None:
        super().__init__()
        if isinstance(num_units, bool) or not isinstance(num_units, int) or num_units < 1:
            raise ValueError(f"`num_units` must be an integer >= 1, got {num_units!r}")
        self.value = nn.Parameter(torch.full((num_units,), float(init)))  # s, (C,)
        self.register_buffer("mask", torch.ones(num_units, dtype=torch.bool))  # (C,)

    @property
    def num_units(self) -> int:
        """``C``."""
        return self.value.shape[0]

    def effective(self) -> torch.Tensor:
        """The gate in effect, ``value * mask``, ``(C,)``."""
        return self.value * self.mask

    @torch.no_grad()
    def prune(self, pruned: torch.Tensor) -> None:
        """Switch off the units where ``pruned`` (bool ``(C,)``) is True, for good."""
        self.mask &= ~pruned.to(self.mask.device)
        self.value.mul_(self.mask)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, C, ...) -> (B, C, ...)``."""
        return unit_gate(z, self.effective())

    def extra_repr(self) -> str:
        return f"num_units={self.num_units}, kept={int(self.mask.sum())}"


def _save_gate(module: UnitGate, tape: GNTape, inputs: tuple, output: Any) -> None:
    tape.save(module, z=inputs[0].detach())


def _gate_rule(module: UnitGate, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    z = tape.saved_for(module)["z"].to(H_out.dtype)  # (B, C, ...)
    dims = [d for d in range(z.dim()) if d != 1]
    # d2L/ds_j^2 ~= sum over batch and positions of z_j^2 H_y[j]   (dy_j / ds_j = z_j)
    tape.add_switch_curvature(module, torch.sum(z.square() * H_out, dim=dims, dtype=torch.float64))  # type: ignore[arg-type]
    s = module.effective().detach().to(H_out.dtype)
    return unit_gate(H_out, s.square())  # H_z = s^2 H_y


register_gn_rule(UnitGate, _gate_rule, _save_gate)


# -- the network ---------------------------------------------------------------------------------
class GatedNet(nn.Sequential):
    """A sequential classifier with unit gates, and the input shape it was built for.

    Args:
        layers: ``name -> module`` in order (Linear, Conv2d, BatchNorm, ReLU, pooling, Flatten,
            Dropout, :class:`UnitGate`).
        input_shape: ``(C, H, W)`` of one image.
        arch: the model's name, e.g. ``"lenet300"``.
    """

    def __init__(self, layers: OrderedDict[str, nn.Module], input_shape: tuple[int, int, int], arch: str) -> None:
        super().__init__(layers)
        self.input_shape = tuple(int(v) for v in input_shape)
        self.arch = arch


def gate_modules(model: nn.Module) -> list[tuple[str, UnitGate]]:
    """``(name, gate)`` for every :class:`UnitGate` of ``model``, in ``named_modules`` order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, UnitGate)]


def kept_units(model: nn.Module) -> dict[str, int]:
    """Units each gate keeps (gate in effect non-zero), ``{gate name: count}``."""
    return {n: int((g.effective() != 0).sum()) for n, g in gate_modules(model)}


@dataclass(frozen=True)
class GateGroup:
    """The structured group of one gate layer (one entry per unit).

    Attributes:
        gate: the gate's module name.
        num_units: ``C``.
        producer: the Linear / Conv2d whose units are gated, or ``None`` for a feature gate.
        norm: the BatchNorm between producer and gate, or ``None``.
        consumer: the next Linear / Conv2d, which reads the gated units.
        positions: consumer inputs per unit: 1, or ``H W`` across a Flatten.
        incoming_shape: one unit's incoming weights (``()`` for a feature gate).
        outgoing_shape: one unit's outgoing slice of the consumer's weight.
    """

    gate: str
    num_units: int
    producer: str | None
    norm: str | None
    consumer: str
    positions: int
    incoming_shape: tuple[int, ...]
    outgoing_shape: tuple[int, ...]

    @property
    def kind(self) -> str:
        """``"neuron"``, ``"filter"`` or ``"feature"``."""
        if self.producer is None:
            return "feature"
        return "filter" if len(self.incoming_shape) == 3 else "neuron"


def _check_net(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"`model` must be a GatedNet (an nn.Sequential of layers), got {type(model).__name__}")
    children = list(model.named_children())
    if not any(isinstance(m, UnitGate) for _, m in children):
        raise ValueError(
            f"`model` ({getattr(model, 'arch', type(model).__name__)}) has no prunable layer: it holds no UnitGate; "
            "build it with bayesnas_book.compress.build_model or put a UnitGate after a Linear / Conv2d"
        )
    allowed = AFFINE + NORMS + PASS_THROUGH + (UnitGate, nn.Flatten)
    for name, m in children:
        if not isinstance(m, allowed):
            raise ValueError(f"layer {name!r} ({type(m).__name__}) is not supported in a gated network")
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            raise ValueError(f"layer {name!r}: grouped convolutions (groups={m.groups}) cannot be pruned by filter")
    return children


def trace_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Output shape (without the batch) of every child of a sequential ``model`` on one zero image."""
    shapes: dict[str, tuple[int, ...]] = {}
    x = torch.zeros(1, *input_shape, dtype=next(model.parameters()).dtype, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for name, m in model.named_children():
            x = m(x)
            shapes[name] = tuple(x.shape[1:])
    model.train(was_training)
    return shapes


def gate_groups(model: GatedNet) -> list[GateGroup]:
    """The group of every gate layer of ``model`` (see the module docstring).

    Args:
        model: a :class:`GatedNet` (``input_shape`` attribute).

    Returns:
        One :class:`GateGroup` per :class:`UnitGate`, in layer order.

    Raises:
        ValueError: for a model with no prunable layer (no gate), an unsupported layer, a gate
            that follows neither a Linear / Conv2d (optionally through a BatchNorm) nor a Flatten
            nor the input, a feature gate not directly followed by a Linear / Conv2d, or a gate
            with no Linear / Conv2d after it.
    """
    children = _check_net(model)
    shapes = trace_shapes(model, model.input_shape)
    groups = []
    for i, (name, gate) in enumerate(children):
        if not isinstance(gate, UnitGate):
            continue
        producer = norm = None
        prev = children[i - 1][1] if i > 0 else None
        if isinstance(prev, NORMS) and i >= 2 and isinstance(children[i - 2][1], AFFINE):
            norm, producer = children[i - 1][0], children[i - 2][0]
        elif isinstance(prev, AFFINE):
            producer = children[i - 1][0]
        elif not (prev is None or isinstance(prev, nn.Flatten)):
            raise ValueError(
                f"gate {name!r} must follow a Linear or Conv2d (optionally through a BatchNorm), a Flatten or the "
                f"input; it follows {type(prev).__name__}"
            )
        if producer is None and not (i + 1 < len(children) and isinstance(children[i + 1][1], AFFINE)):
            raise ValueError(f"feature gate {name!r} must be followed directly by a Linear or Conv2d")
        consumer, positions = None, 1
        for j in range(i + 1, len(children)):
            cname, c = children[j]
            if isinstance(c, nn.Flatten) and len(shapes[children[j - 1][0]]) == 3:
                _, H, W = shapes[children[j - 1][0]]
                positions *= H * W  # channel j feeds H W consecutive features
            if isinstance(c, AFFINE):
                consumer = cname
                break
        if consumer is None:
            raise ValueError(f"gate {name!r} has no Linear or Conv2d after it: the gated units feed nothing prunable")
        cons = dict(children)[consumer]
        if isinstance(cons, nn.Linear):
            outgoing: tuple[int, ...] = (cons.out_features, positions) if positions > 1 else (cons.out_features,)
        else:
            outgoing = (cons.out_channels, *cons.kernel_size)
        incoming: tuple[int, ...] = tuple(dict(children)[producer].weight.shape[1:]) if producer else ()
        groups.append(GateGroup(name, gate.num_units, producer, norm, consumer, positions, incoming, outgoing))
    return groups
