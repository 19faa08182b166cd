r"""The BayesNAS update on unit gates: penalty, curvature, Laplace update, entropy pruning.

The same machinery as the switches (the paper's priors, Laplace update and entropy rule; :mod:`bayesnas_book.bayes.laplace`,
:mod:`bayesnas_book.bayes.pruning`), with one ARD group per unit gate ``s_j ~ N(0, gamma_j)``
(:mod:`bayesnas_book.compress.gates`). One round:

1. train weights and gates on ``mean NLL + sum_j lambda omega_j |s_j|`` (weight decay on the
   weights only). The penalty enters as its proximal step after every SGD step,
   ``s_j <- sign(s_j) max(|s_j| - eta lambda omega_j, 0)`` (:func:`prox_gates`), which puts
   unimportant gates exactly at 0;
2. ``H_j``: the curvature of the mean NLL in each gate (:func:`gate_curvature`: the fast
   recursion, the exact GGN or the Monte-Carlo GGN);
3. the Laplace update of :func:`bayesnas_book.bayes.laplace.laplace_update` with groups of one
   gate::

       C_j = (1/gamma_j + H_j/lambda)^-1,   omega_j = sqrt(|1/gamma_j - C_j/gamma_j^2|),
       gamma_j = |s_j| / omega_j

4. the entropy rule of :func:`bayesnas_book.bayes.pruning.entropy_prune_mask`: prune unit ``j``
   when ``gamma_j <= 1/(2 pi e)``; a pruned gate is masked to 0 for good.

Notation: ``s`` ``gates``, ``H`` ``curvature``, ``gamma`` ``prior_variance``, ``omega``
``reweighting``, ``lambda`` ``lambda_gate`` (all per gate layer, shape ``(C,)``).

.. note::
    ``laplace_update`` works on an edge with a parent and child switches, shape
    ``(N, E, 1 + K)``. A gate layer of ``C`` units is passed as ``N = 1`` cell, ``E = C``
    edges and two columns holding the same gate (``couple=False``, ``lambda_o = lambda_c``),
    and column 0 is read back: the two columns are computed independently, so this is the
    scalar rule for every gate, with the library's checks and its float32-safe omega.

.. note::
    The switches' penalty is added to the loss (:mod:`bayesnas_book.search`); the gates' is
    applied as a proximal step, so that the shared training engine
    (:class:`bayesnas_book.train.Trainer`) runs unchanged: the step is an optimiser hook.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from bayesnas_book.bayes.laplace import INITIAL_GAMMA, INITIAL_OMEGA, LaplaceResult, laplace_update
from bayesnas_book.bayes.pruning import DEFAULT_THRESHOLD, entropy_prune_mask
from bayesnas_book.compress.gates import UnitGate, gate_modules
from bayesnas_book.curvature.exact import batchnorm_stats_frozen, exact_ggn
from bayesnas_book.curvature.montecarlo import mc_ggn
from bayesnas_book.curvature.recursion import capture, softmax_cross_entropy_gn
from bayesnas_book.validation import check_positive

__all__ = [
    "GATE_CURVATURE_METHODS",
    "CompressionError",
    "entropy_prune_gates",
    "gate_curvature",
    "gate_laplace_update",
    "initial_gate_state",
    "prox_gates",
]

GATE_CURVATURE_METHODS = ("recursion", "exact_ggn", "mc_ggn")


class CompressionError(RuntimeError):
    """A compression step cannot go on as asked (the message says why and what to change)."""


def initial_gate_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(gamma_0, omega_0)`` per gate layer: all ones, float64 ``(C,)`` (the switches' start)."""
    gates = gate_modules(model)
    gamma = {n: torch.full((g.num_units,), INITIAL_GAMMA, dtype=torch.float64) for n, g in gates}
    omega = {n: torch.full((g.num_units,), INITIAL_OMEGA, dtype=torch.float64) for n, g in gates}
    return gamma, omega


# -- 1. the penalty, as a proximal step ------------------------------------------------------------
@torch.no_grad()
def prox_gates(model: nn.Module, reweighting: Mapping[str, torch.Tensor], lambda_gate: float, step_size: float) -> None:
    """The proximal step of ``sum_j lambda omega_j |s_j|``, in place on every gate.

    ``s_j <- sign(s_j) max(|s_j| - step_size lambda omega_j, 0)`` (soft thresholding).

    Args:
        model: holds the :class:`UnitGate` layers.
        reweighting: omega per gate layer, ``{name: (C,)}``, >= 0.
        lambda_gate: lambda, > 0.
        step_size: the learning rate eta of the step just taken, > 0.

    Raises:
        ValueError: for a non-positive lambda or step, or a missing layer.
    """
    lambda_gate = check_positive("lambda_gate", lambda_gate)
    step_size = check_positive("step_size", step_size)
    for name, gate in gate_modules(model):
        if name not in reweighting:
            raise ValueError(f"`reweighting` has no entry for gate layer {name!r}")
        threshold = step_size * lambda_gate * reweighting[name].to(gate.value)  # eta lambda omega_j, (C,)
        s = gate.value
        s.copy_(torch.sign(s) * torch.clamp(s.abs() - threshold, min=0.0) * gate.mask)


# -- 2. the curvature ------------------------------------------------------------------------------
def _one_batch(model: nn.Module, x: torch.Tensor, gates: Sequence[tuple[str, UnitGate]], method: str,
               num_samples: int, generator: torch.Generator | None) -> torch.Tensor:
    if method == "recursion":
        with torch.no_grad(), batchnorm_stats_frozen(model):
            with capture(model) as tape:
                logits = model(x)  # (B, classes)
            tape.backward(softmax_cross_entropy_gn(logits))
        return torch.cat([tape.switch_curvature[g].cpu() for _, g in gates])  # type: ignore[index]
    names = [f"{n}.value" for n, _ in gates]
    if method == "exact_ggn":
        return exact_ggn(model, x, names)
    return mc_ggn(model, x, names, num_samples=num_samples, generator=generator)


def gate_curvature(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    method: str = "recursion",
    *,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Diagonal curvature of the mean softmax CE in every gate, averaged over ``batches``.

    The three methods of :mod:`bayesnas_book.curvature`: ``"recursion"`` (the fast diagonal
    Gauss-Newton sweep with the gate's rule, :mod:`bayesnas_book.compress.gates`),
    ``"exact_ggn"`` (the exact GGN diagonal, ``torch.func``) and ``"mc_ggn"`` (labels sampled
    from the model, ``num_samples`` per batch, drawn with ``generator``). Batches are weighted
    by their size; BatchNorm running statistics are not touched.

    Args:
        model: a gated network returning logits ``(B, classes)``.
        batches: ``(x, y)`` pairs, ``x`` of shape ``(B, C, H, W)``; the labels are not used.
        method: one of :data:`GATE_CURVATURE_METHODS`.
        num_samples: label draws per batch for ``mc_ggn``.
        generator: seeded generator for ``mc_ggn``.

    Returns:
        ``{gate name: (C,)}``, float64 on the CPU, non-negative.

    Raises:
        ValueError: for an unknown method (listing the valid ones), a model without gates, no
            batch, or a non-finite result (naming the layer).
    """
    if method not in GATE_CURVATURE_METHODS:
        raise ValueError(f"unknown curvature method {method!r}; valid methods: {', '.join(GATE_CURVATURE_METHODS)}")
    gates = gate_modules(model)
    if not gates:
        raise ValueError(f"`model` ({type(model).__name__}) has no prunable layer: no UnitGate to take the curvature in")
    total = torch.zeros(sum(g.num_units for _, g in gates), dtype=torch.float64)
    count = 0
    for x, _ in batches:
        B = x.shape[0]
        total += B * _one_batch(model, x, gates, method, num_samples, generator).detach().to("cpu", torch.float64)
        count += B
    if count == 0:
        raise ValueError("`batches` is empty: give at least one (x, y) batch")
    pieces = torch.split(total / count, [g.num_units for _, g in gates])  # (S,) -> per layer (C,)
    out = {}
    for (name, _), H in zip(gates, pieces, strict=True):
        if not bool(torch.isfinite(H).all()):
            raise ValueError(f"the curvature of gate layer {name!r} is NaN or Inf (method {method!r})")
        out[name] = H.clone()
    return out


# -- 3. the Laplace update -------------------------------------------------------------------------
def gate_laplace_update(
    gates: torch.Tensor, curvature: torch.Tensor, prior_variance: torch.Tensor, lambda_gate: float, *, layer: str = "gate"
) -> LaplaceResult:
    """The BayesNAS update for one gate layer, each gate its own group (module docstring).

    Args:
        gates: s, ``(C,)``.
        curvature: H, the NLL's curvature in each gate, ``(C,)``, >= 0.
        prior_variance: gamma of the previous update, ``(C,)``.
        lambda_gate: lambda, > 0.
        layer: the layer's name, for error messages.

    Returns:
        A :class:`~bayesnas_book.bayes.laplace.LaplaceResult` whose fields have shape ``(C,)``.

    Raises:
        ValueError: for shapes that differ, and everything
            :func:`~bayesnas_book.bayes.laplace.laplace_update` refuses.
    """
    if gates.dim() != 1 or curvature.shape != gates.shape or prior_variance.shape != gates.shape:
        raise ValueError(
            f"`gates`, `curvature` and `prior_variance` must all have shape (C,), got {tuple(gates.shape)}, "
            f"{tuple(curvature.shape)} and {tuple(prior_variance.shape)}"
        )
    s = gates.detach().to(torch.float64)
    two = lambda t: torch.stack([t, t], dim=-1)  # noqa: E731 - (C,) -> (C, 2), the gate in both columns
    result = laplace_update(two(s).unsqueeze(0), two(curvature.to(torch.float64)).unsqueeze(0),
                            two(prior_variance.to(torch.float64)), lambda_gate, lambda_gate,
                            cell_type=layer, couple=False)
    return LaplaceResult(
        prior_variance=result.prior_variance[:, 0],
        uncoupled_variance=result.uncoupled_variance[:, 0],
        reweighting=result.reweighting[:, 0],
        posterior_variance=result.posterior_variance[0, :, 0],
        norms=result.norms[:, 0],
    )


# -- 4. the entropy rule ---------------------------------------------------------------------------
def entropy_prune_gates(
    prior_variance: Mapping[str, torch.Tensor], threshold: float = DEFAULT_THRESHOLD, *, lambda_gate: float | None = None
) -> dict[str, torch.Tensor]:
    """Which units the entropy rule prunes: ``gamma_j <= threshold``, per gate layer.

    Args:
        prior_variance: gamma per gate layer, ``{name: (C,)}``.
        threshold: in ``(0, inf)``; default ``1 / (2 pi e)`` (entropy of ``N(0, gamma)`` <= 0).
        lambda_gate: quoted in the error message.

    Returns:
        ``{name: bool (C,)}``, True where pruned.

    Raises:
        CompressionError: if a layer would lose every unit (the message names it and lambda).
        ValueError: for a bad threshold or gamma.
    """
    out = {}
    for name, gamma in prior_variance.items():
        pruned = entropy_prune_mask(gamma, threshold)
        if bool(pruned.all()):
            lam = f" (lambda_gate={lambda_gate:g})" if lambda_gate is not None else ""
            raise CompressionError(
                f"the entropy rule would prune every unit of gate layer {name!r}{lam}, largest gamma "
                f"{float(gamma.max()):.3g} <= threshold {threshold:.4g}; lower compress.lambda_gate or "
                "compress.prune_threshold"
            )
        out[name] = pruned
    return out
