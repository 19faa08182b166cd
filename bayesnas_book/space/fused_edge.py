r"""Batched evaluation of an edge's convolution ops: the same edge in fewer, larger kernels.

A :class:`~bayesnas_book.space.edge.SwitchedEdge` runs its seven ops one after another, as the
official code does: the four convolution ops alone are some 30 small layers per edge, each one
kernel launch forward and about two backward. On a GPU at the paper's batch of 18, such small
launches rather than arithmetic may bound the step (issue 8; the GPU check measures it). :class:`FusedSwitchedEdge` holds exactly
the same modules and parameters (state dicts are interchangeable) but evaluates the convolution
ops of the edge together, channel-stacked, ``P`` of them (``P <= 4``)::

    a   = ReLU(BN_1..P(u repeated P times))            one BN over (B, P C, H, W)
    v   = [dw5 over the sep ops | dil3 | dil5](a)      sep3's 3x3 kernel zero-embedded in 5x5:
                                                       one depthwise conv for both sep ops
    v   = grouped 1x1 conv (groups P)(v)               the P pointwise convs in one
    sep = grouped 1x1 (dw5 (ReLU (BN (v_sep))))        the sep ops' second block, likewise
    y   = sum_p s_p z_p + sum over the other ops       z = [sep | v_dil], (B, P, C, H', W')

Every stacked op computes what the separate ones do (a per-channel BN over channel-stacked
copies is the separate BNs; a zero-embedded kernel adds exact zeros), so outputs, gradients and
BN running statistics agree with the plain edge to rounding (tests/test_fused_edge.py). Pools
and the skip run as usual.

The fast curvature sweep (:mod:`bayesnas_book.curvature.recursion`) follows the stacked forward
with the same per-layer rules (BN affine view, ReLU mask, ``conv^T`` with ``W^2``), so the
switch curvatures equal the plain edge's too. When the BNs of the stacked ops are not in one
common mode (mixed train / eval, or ``momentum=None``) the edge falls back to the plain forward.

Turned on by ``search.fused_edges`` (``SupernetSpec.fused_edges``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bayesnas_book.curvature.recursion import (
    active_tape,
    batch_variance,
    batchnorm_gn_scale,
    batchnorm_uses_batch_stats,
    conv2d_gn_backward,
    gn_backward,
    switched_edge_branches_gn_backward,
)
from bayesnas_book.space.edge import SwitchedEdge
from bayesnas_book.space.ops import CANDIDATE_OPS

__all__ = ["FUSED_OPS", "FusedSwitchedEdge", "batch_norm_stacked"]

FUSED_OPS: dict[str, str] = {
    "sep_conv_3x3": "sep",
    "sep_conv_5x5": "sep",
    "dil_conv_3x3": "dil",
    "dil_conv_5x5": "dil",
}
"""The ops evaluated stacked, and their kind (separable or dilated)."""

_SEP_KERNEL = 5  # the stacked depthwise kernel: 3x3 kernels are zero-embedded in 5x5


def _bn_common_mode(bns: Sequence[nn.modules.batchnorm._BatchNorm]) -> bool:
    """Whether one ``F.batch_norm`` call can stand for all of ``bns`` (same mode and constants)."""
    first = bns[0]
    if first.momentum is None or not first.affine:
        return False
    return all(
        bn.training == first.training
        and bn.track_running_stats == first.track_running_stats
        and (bn.running_mean is None) == (first.running_mean is None)
        and bn.eps == first.eps
        and bn.momentum == first.momentum
        and bn.affine
        for bn in bns
    )


def batch_norm_stacked(x: torch.Tensor, bns: Sequence[nn.modules.batchnorm._BatchNorm]) -> torch.Tensor:
    """``x`` whose channel block ``k`` goes through ``bns[k]``, in one ``F.batch_norm`` call.

    Same outputs and running-statistic updates as calling each BN on its block (the BNs must be
    in one common mode: see :func:`_bn_common_mode`).

    Args:
        x: ``(B, n C, H, W)`` for ``n = len(bns)`` BNs of ``C`` channels each.

    Returns:
        ``(B, n C, H, W)``.
    """
    first = bns[0]
    batch_stats = batchnorm_uses_batch_stats(first)
    # _BatchNorm.forward passes the buffers in eval mode, or in train mode when it tracks them
    use_buffers = first.running_mean is not None and (not first.training or first.track_running_stats)
    running_mean = torch.cat([bn.running_mean for bn in bns]) if use_buffers else None
    running_var = torch.cat([bn.running_var for bn in bns]) if use_buffers else None
    weight = torch.cat([bn.weight for bn in bns])
    bias = torch.cat([bn.bias for bn in bns])
    out = F.batch_norm(x, running_mean, running_var, weight, bias, batch_stats, first.momentum, first.eps)
    if use_buffers and first.training:
        # F.batch_norm updated the concatenated copies; write them back to each BN
        channels = first.num_features
        with torch.no_grad():
            torch._foreach_copy_([bn.running_mean for bn in bns], list(running_mean.split(channels)))
            torch._foreach_copy_([bn.running_var for bn in bns], list(running_var.split(channels)))
            torch._foreach_add_([bn.num_batches_tracked for bn in bns], 1)
    return out


def _bn_curvature_scale(
    bns: Sequence[nn.modules.batchnorm._BatchNorm], batch_var: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """``w^2 / (var + eps)`` of the stacked BNs, ``(n C,)``: the BN rule's affine view.

    ``batch_var`` is the batch variance of the stacked input ``(n C,)`` (train mode), or ``None``
    to use each BN's running variance (eval mode).
    """
    var = batch_var if batch_var is not None else torch.cat([bn.running_var for bn in bns])
    return batchnorm_gn_scale(var, bns[0].eps, torch.cat([bn.weight for bn in bns]), dtype)


def _embed(weight: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad a ``(C, 1, k, k)`` kernel to ``(C, 1, size, size)``, centred (differentiable)."""
    pad = (size - weight.shape[-1]) // 2
    return F.pad(weight, [pad] * 4) if pad else weight


class FusedSwitchedEdge(SwitchedEdge):
    """A :class:`SwitchedEdge` that evaluates its convolution ops channel-stacked.

    Same constructor, modules, parameters and outputs as :class:`SwitchedEdge` (module docstring).

    Shapes:
        ``forward(x)``: ``(B, C, H, W)`` -> ``(B, C, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, channels: int, stride: int = 1, op_names: Sequence[str] = CANDIDATE_OPS) -> None:
        super().__init__(channels, stride, op_names)
        self.sep_names = tuple(n for n in self.op_names if FUSED_OPS.get(n) == "sep")
        self.dil_names = tuple(n for n in self.op_names if FUSED_OPS.get(n) == "dil")
        self.stacked_names = self.sep_names + self.dil_names  # channel-block order of the stack
        self.other_names = tuple(n for n in self.op_names if n not in FUSED_OPS)

    # -- the blocks of the stacked ops ---------------------------------------------------------

    def _first_blocks(self) -> list[nn.Sequential]:
        """``BN, ReLU, pad, conv, 1x1`` of every stacked op (a sep op's first block), stack order."""
        return [self.ops[n][0] for n in self.sep_names] + [self.ops[n] for n in self.dil_names]

    def _second_blocks(self) -> list[nn.Sequential]:
        """The sep ops' second blocks ``BN, ReLU, pad, dw, 1x1`` (stride 1)."""
        return [self.ops[n][1] for n in self.sep_names]

    def _stackable(self) -> bool:
        if len(self.stacked_names) < 2:
            return False
        return _bn_common_mode([b[0] for b in self._first_blocks()]) and (
            not self.sep_names or _bn_common_mode([b[0] for b in self._second_blocks()])
        )

    # -- forward -------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the edge: ``(B, C, H, W)`` -> ``(B, C, ceil(H / stride), ceil(W / stride))``."""
        u = self.parent(x)
        if not self._stackable():
            return self._sum_branches(u, self.op_names)
        y = self._stacked_forward(u)
        rest = self._sum_branches(u, self.other_names)
        return y if rest is None else y + rest

    def _stacked_forward(self, u: torch.Tensor) -> torch.Tensor:
        C, P, n_sep = self.channels, len(self.stacked_names), len(self.sep_names)
        first = self._first_blocks()
        a = torch.relu(batch_norm_stacked(u.repeat(1, P, 1, 1), [b[0] for b in first]))  # (B, P C, H, W)
        parts = []
        if n_sep:
            kernel = torch.cat([_embed(b[3].weight, _SEP_KERNEL) for b in first[:n_sep]])  # (n_sep C, 1, 5, 5)
            parts.append(F.conv2d(a[:, : n_sep * C], kernel, None, self.stride, _SEP_KERNEL // 2, 1, n_sep * C))
        for k, block in enumerate(first[n_sep:], start=n_sep):
            conv = block[3]
            parts.append(F.conv2d(a[:, k * C : (k + 1) * C], conv.weight, None, self.stride,
                                  block[2].padding[0], conv.dilation, 1))
        v = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]  # (B, P C, H', W')
        v = F.conv2d(v, torch.cat([b[4].weight for b in first]), groups=P)  # the P 1x1 convs
        b_act = None
        if n_sep:
            second = self._second_blocks()
            b_act = torch.relu(batch_norm_stacked(v[:, : n_sep * C], [b[0] for b in second]))
            kernel = torch.cat([_embed(b[3].weight, _SEP_KERNEL) for b in second])
            sep = F.conv2d(b_act, kernel, None, 1, _SEP_KERNEL // 2, 1, n_sep * C)
            sep = F.conv2d(sep, torch.cat([b[4].weight for b in second]), groups=n_sep)
            z = torch.cat([sep, v[:, n_sep * C :]], dim=1) if n_sep < P else sep
        else:
            z = v
        batch, _, height, width = z.shape
        s = torch.stack([self.switches[n].value for n in self.stacked_names]).to(z.dtype)  # (P,)
        y = (z.reshape(batch, P, C, height, width) * s.view(1, P, 1, 1, 1)).sum(1)
        tape = active_tape()
        if tape is not None:
            self._save_for_sweep(tape, u, a, v, b_act, z)
        return y

    def _save_for_sweep(self, tape: Any, u: torch.Tensor, a: torch.Tensor, v: torch.Tensor,
                        b_act: torch.Tensor | None, z: torch.Tensor) -> None:
        n_sep, C = len(self.sep_names), self.channels
        first_bn = self._first_blocks()[0][0]

        tape.save(
            self,
            stacked=True,
            u_shape=tuple(u.shape),
            v_shape=tuple(v.shape),
            mask_a=a.detach() > 0,
            mask_b=None if b_act is None else b_act.detach() > 0,
            # the P stacked copies of u share one batch variance
            var_a=batch_variance(u).repeat(len(self.stacked_names)) if batchnorm_uses_batch_stats(first_bn) else None,
            var_b=(batch_variance(v[:, : n_sep * C])
                   if n_sep and batchnorm_uses_batch_stats(self._second_blocks()[0][0]) else None),
            z=z.detach(),
        )

    # -- the curvature sweep -------------------------------------------------------------------

    def gn_backward(self, H_out: torch.Tensor) -> torch.Tensor:
        """Diagonal GN curvature at the edge input from ``H_out`` ``(B, C, H', W')``.

        Collects every switch's curvature on the way (see the module docstring).
        """
        tape = active_tape()
        if tape is None or not tape.has_saved(self):  # the plain forward ran
            return gn_backward(self.parent, switched_edge_branches_gn_backward(self, H_out, self.op_names))
        saved = tape.saved_for(self)
        H_u = self._stacked_gn_backward(H_out, saved, tape)
        rest = switched_edge_branches_gn_backward(self, H_out, self.other_names)
        return gn_backward(self.parent, H_u if rest is None else H_u + rest)

    def _stacked_gn_backward(self, H_out: torch.Tensor, saved: dict[str, Any], tape: Any) -> torch.Tensor:
        C, P, n_sep = self.channels, len(self.stacked_names), len(self.sep_names)
        batch, _, height, width = H_out.shape
        dtype = H_out.dtype
        # the child switches y = sum_p s_p z_p: d2L/ds_p2 ~= sum z_p^2 H_y, H_zp = s_p^2 H_y
        z = saved["z"].to(dtype).reshape(batch, P, C, height, width)
        curvature = (z.square() * H_out.unsqueeze(1)).sum(dim=(0, 2, 3, 4), dtype=torch.float64)  # (P,)
        for k, name in enumerate(self.stacked_names):
            tape.add_switch_curvature(self.switches[name], curvature[k])
        s = torch.stack([self.switches[n].value.detach() for n in self.stacked_names]).to(dtype)
        H_z = (H_out.unsqueeze(1) * s.square().view(1, P, 1, 1, 1)).reshape(batch, P * C, height, width)
        first = self._first_blocks()
        H_v = H_z
        if n_sep:  # the sep ops' second block, in reverse
            second = self._second_blocks()
            sep_shape = (batch, n_sep * C, height, width)
            H = conv2d_gn_backward(H_z[:, : n_sep * C], torch.cat([b[4].weight for b in second]), 1, 0, 1, n_sep, sep_shape)
            kernel = torch.cat([_embed(b[3].weight, _SEP_KERNEL) for b in second])
            H = conv2d_gn_backward(H, kernel, 1, _SEP_KERNEL // 2, 1, n_sep * C, sep_shape)
            H = H * saved["mask_b"] * _bn_curvature_scale([b[0] for b in second], saved["var_b"], dtype).view(1, -1, 1, 1)
            H_v = torch.cat([H, H_z[:, n_sep * C :]], dim=1) if n_sep < P else H
        v_shape = saved["v_shape"]
        H_v = conv2d_gn_backward(H_v, torch.cat([b[4].weight for b in first]), 1, 0, 1, P, v_shape)
        u_shape = saved["u_shape"]
        in_shape = (u_shape[0], C, *u_shape[2:])
        parts = []
        if n_sep:
            kernel = torch.cat([_embed(b[3].weight, _SEP_KERNEL) for b in first[:n_sep]])
            parts.append(conv2d_gn_backward(H_v[:, : n_sep * C], kernel, self.stride, _SEP_KERNEL // 2, 1, n_sep * C,
                                            (u_shape[0], n_sep * C, *u_shape[2:])))
        for k, block in enumerate(first[n_sep:], start=n_sep):
            conv = block[3]
            parts.append(conv2d_gn_backward(H_v[:, k * C : (k + 1) * C], conv.weight, self.stride,
                                            block[2].padding[0], conv.dilation, 1, in_shape))
        H_a = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]  # (B, P C, H, W)
        H_a = H_a * saved["mask_a"] * _bn_curvature_scale([b[0] for b in first], saved["var_a"], dtype).view(1, -1, 1, 1)
        return H_a.reshape(u_shape[0], P, C, *u_shape[2:]).sum(1)  # the P copies of u meet: add
