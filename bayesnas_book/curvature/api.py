"""One interface to the curvature of the loss in the switches: :func:`switch_curvature`.

Every method estimates the curvature of the mean softmax cross-entropy in the switch parameters
(:class:`~bayesnas_book.space.switch.Switch`), batch by batch, and averages over the batches
given, weighting each batch by its size (for per-sample-independent nets this is the curvature
of the mean loss over all examples):

=============== ============================================================================
method          what it computes (per batch)
=============== ============================================================================
``recursion``   the fast diagonal Gauss-Newton sweep (:mod:`.recursion`): one forward without
                autograd and one backward-like sweep; drops cross terms; diagonal only
``exact_ggn``   the exact GGN ``(1/B) sum_b J_b^T Lambda_b J_b`` (:mod:`.exact`); ``full=True``
                gives the ``(S, S)`` matrix
``mc_ggn``      Monte-Carlo GGN with labels sampled from the model (:mod:`.montecarlo`);
                unbiased; ``num_samples``, ``generator``; ``full=True`` allowed
``hessian``     the exact Hessian (:func:`.exact.exact_hessian`); may be negative: a reference,
                not for the Laplace update; uses the labels
=============== ============================================================================

Order: by default every ``Switch`` of ``model.named_modules()``, in that order (for a
:class:`~bayesnas_book.space.edge.SwitchedEdge`: parent, then the child switches in op order).

Dtype: whatever the model's dtype, curvatures are accumulated and returned in float64 on the
CPU (the recursion propagates ``H`` in float32, or float64 for a float64 model). Under
``torch.autocast`` the ``recursion`` and ``mc_ggn`` forwards run in the low precision (the
recursion's sweep still in float32); ``exact_ggn`` and ``hessian`` are references and switch
autocast off.

The model's train / eval mode is respected (BatchNorm uses batch statistics in train mode) and
no method updates BatchNorm running statistics or parameter gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bayesnas_book.curvature.exact import batchnorm_stats_frozen, exact_ggn, exact_hessian
from bayesnas_book.curvature.montecarlo import mc_ggn
from bayesnas_book.curvature.recursion import capture, iter_switches, softmax_cross_entropy_gn
from bayesnas_book.space.switch import Switch

__all__ = [
    "CURVATURE_METHODS",
    "CurvatureEstimate",
    "register_curvature_method",
    "select_switches",
    "switch_curvature",
]

# method(model, x, y, switches: list[(name, Switch)], full, **kwargs) -> (S,) or (S, S) float64
CurvatureMethod = Callable[..., torch.Tensor]
CURVATURE_METHODS: dict[str, CurvatureMethod] = {}


def register_curvature_method(name: str, method: CurvatureMethod) -> CurvatureMethod:
    """Add a method ``method(model, x, y, switches, full, **kwargs) -> Tensor`` under ``name``.

    Raises:
        ValueError: if ``name`` is already registered.
    """
    if name in CURVATURE_METHODS:
        raise ValueError(f"curvature method {name!r} is already registered")
    CURVATURE_METHODS[name] = method
    return method


@dataclass(frozen=True)
class CurvatureEstimate:
    """Per-switch curvature of the mean CE loss.

    Attributes:
        names: ``S`` switch module names (``model.named_modules()`` names).
        diagonal: ``(S,)`` float64 on the CPU, ``d2L/ds2`` per switch, in ``names`` order.
        full: ``(S, S)`` float64 when asked (``exact_ggn``, ``mc_ggn``, ``hessian``), else ``None``.
        method: the method name.
        num_batches: how many batches were averaged.
        num_examples: how many examples they held.
    """

    names: tuple[str, ...]
    diagonal: torch.Tensor
    full: torch.Tensor | None
    method: str
    num_batches: int
    num_examples: int

    def as_dict(self) -> dict[str, float]:
        """``switch name -> diagonal curvature`` as Python floats."""
        return dict(zip(self.names, self.diagonal.tolist(), strict=True))


def select_switches(
    model: nn.Module, switches: Sequence[str | Switch] | None = None
) -> list[tuple[str, Switch]]:
    """Resolve ``switches`` (names or modules; ``None``: all) to ``(name, Switch)`` pairs.

    Raises:
        ValueError: if the model has no switch, or an entry is unknown, not a switch, or repeated.
    """
    available = list(iter_switches(model))
    if not available:
        raise ValueError(
            f"no Switch module found in the model ({type(model).__name__}); the curvature is "
            "taken in bayesnas_book.space.switch.Switch parameters"
        )
    if switches is None:
        return available
    if isinstance(switches, (str, Switch)):
        raise ValueError("`switches` must be a sequence of names or Switch modules, not one item")
    by_name = dict(available)
    by_module = {id(m): n for n, m in available}
    selected: list[tuple[str, Switch]] = []
    for entry in switches:
        if isinstance(entry, Switch):
            if id(entry) not in by_module:
                raise ValueError("a Switch in `switches` is not part of the model")
            name = by_module[id(entry)]
        elif isinstance(entry, str):
            if entry not in by_name:
                shown = ", ".join(list(by_name)[:6]) + (", ..." if len(by_name) > 6 else "")
                raise ValueError(f"`switches` names {entry!r}, not a Switch of the model: {shown}")
            name = entry
        else:
            raise ValueError(f"`switches` entries must be names or Switch modules, got {entry!r}")
        selected.append((name, by_name[name]))
    names = [n for n, _ in selected]
    if len(set(names)) != len(names):
        raise ValueError(f"`switches` must not repeat a switch, got {names}")
    if not selected:
        raise ValueError("`switches` is empty; pass None for every switch of the model")
    return selected


def _parameter_names(switches: list[tuple[str, Switch]]) -> list[str]:
    return [f"{name}.value" if name else "value" for name, _ in switches]


# --------------------------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------------------------


def _recursion(model, x, y, switches, full, **kwargs: Any) -> torch.Tensor:
    if full:
        raise ValueError(
            "method 'recursion' gives the diagonal only; use full=False, or method "
            "'exact_ggn' / 'mc_ggn' for the full matrix"
        )
    if kwargs:
        raise TypeError(f"method 'recursion' takes no options, got {sorted(kwargs)}")
    with torch.no_grad(), batchnorm_stats_frozen(model):
        with capture(model) as tape:
            logits = model(x)  # (B, classes)
        tape.backward(softmax_cross_entropy_gn(logits))
    zero = torch.zeros((), dtype=torch.float64)
    # a switch the sweep never reached (unused in the forward) has zero curvature
    return torch.stack([tape.switch_curvature.get(s, zero).cpu() for _, s in switches])


def _exact_ggn(model, x, y, switches, full, mode: str = "rev") -> torch.Tensor:
    with torch.autocast(x.device.type, enabled=False):  # a reference: always full precision
        return exact_ggn(model, x, _parameter_names(switches), full=full, mode=mode)


def _mc_ggn(
    model, x, y, switches, full, num_samples: int = 1, generator=None, chunk_size: int = 64
) -> torch.Tensor:
    return mc_ggn(
        model,
        x,
        _parameter_names(switches),
        num_samples=num_samples,
        generator=generator,
        full=full,
        chunk_size=chunk_size,
    )


def _hessian(model, x, y, switches, full) -> torch.Tensor:
    with torch.autocast(x.device.type, enabled=False):  # a reference: always full precision
        return exact_hessian(model, x, y, _parameter_names(switches), full=full)


register_curvature_method("recursion", _recursion)
register_curvature_method("exact_ggn", _exact_ggn)
register_curvature_method("mc_ggn", _mc_ggn)
register_curvature_method("hessian", _hessian)


# --------------------------------------------------------------------------------------------
# the interface
# --------------------------------------------------------------------------------------------


def switch_curvature(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    method: str = "recursion",
    switches: Sequence[str | Switch] | None = None,
    full: bool = False,
    **method_kwargs: Any,
) -> CurvatureEstimate:
    """Curvature of the mean softmax CE in the switches, averaged over ``batches``.

    Args:
        model: returns logits ``(B, classes)`` and contains :class:`Switch` modules.
        batches: an iterable of ``(x, y)``: inputs ``(B, ...)`` and integer labels ``(B,)``
            (the GGN methods ignore ``y``; ``hessian`` uses it). Each batch is weighted by ``B``.
        method: one of :data:`CURVATURE_METHODS`: ``"recursion"``, ``"exact_ggn"``,
            ``"mc_ggn"``, ``"hessian"``.
        switches: names (from ``model.named_modules()``) or modules; ``None``: every switch in
            ``named_modules()`` order. The result follows this order.
        full: also return the ``(S, S)`` matrix (not for ``recursion``).
        **method_kwargs: ``mc_ggn``: ``num_samples`` (per batch), ``generator``, ``chunk_size``;
            ``exact_ggn``: ``mode`` (``"rev"`` / ``"fwd"``).

    Returns:
        A :class:`CurvatureEstimate`.

    Raises:
        ValueError: for an unknown method (listing the valid ones), a model without switches,
            an empty ``batches``, a malformed batch, ``full`` with ``recursion``, or a NaN / Inf
            result (naming the switch).
    """
    if method not in CURVATURE_METHODS:
        raise ValueError(
            f"unknown curvature method {method!r}; valid methods: {', '.join(CURVATURE_METHODS)}"
        )
    selected = select_switches(model, switches)
    names = tuple(n for n, _ in selected)
    fn = CURVATURE_METHODS[method]
    total_diag = torch.zeros(len(selected), dtype=torch.float64)
    total_full = torch.zeros(len(selected), len(selected), dtype=torch.float64) if full else None
    num_batches = num_examples = 0
    if isinstance(batches, tuple) and len(batches) == 2 and isinstance(batches[0], torch.Tensor):
        raise ValueError(
            "`batches` must be an iterable of (x, y) pairs; wrap one batch as [(x, y)]"
        )
    for index, batch in enumerate(batches):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError(f"batch {index} must be an (x, y) pair, got {type(batch).__name__}")
        x, y = batch
        if not isinstance(x, torch.Tensor) or x.ndim == 0 or x.shape[0] == 0:
            raise ValueError(f"batch {index}: `x` must be a non-empty tensor (B, ...), got {x!r}")
        B = x.shape[0]
        result = fn(model, x, y, selected, full, **method_kwargs).detach().to("cpu", torch.float64)
        expected = (len(selected),) * (2 if full else 1)
        if tuple(result.shape) != expected:
            raise ValueError(
                f"method {method!r} returned shape {tuple(result.shape)} for batch {index}, "
                f"expected {expected}"
            )
        if total_full is not None:
            total_full += B * result
            total_diag += B * result.diagonal()
        else:
            total_diag += B * result
        num_batches += 1
        num_examples += B
    if num_batches == 0:
        raise ValueError("`batches` is empty: give at least one (x, y) batch")
    diagonal = total_diag / num_examples
    bad = ~torch.isfinite(diagonal)
    if bad.any():
        culprits = [names[i] for i in torch.nonzero(bad).flatten().tolist()]
        raise ValueError(f"curvature is NaN or Inf for switch(es) {culprits} (method {method!r})")
    matrix = None
    if total_full is not None:
        matrix = total_full / num_examples
        if not torch.isfinite(matrix).all():
            rows = torch.nonzero(~torch.isfinite(matrix).all(dim=1)).flatten().tolist()
            raise ValueError(
                f"full curvature is NaN or Inf in the rows of switch(es) "
                f"{[names[i] for i in rows]} (method {method!r})"
            )
    return CurvatureEstimate(
        names=names,
        diagonal=diagonal,
        full=matrix,
        method=method,
        num_batches=num_batches,
        num_examples=num_examples,
    )
