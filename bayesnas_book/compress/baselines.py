r"""Baselines on the same groups: magnitude pruning and group lasso, at a matched sparsity.

Both use the groups of :func:`~bayesnas_book.compress.gates.gate_groups` (a unit's incoming
weights, bias and BatchNorm scale and shift, and its outgoing slice of the next layer; a feature's
outgoing slice only), with the gates held at 1:

* **magnitude pruning**: train the network normally, keep in each layer the ``k`` units with the
  largest group norm ``||theta_g||_2`` (:func:`group_norms`, :func:`magnitude_masks`), fine-tune;
* **group lasso** (Yuan and Lin 2006; Wen et al. 2016 for structured sparsity): train on
  ``NLL + rho sum_g sqrt(d_g) ||theta_g||_2`` with the proximal step after every SGD step
  (:func:`group_lasso_prox`)::

      theta_g <- theta_g * max(0, 1 - eta rho sqrt(d_g) / ||theta_g||_2)

  then keep the ``k`` largest groups per layer and fine-tune.

``k`` per layer comes from the Bayesian run (the same units per layer) or from a sparsity target
(:func:`kept_counts`), so the comparison is at equal sparsity and equal training budget
(:mod:`bayesnas_book.compress.run`).

.. note::
    A weight of the next layer belongs to two groups (the outgoing slice of unit ``j`` and the
    incoming weights of the next unit ``i``). The proximal step computes every group's factor
    from the norms before the step and multiplies each weight by the factors of all its groups:
    the exact proximal operator of overlapping groups has no closed form.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from bayesnas_book.compress.gates import GatedNet, GateGroup, gate_groups
from bayesnas_book.validation import check_positive

__all__ = ["apply_masks", "group_lasso_prox", "group_norms", "group_sizes", "kept_counts", "magnitude_masks"]


def _pieces(model: GatedNet, group: GateGroup) -> list[tuple[torch.Tensor, str]]:
    """The group's parameter tensors with how their unit dimension sits: ``"rows"`` or ``"columns"``."""
    children = dict(model.named_children())
    pieces: list[tuple[torch.Tensor, str]] = []
    if group.producer is not None:
        producer = children[group.producer]
        pieces.append((producer.weight, "rows"))
        if producer.bias is not None:
            pieces.append((producer.bias, "rows"))
    if group.norm is not None:
        norm = children[group.norm]
        if norm.weight is not None:
            pieces += [(norm.weight, "rows"), (norm.bias, "rows")]
    pieces.append((children[group.consumer].weight, "columns"))
    return pieces


def _per_unit_sq(t: torch.Tensor, how: str, C: int, positions: int) -> torch.Tensor:
    """Sum of squares of each unit's entries of ``t``: ``(C,)``."""
    if how == "rows":
        return t.detach().reshape(C, -1).square().sum(1)  # (C, ...) -> (C,)
    W = t.detach()
    W = W.reshape(W.shape[0], C, positions, -1)  # (out, C * positions, [k, k]) -> (out, C, positions, rest)
    return W.square().sum(dim=(0, 2, 3))


def _scale_units(t: torch.Tensor, how: str, factor: torch.Tensor, positions: int) -> None:
    """Multiply each unit's entries of ``t`` in place by ``factor`` ``(C,)``."""
    if how == "rows":
        t.mul_(factor.view((-1,) + (1,) * (t.dim() - 1)))
        return
    per_column = factor.repeat_interleave(positions)  # (C * positions,): channel c's H W columns
    t.mul_(per_column.view((1, -1) + (1,) * (t.dim() - 2)))


def group_sizes(model: GatedNet, groups: Sequence[GateGroup] | None = None) -> dict[str, int]:
    """``d_g``: the number of parameters in one unit's group, per gate layer (``groups``: from :func:`gate_groups`)."""
    out = {}
    for g in gate_groups(model) if groups is None else groups:
        out[g.gate] = sum(t.numel() // g.num_units for t, _ in _pieces(model, g))
    return out


@torch.no_grad()
def group_norms(model: GatedNet, groups: Sequence[GateGroup] | None = None) -> dict[str, torch.Tensor]:
    """``||theta_g||_2`` of every unit's group, ``{gate name: (C,)}`` (float64, CPU); ``groups`` as cached."""
    out = {}
    for g in gate_groups(model) if groups is None else groups:
        sq = sum(_per_unit_sq(t, how, g.num_units, g.positions).to("cpu", torch.float64) for t, how in _pieces(model, g))
        out[g.gate] = sq.sqrt()  # type: ignore[union-attr]
    return out


@torch.no_grad()
def group_lasso_prox(model: GatedNet, strength: float, step_size: float, groups: Sequence[GateGroup] | None = None) -> None:
    """The proximal step of ``rho sum_g sqrt(d_g) ||theta_g||_2``, in place (module docstring).

    Args:
        model: the gated network (its gates are not changed).
        strength: rho, > 0.
        step_size: the learning rate eta of the step just taken, > 0.
        groups: :func:`gate_groups` of the model, when cached (it runs a forward).

    Raises:
        ValueError: for a non-positive strength or step size.
    """
    strength = check_positive("strength", strength)
    step_size = check_positive("step_size", step_size)
    groups = gate_groups(model) if groups is None else groups
    sizes = group_sizes(model, groups)
    norms = group_norms(model, groups)
    factors = {}
    for g in groups:
        norm = norms[g.gate]
        shrink = step_size * strength * math.sqrt(sizes[g.gate])  # eta rho sqrt(d_g)
        factors[g.gate] = torch.clamp(1.0 - shrink / norm.clamp_min(1e-30), min=0.0)  # (C,)
    for g in groups:
        for t, how in _pieces(model, g):
            _scale_units(t, how, factors[g.gate].to(t), g.positions)


def kept_counts(units: Mapping[str, int], sparsity: float) -> dict[str, int]:
    """Units to keep per layer for a fraction ``sparsity`` of each layer's units removed.

    Args:
        units: units per gate layer, ``{name: C}``.
        sparsity: fraction removed in every layer, in ``[0, 1)``; at least one unit stays.

    Returns:
        ``{name: max(1, round((1 - sparsity) C))}``.

    Raises:
        ValueError: for a sparsity outside ``[0, 1)``.
    """
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 <= sparsity < 1.0:
        raise ValueError(f"`sparsity` must be in [0, 1) (the fraction of units removed), got {sparsity!r}")
    return {name: max(1, round((1.0 - sparsity) * C)) for name, C in units.items()}


@torch.no_grad()
def magnitude_masks(model: GatedNet, keep: Mapping[str, int], scores: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Keep the ``keep[name]`` units with the largest group norm in each layer.

    Args:
        model: the gated network.
        keep: units to keep per gate layer, each in ``1..C``.
        scores: per-unit scores (default :func:`group_norms`); ties go to the lower index.

    Returns:
        ``{name: bool (C,)}``, True where pruned.

    Raises:
        ValueError: for a missing layer or a count outside ``1..C``.
    """
    scores = group_norms(model) if scores is None else scores
    out = {}
    for name, score in scores.items():
        if name not in keep:
            raise ValueError(f"`keep` has no count for gate layer {name!r}")
        k, C = keep[name], score.shape[0]
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= C:
            raise ValueError(f"`keep[{name!r}]` must be an integer in 1..{C}, got {k!r}")
        order = torch.sort(score, descending=True, stable=True).indices
        pruned = torch.ones(C, dtype=torch.bool)
        pruned[order[:k]] = False
        out[name] = pruned
    return out


def apply_masks(model: nn.Module, pruned: Mapping[str, torch.Tensor]) -> None:
    """Prune the given units of every named gate layer (:meth:`UnitGate.prune`)."""
    modules = dict(model.named_modules())
    for name, mask in pruned.items():
        modules[name].prune(mask)  # type: ignore[operator]
