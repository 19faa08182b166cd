r"""Exact curvature references in a chosen set of parameters (the switches), by ``torch.func``.

For the mean softmax cross-entropy ``L = (1/B) sum_b CE(z_b, y_b)`` of the logits
``z = f(theta)``, ``(B, classes)``, in the parameters ``theta`` (``S`` numbers):

* the Gauss-Newton matrix ``G = (1/B) sum_b J_b^T Lambda_b J_b`` with ``J_b = dz_b/dtheta``,
  ``(classes, S)``, and ``Lambda_b = diag(p_b) - p_b p_b^T``, the CE Hessian in the logits;
  positive semi-definite, independent of the labels (:func:`exact_ggn`);
* the Hessian ``d2L/dtheta2 = G + (1/B) sum_b sum_c (p_bc - 1[y_b = c]) d2z_bc/dtheta2``,
  which can be indefinite (:func:`exact_hessian`).

The Jacobian is taken of the whole batch's logits at once (``torch.func.jacrev`` over a
``functional_call``), not per sample under ``vmap``: with BatchNorm in train mode the batch is one
function (the statistics couple the samples) and ``J_b`` has entries from every sample's input.

BatchNorm running statistics are never updated by these functions (see
:func:`batchnorm_stats_frozen`); train-mode BN uses batch statistics, eval-mode BN the running
ones, as in the model's forward. Results are float64 whatever the model's dtype.
These are references for small nets: the cost is ``B * classes`` backward passes (Jacobian) or
``S`` forward-over-reverse passes (Hessian).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian, jacfwd, jacrev

__all__ = [
    "batchnorm_stats_frozen",
    "exact_ggn",
    "exact_hessian",
    "logits_jacobian",
]


@contextlib.contextmanager
def batchnorm_stats_frozen(model: nn.Module) -> Iterator[None]:
    """Run forwards without updating any BatchNorm running statistics.

    Train-mode BN layers get ``track_running_stats = False`` for the duration (they then
    normalise with batch statistics and update nothing, which is also what ``torch.func``
    transforms need); eval-mode layers are untouched. Restored on exit.
    """
    changed = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            if module.track_running_stats:
                changed.append(module)
                module.track_running_stats = False
    try:
        yield
    finally:
        for module in changed:
            module.track_running_stats = True


def _check_names(model: nn.Module, parameter_names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The named parameters, in the given order; clear errors for bad names."""
    if isinstance(parameter_names, str) or len(parameter_names) == 0:
        raise ValueError(
            f"`parameter_names` must be a non-empty sequence of names, got {parameter_names!r}"
        )
    params = dict(model.named_parameters())
    unknown = [n for n in parameter_names if n not in params]
    if unknown:
        valid = list(params)
        shown = ", ".join(valid[:8]) + (", ..." if len(valid) > 8 else "")
        raise ValueError(f"unknown parameter names {unknown}; the model has: {shown}")
    if len(set(parameter_names)) != len(parameter_names):
        raise ValueError(f"`parameter_names` must not repeat a name, got {list(parameter_names)}")
    return {n: params[n] for n in parameter_names}


def _flat_function(model: nn.Module, x: torch.Tensor, parameter_names: Sequence[str]):
    """``theta (S,) -> logits (B, classes)`` with the other parameters and buffers fixed."""
    selected = _check_names(model, parameter_names)
    shapes = [p.shape for p in selected.values()]
    sizes = [p.numel() for p in selected.values()]
    fixed = {n: t.detach() for n, t in model.named_parameters()}
    fixed.update(dict(model.named_buffers()))
    theta0 = torch.cat([p.detach().reshape(-1) for p in selected.values()])  # (S,)

    def logits_of(theta: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(theta, sizes)
        values = {n: v.reshape(s) for n, v, s in zip(selected, pieces, shapes, strict=True)}
        logits = functional_call(model, {**fixed, **values}, (x,))
        if logits.ndim != 2:
            raise ValueError(
                f"the model must return logits (B, classes), got {tuple(logits.shape)}"
            )
        return logits

    return logits_of, theta0


def logits_jacobian(
    model: nn.Module, x: torch.Tensor, parameter_names: Sequence[str], mode: str = "rev"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Jacobian of the whole batch's logits in the named parameters.

    Args:
        model: returns logits ``(B, classes)``.
        x: one batch of inputs, e.g. ``(B, C, H, W)``.
        parameter_names: names from ``model.named_parameters()``; the ``S`` flattened entries
            are ordered as the names, each flattened in row-major order.
        mode: ``"rev"`` (``jacrev``: ``B * classes`` vector-Jacobian products) or ``"fwd"``
            (``jacfwd``: ``S`` Jacobian-vector products; cheaper when ``S < B * classes``).

    Returns:
        ``(logits, J)``: ``(B, classes)`` and ``(B, classes, S)``, in the model's dtype.

    Raises:
        ValueError: for unknown or repeated parameter names, an unknown ``mode``, or a model
            that does not return 2-D logits.
    """
    if mode not in ("rev", "fwd"):
        raise ValueError(f"`mode` must be 'rev' or 'fwd', got {mode!r}")
    logits_of, theta0 = _flat_function(model, x, parameter_names)
    jac = jacrev if mode == "rev" else jacfwd
    with batchnorm_stats_frozen(model):
        logits = logits_of(theta0).detach()
        J = jac(logits_of)(theta0)  # (B, classes, S)
    return logits, J.detach()


def exact_ggn(
    model: nn.Module,
    x: torch.Tensor,
    parameter_names: Sequence[str],
    *,
    full: bool = False,
    mode: str = "rev",
) -> torch.Tensor:
    """The exact Gauss-Newton matrix of the mean softmax CE in the named parameters.

    ``G = (1/B) sum_b J_b^T (diag(p_b) - p_b p_b^T) J_b`` (no label needed).

    Args:
        model, x, parameter_names, mode: as in :func:`logits_jacobian`.
        full: return the ``(S, S)`` matrix instead of its diagonal.

    Returns:
        float64, ``(S,)`` (diagonal, never negative) or ``(S, S)`` (symmetric PSD).
    """
    logits, J = logits_jacobian(model, x, parameter_names, mode=mode)
    J = J.to(torch.float64)  # (B, classes, S)
    p = torch.softmax(logits.to(torch.float64), dim=1)  # (B, classes)
    B = logits.shape[0]
    # Lambda_b J_b = p * J - p (p^T J): avoids building (B, classes, classes)
    pJ = torch.einsum("bk,bks->bs", p, J)  # p_b^T J_b, (B, S)
    LJ = p.unsqueeze(-1) * J - p.unsqueeze(-1) * pJ.unsqueeze(1)  # (B, classes, S)
    if full:
        G = torch.einsum("bks,bkt->st", J, LJ) / B  # (S, S)
        return 0.5 * (G + G.T)
    return torch.einsum("bks,bks->s", J, LJ) / B  # (S,)


def exact_hessian(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    parameter_names: Sequence[str],
    *,
    full: bool = False,
) -> torch.Tensor:
    """The exact Hessian of the mean softmax CE in the named parameters (``torch.func.hessian``).

    Args:
        model, x, parameter_names: as in :func:`logits_jacobian`.
        y: integer labels, ``(B,)``.
        full: return the ``(S, S)`` matrix instead of its diagonal.

    Returns:
        float64, ``(S,)`` or ``(S, S)``; may have negative entries (unlike the GGN).

    Raises:
        ValueError: if ``y`` is not ``(B,)`` integer labels.
    """
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.dtype.is_floating_point:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y)
        raise ValueError(f"`y` must be integer class labels of shape (B,), got {shape}")
    logits_of, theta0 = _flat_function(model, x, parameter_names)

    def loss_of(theta: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits_of(theta), y)  # mean over the batch

    with batchnorm_stats_frozen(model):
        Hs = hessian(loss_of)(theta0).detach().to(torch.float64)  # (S, S)
    if full:
        return 0.5 * (Hs + Hs.T)
    return Hs.diagonal().clone()
