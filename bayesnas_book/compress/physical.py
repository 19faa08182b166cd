"""Physical pruning: remove the pruned units and fold the gates into the weights.

:func:`physically_prune` turns a :class:`~bayesnas_book.compress.gates.GatedNet` into a plain
``nn.Sequential`` without gates whose outputs equal the gated network's (to float rounding),
and smaller: for every gate layer (:func:`~bayesnas_book.compress.gates.gate_groups`) a unit
``j`` with ``s_j = 0`` loses its group, and a kept unit's gate is folded into its layer::

    neuron / filter j kept:   W_j <- s_j W_j,  b_j <- s_j b_j     (or the BatchNorm's scale and
                              shift when a BatchNorm sits between the layer and the gate)
    feature j kept:           column j of the next layer W[:, j] <- s_j W[:, j]; the pruned
                              features are dropped by a :class:`SelectFeatures` (an index, free)
    unit j pruned:            row j (filter j) of its layer and column j (input channel j, or
                              the H W columns it feeds across a Flatten) of the next layer removed

Exactness: a pruned unit's pre-activation is exactly 0, and so is everything computed from it
by the ReLU and max-pool before the next layer, whose dropped columns therefore multiplied zeros.

:func:`size_report` counts units per layer, parameters and multiply-accumulates (the project's
counting, :mod:`bayesnas_book.models.counting`) before and after.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from bayesnas_book.compress.gates import (
    NORMS,
    GatedNet,
    UnitGate,
    gate_groups,
    gate_modules,
    trace_shapes,
)
from bayesnas_book.models.counting import count_macs, count_parameters

__all__ = ["NetworkSize", "SelectFeatures", "dense_copy", "network_size", "physically_prune", "size_report", "units_text"]


class SelectFeatures(nn.Module):
    """Keep the features ``index`` of dimension 1: ``(B, F) -> (B, len(index))``; what a pruned feature gate leaves.

    Args:
        index: kept positions, int64 ``(F',)``.
    """

    def __init__(self, index: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("index", index.clone().long())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, F, ...) -> (B, F', ...)``."""
        return x.index_select(1, self.index)

    def extra_repr(self) -> str:
        return f"kept={len(self.index)}"


def _index(keep: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    return torch.arange(n, device=device) if keep is None else keep


@torch.no_grad()
def physically_prune(model: GatedNet) -> nn.Sequential:
    """A plain network without the pruned units, equal in outputs to ``model``.

    Args:
        model: a gated network; gates in effect ``value * mask``.

    Returns:
        An ``nn.Sequential`` with the same layer names (gates removed), new parameters, on the
        model's device and dtype, in the model's train / eval mode. It has an ``input_shape``
        attribute and ``units`` (``{gate name: kept units}``).

    Raises:
        ValueError: for a model with no prunable layer or an unsupported layout (see
            :func:`~bayesnas_book.compress.gates.gate_groups`), or a gate layer with every unit
            pruned (the network would be constant).
    """
    groups = gate_groups(model)
    children = dict(model.named_children())
    shapes = trace_shapes(model, model.input_shape)
    by_producer = {g.producer: g for g in groups if g.producer is not None}
    by_norm = {g.norm: g for g in groups if g.norm is not None}
    units: dict[str, int] = {}
    for g in groups:
        s = children[g.gate].effective()
        units[g.gate] = int((s != 0).sum())
        if units[g.gate] == 0:
            raise ValueError(
                f"every unit of gate layer {g.gate!r} is pruned: the network's output would not depend on its input; "
                "lower the penalty strength (compress.lambda_gate) or the pruning threshold"
            )
    device = next(model.parameters()).device
    keep: torch.Tensor | None = None  # kept indices of the current activation's dimension 1
    col_scale: torch.Tensor | None = None  # feature-gate values to fold into the next layer's columns
    out: OrderedDict[str, nn.Module] = OrderedDict()
    prev_name = None
    for name, m in model.named_children():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            n_out = m.out_features if isinstance(m, nn.Linear) else m.out_channels
            n_in = m.in_features if isinstance(m, nn.Linear) else m.in_channels
            in_idx = _index(keep, n_in, device)
            group = by_producer.get(name)
            s = children[group.gate].effective().detach() if group is not None else None
            out_idx = torch.nonzero(s != 0).flatten() if s is not None else torch.arange(n_out, device=device)
            W = m.weight[out_idx][:, in_idx].clone()  # (out', in', ...)
            b = m.bias[out_idx].clone() if m.bias is not None else None
            if col_scale is not None:
                W *= col_scale.view((1, -1) + (1,) * (W.dim() - 2))  # W[:, j] <- s_j W[:, j]
            if s is not None and group is not None and group.norm is None:
                scale = s[out_idx].view((-1,) + (1,) * (W.dim() - 1))
                W *= scale  # W_j <- s_j W_j
                if b is not None:
                    b *= s[out_idx]  # b_j <- s_j b_j
            if isinstance(m, nn.Linear):
                new: nn.Module = nn.Linear(W.shape[1], W.shape[0], bias=b is not None)
            else:
                new = nn.Conv2d(W.shape[1], W.shape[0], m.kernel_size, m.stride, m.padding, m.dilation,
                                bias=b is not None, padding_mode=m.padding_mode)
            new = new.to(device=W.device, dtype=W.dtype)
            new.weight.copy_(W)
            if b is not None:
                new.bias.copy_(b)
            out[name] = new
            keep, col_scale = (out_idx if s is not None else None), None
        elif isinstance(m, NORMS):
            n = m.num_features
            idx = _index(keep, n, device)
            new = copy.deepcopy(m)
            new.num_features = len(idx)
            for attr in ("weight", "bias"):
                p = getattr(m, attr)
                if p is not None:
                    setattr(new, attr, nn.Parameter(p[idx].clone()))
            for attr in ("running_mean", "running_var"):
                buf = getattr(m, attr)
                if buf is not None:
                    setattr(new, attr, buf[idx].clone())
            group = by_norm.get(name)
            if group is not None:
                if not m.affine:
                    raise ValueError(f"gate {group.gate!r} follows a BatchNorm without affine parameters; cannot fold it")
                s = children[group.gate].effective().detach()[idx]
                new.weight.mul_(s)  # s * BN(x) = BN with scale s w and shift s b
                new.bias.mul_(s)
            out[name] = new
        elif isinstance(m, UnitGate):
            if by_producer.get(prev_name) is None and by_norm.get(prev_name) is None:  # a feature gate
                s = m.effective().detach()
                idx = _index(keep, m.num_units, device)
                alive = torch.nonzero(s[idx] != 0).flatten()  # positions in the current activation
                out[name] = SelectFeatures(alive)  # pruned features are not read at all
                keep = idx[alive]
                col_scale = s[keep]
                units[name] = len(keep)  # features read: gate on and their channel kept
        elif isinstance(m, nn.Flatten):
            shape = shapes[prev_name] if prev_name is not None else model.input_shape
            if keep is not None and len(shape) == 3:
                positions = shape[1] * shape[2]
                # channel c feeds features c * H W .. (c + 1) * H W - 1
                keep = (keep[:, None] * positions + torch.arange(positions, device=device)[None, :]).reshape(-1)
                if col_scale is not None:
                    col_scale = col_scale.repeat_interleave(positions)
            out[name] = copy.deepcopy(m)
        else:
            out[name] = copy.deepcopy(m)
        prev_name = name
    plain = nn.Sequential(out)
    plain.train(model.training)
    plain.input_shape = model.input_shape  # type: ignore[assignment]
    plain.units = units  # type: ignore[assignment]
    return plain


@torch.no_grad()
def dense_copy(model: GatedNet) -> GatedNet:
    """A copy of ``model`` with every gate at 1 and nothing pruned: the uncompressed network."""
    dense = copy.deepcopy(model)
    for _, gate in gate_modules(dense):
        gate.value.fill_(1.0)
        gate.mask.fill_(True)
    return dense


@dataclass(frozen=True)
class NetworkSize:
    """Size and cost of a network.

    Attributes:
        units: kept units per gate layer, ``{gate name: count}``.
        params: parameters (every weight, bias and BatchNorm affine entry).
        macs: multiply-accumulates of one image (conv and linear layers).
    """

    units: dict[str, int]
    params: int
    macs: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def network_size(plain: nn.Module, input_shape: tuple[int, ...]) -> NetworkSize:
    """:class:`NetworkSize` of a network from :func:`physically_prune`."""
    return NetworkSize(dict(getattr(plain, "units", {})), count_parameters(plain), count_macs(copy.deepcopy(plain).float(), tuple(input_shape)))


def size_report(model: GatedNet) -> dict[str, NetworkSize]:
    """``{"before": ..., "after": ...}``: the uncompressed and the pruned network's sizes."""
    before = physically_prune(dense_copy(model))
    after = physically_prune(model)
    return {"before": network_size(before, model.input_shape), "after": network_size(after, model.input_shape)}


def units_text(units: dict[str, int]) -> str:
    """``"784-300-100"``: kept units per gate layer, in layer order."""
    return "-".join(str(v) for v in units.values())
