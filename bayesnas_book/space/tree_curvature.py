r"""The fast curvature sweep on the tree (proxyless) space: Gauss-Newton rules for its modules.

:mod:`bayesnas_book.curvature.recursion` propagates the diagonal ``H`` of the Gauss-Newton
curvature of the loss in every activation from the logits back to the image, one layer at a time
(``H_x[i] = sum_j J_ji^2 H_y[j]``), and collects every switch's curvature on the way. This
module registers (:func:`~bayesnas_book.curvature.recursion.register_gn_rule`) the rules of the
tree space's composite modules when imported (:mod:`~bayesnas_book.space.tree_supernet` imports
it), after which
``switch_curvature(tree_supernet, batches, method="recursion")`` reaches every switch:

=====================  ======================================================================
module                 ``H_in`` from ``H_out``
=====================  ======================================================================
``TreeSupernet``       the backbone's sweep (the forward is the backbone's)
``PyramidNet``         head, units in reverse, stem
``PyramidUnit``        ``y = BN(out(cell(in(x)))) + pad(shortcut(x))``: the branch gets all of
                       ``H``, the shortcut its first ``f`` channels (the appended zero channels
                       do not depend on ``x``); the two add at ``x``
``TreeCell``           the node formula in reverse: an add of ``n`` branches hands each
                       ``H / n^2``, a concat each its channel slice; a root branch
                       ``(BN(T(e)) + e) / 2`` hands ``H / 4`` to the BN and to the skip; the
                       copies of a node's input add; pruned edges and dead subtrees drop out
``TreeSwitchedEdge``   the :class:`~bayesnas_book.space.edge.SwitchedEdge` rule (parent and
                       child switches, the ops' curvatures add at ``sbar x``), with the tree's
                       average pool below
``_FixedEdge``         a derived edge: its ops' curvatures add
avg_pool_3x3           ``AvgPool2d(count_include_pad=False)``: a border window holding
                       ``n_w`` pixels divides by ``n_w``, so
                       ``H_in[i] = sum_{w containing i} H_out[w] / n_w^2``
=====================  ======================================================================

Every sum where paths meet keeps ``sum_i J_i^2`` of a curvature whose exact value has
``(sum_i J_i)^2``: the cross terms between branches, ops of one edge, a root branch's BN and
skip, a unit's branch and shortcut are dropped, as are those between the positions a convolution
or pool mixes (:mod:`~bayesnas_book.curvature.recursion`). Where each switch reaches the logits
along one path of scalar maps the recursion equals the exact GGN; on the supernet it is an
approximation, measured in chapter 13 and ``tests/test_tree_curvature.py``.

**Memory modes.** The tree supernet has no path-sampling (binarised) mode: every op of every edge
runs in every forward. Its ``checkpoint`` mode recomputes each unit in the backward only while
autograd records; the curvature API's captured forward runs without autograd, so the sweep and
its curvatures are the same with and without ``checkpoint``. (A capture with gradients on and
``checkpoint=True`` must not call ``.backward()`` inside the ``with`` block: the recomputed
forward would record each unit twice, which the tape refuses.)

.. note::
   The rules live in this module, registered on import, rather than as ``gn_backward`` methods
   spread over the tree modules: one place holds the curvature of the tree space.
   :mod:`bayesnas_book.space.tree_supernet` imports it, so every tree supernet has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bayesnas_book.curvature.recursion import GNTape, active_tape, gn_backward, register_gn_rule
from bayesnas_book.models.pyramidnet import PyramidNet, PyramidUnit
from bayesnas_book.space.tree_cell import TreeCell, TreeSwitchedEdge, _FixedEdge, split_widths
from bayesnas_book.space.tree_supernet import TreeSupernet

__all__ = ["inside_avg_pool_gn_backward", "tree_op_gn_backward"]


# --------------------------------------------------------------------------------------------
# the border-aware average pool and the edges
# --------------------------------------------------------------------------------------------


def _counts_padding(pool: nn.AvgPool2d) -> bool:
    padding = pool.padding if isinstance(pool.padding, tuple) else (pool.padding,)
    return pool.count_include_pad or pool.divisor_override is not None or not any(padding)


def inside_avg_pool_gn_backward(
    pool: nn.AvgPool2d, H_out: torch.Tensor, in_shape: Sequence[int]
) -> torch.Tensor:
    """The rule of a zero-padded average pool that divides each window by the pixels inside.

    Args:
        pool: ``nn.AvgPool2d(k, s, p, count_include_pad=False)``, integer ``k, s, p``.
        H_out: ``(B, C, H', W')``.
        in_shape: the pool input's shape ``(B, C, H, W)``.

    Returns:
        ``(B, C, H, W)``: ``H_in[i] = sum over the windows w containing i of H_out[w] / n_w^2``.

    Raises:
        RuntimeError: for ``ceil_mode=True`` or non-square settings.
    """
    k, s, p = pool.kernel_size, pool.stride, pool.padding
    if pool.ceil_mode or not all(isinstance(v, int) for v in (k, s, p)):
        raise RuntimeError(
            "the tree space's average-pool rule supports integer kernel, stride and padding "
            f"without ceil_mode, got kernel {k!r}, stride {s!r}, padding {p!r}, "
            f"ceil_mode {pool.ceil_mode}"
        )
    ones = H_out.new_ones(1, 1, *in_shape[-2:])  # (1, 1, H, W)
    n_w = F.avg_pool2d(ones, k, s, p, divisor_override=1)  # pixels inside, (1, 1, H', W')
    Hf = (H_out / n_w.square()).reshape(-1, 1, *H_out.shape[-2:])  # (B C, 1, H', W')
    taps = H_out.new_ones(1, 1, k, k)  # J = 1 / n_w on every tap of window w
    output_padding = tuple(
        in_shape[-2 + d] - ((H_out.shape[-2 + d] - 1) * s - 2 * p + k) for d in range(2)
    )
    H_in = F.conv_transpose2d(Hf, taps, None, s, p, output_padding)  # (B C, 1, H, W)
    return H_in.reshape(tuple(in_shape))


def tree_op_gn_backward(op: nn.Module, H_out: torch.Tensor) -> torch.Tensor:
    """Sweep one tree op: the border-aware average pool here, every other op by its rules."""
    if isinstance(op, nn.AvgPool2d) and not _counts_padding(op):
        in_shape = active_tape().saved_for(op)["input_shape"]  # saved by AvgPool2d's own hook
        return inside_avg_pool_gn_backward(op, H_out, in_shape)
    return gn_backward(op, H_out)


def _switched_edge_rule(edge: TreeSwitchedEdge, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    # y = sum_k s_k o_k(u), u = sbar x: each branch's curvature at u, added where they meet
    H_u = None
    for name in edge.op_names:
        H_branch = tree_op_gn_backward(edge.ops[name], gn_backward(edge.switches[name], H_out))
        H_u = H_branch if H_u is None else H_u + H_branch
    return gn_backward(edge.parent, H_u)


def _fixed_edge_rule(edge: _FixedEdge, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    H_ops = [tree_op_gn_backward(op, H_out) for op in edge.ops.values()]
    return sum(H_ops[1:], H_ops[0])


# --------------------------------------------------------------------------------------------
# the tree cell
# --------------------------------------------------------------------------------------------


def _save_input_shape(module: nn.Module, tape: GNTape, inputs: tuple, output: Any) -> None:
    tape.save(module, input_shape=tuple(inputs[0].shape))


def _branch_alive(cell: TreeCell, index: int, edge: int, child: int) -> bool:
    """Whether a branch's output reaches its node (the ``y is not None`` of the forward)."""
    if cell._is_pruned(edge):
        return False
    if child < 0 or (index == 0 and cell.root_bns is not None):
        return True
    return _node_alive(cell, child)


def _node_alive(cell: TreeCell, index: int) -> bool:
    return any(_branch_alive(cell, index, e, c) for e, c in cell.flat.nodes[index][2])


def _node_gn_backward(
    cell: TreeCell, index: int, H_out: torch.Tensor, in_shape: tuple[int, ...]
) -> torch.Tensor:
    """Curvature at node ``index``'s input (shape ``in_shape``) from that at its output."""
    split, merge, branches = cell.flat.nodes[index]
    n = len(branches)
    if merge == "add":  # node = (1/n) sum_i out_i: J = 1/n on each branch
        H_branches = [H_out / n**2] * n
    else:  # concat: each branch its channel slice
        H_branches = list(H_out.split([cell.widths[e] for e, _ in branches], dim=1))
    H_inputs: list[torch.Tensor | None] = []
    for i, ((edge, child), H_y) in enumerate(zip(branches, H_branches, strict=True)):
        if not _branch_alive(cell, index, edge, child):
            H_inputs.append(None)  # its input does not reach the output
            continue
        H_e, H_t = None, H_y  # at the edge output e, at the subtree output t = T(e)
        if index == 0 and cell.root_bns is not None:
            # out_i = (BN_i(t) + e) / 2: J = 1/2 on the skip and into the BN
            H_e, H_t = H_y / 4, gn_backward(cell.root_bns[i], H_y / 4)
        H_sub = None  # the curvature at e through t (none when the subtree is dead)
        if child < 0:
            H_sub = H_t  # a leaf: t = e
        elif _node_alive(cell, child):
            child_shape = (H_y.shape[0], cell.widths[edge], *H_y.shape[2:])  # (B, w_e, H', W')
            H_sub = _node_gn_backward(cell, child, H_t, child_shape)
        if H_sub is not None:
            H_e = H_sub if H_e is None else H_e + H_sub  # the skip and the subtree meet: add
        H_inputs.append(gn_backward(cell.edges[edge], H_e))
    if split == "copy":  # every branch reads x: the curvatures add
        alive = [H for H in H_inputs if H is not None]
        return sum(alive[1:], alive[0]) if alive else H_out.new_zeros(in_shape)
    widths = split_widths(in_shape[1], n)
    zeros = [H_out.new_zeros(in_shape[0], w, *in_shape[2:]) for w in widths]
    return torch.cat([z if H is None else H for H, z in zip(H_inputs, zeros, strict=True)], 1)


def _tree_cell_rule(cell: TreeCell, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    in_shape = tape.saved_for(cell)["input_shape"]  # (B, C, H, W)
    if not _node_alive(cell, 0):  # every root edge pruned: the output is constant zeros
        return H_out.new_zeros(in_shape)
    return _node_gn_backward(cell, 0, H_out, in_shape)


# --------------------------------------------------------------------------------------------
# the backbone and the supernet
# --------------------------------------------------------------------------------------------


def _unit_rule(unit: PyramidUnit, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    H_cell = gn_backward(unit.cell, gn_backward(unit.out_bottle, H_out))  # (B, c, H', W')
    H_branch = gn_backward(unit.in_bottle, H_cell)  # (B, f, H, W)
    H_short = gn_backward(unit.shortcut, H_out[:, : unit.in_channels])  # crop the zero channels
    return H_branch + H_short  # the branch and the shortcut meet at x: add


def _pyramidnet_rule(net: PyramidNet, H_logits: torch.Tensor, tape: GNTape) -> torch.Tensor:
    H = gn_backward(net.head, H_logits)  # (B, 4 c_last, H, W)
    for unit in reversed(net.units):
        H = gn_backward(unit, H)
    return gn_backward(net.stem, H)  # (B, in, H, W)


def _supernet_rule(net: TreeSupernet, H_logits: torch.Tensor, tape: GNTape) -> torch.Tensor:
    return gn_backward(net.net, H_logits)  # the forward is the backbone's


register_gn_rule(TreeSwitchedEdge, _switched_edge_rule)
register_gn_rule(_FixedEdge, _fixed_edge_rule)
register_gn_rule(TreeCell, _tree_cell_rule, _save_input_shape)
register_gn_rule(PyramidUnit, _unit_rule)
register_gn_rule(PyramidNet, _pyramidnet_rule)
register_gn_rule(TreeSupernet, _supernet_rule)
