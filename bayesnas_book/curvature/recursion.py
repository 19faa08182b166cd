r"""The fast diagonal Gauss-Newton recursion: every switch curvature in one backward sweep.

BayesNAS (Zhou et al., ICML 2019) needs, for every switch ``s``, the curvature ``d2L/ds2`` of
the training loss. Following Botev et al. (2017), the Gauss-Newton matrix of a loss ``L(z)`` of
the logits ``z = f(theta)`` is ``G = J^T Lambda J`` with ``Lambda = d2L/dz2``. This module
propagates only the *diagonal* of the curvature with respect to each activation, from the
logits back to the input, one layer at a time. For a layer ``y = g(x)`` with Jacobian
``J_ji = dy_j / dx_i`` and a diagonal curvature ``H_y`` at its output::

    H_x[i] = sum_j J_ji^2 H_y[j]                                            (the recursion)

which is the diagonal of ``J^T diag(H_y) J``: the cross terms ``J_ji J_ki G_jk`` (j != k) of a
non-diagonal curvature are dropped wherever a layer mixes positions, channels or classes.
It is exact for element-wise layers and approximates ``diag(GGN)`` elsewhere; chapter 5 and the
tests measure it against :mod:`bayesnas_book.curvature.exact`.

Rules (``H`` has the activation's shape ``(B, ...)``, one curvature per sample and unit):

==================  =========================================================================
module              ``H_in`` from ``H_out``
==================  =========================================================================
softmax CE (mean)   ``H_z = p (1 - p) / B`` over all classes (:func:`softmax_cross_entropy_gn`)
Linear              ``H_in = H_out @ W^2``; weight ``sum_b H_out[b, i] x[b, j]^2`` on request
Conv2d              transposed conv of ``H_out`` with ``W^2`` (same stride, padding, dilation,
                    groups; ``output_padding`` recovers the input shape)
BatchNorm           affine view: ``H_in = H_out * w^2 / (var + eps)`` (batch variance in
                    train mode, running variance in eval mode)
ReLU                ``H_out`` where the pre-activation is > 0, else 0
ZeroPad2d           crop
MaxPool2d           route to the argmax; overlapping windows add
AvgPool2d (k x k)   each input: sum over the windows containing it of ``H_out / k^4``
AdaptiveAvgPool(1)  ``H_out / (H W)^2`` at every position
Flatten, Identity   reshape / pass
Sequential          the children in reverse
Switch ``y = s z``  collects ``d2L/ds2 ~= sum(z^2 * H_y)`` (batch and positions); ``H_z = s^2 H_y``
SwitchedEdge        parent and child switches; branches add (``FusedSwitchedEdge``: its own
                    ``gn_backward``, the same rules on the channel-stacked ops)
==================  =========================================================================

Usage::

    with capture(model) as tape:              # the forward saves what the rules need
        logits = model(x)                     # (B, classes)
    H = softmax_cross_entropy_gn(logits)      # (B, classes)
    tape.backward(H)                          # one sweep; tape.switch_curvature filled

**Composite modules** (a cell, the supernet) join the sweep by defining a method
``gn_backward(self, H_out: Tensor) -> Tensor`` that replays their forward in reverse, calling the
free function :func:`gn_backward` on each child and adding the curvatures of branches that meet
(a concat splits ``H_out`` along the concatenated dimension). :func:`gn_backward` calls that
method before looking in the rule table. A composite that must save something in its own forward
uses ``tape = active_tape()`` (``None`` outside a capture), ``tape.save(self, key=value)``, and in
``gn_backward`` ``active_tape().saved_for(self)``. New leaf types are added with
:func:`register_gn_rule`.

Dtype: ``H`` is propagated in the logits' dtype, promoted to at least float32 (half and bfloat16
forwards get a float32 sweep, outside autocast); switch curvatures are summed in float64.

.. note::
   Departures from the official code's pass, all defects there: the output curvature keeps all
   classes (official: the target class only); stride-2 and dilated convolutions are propagated
   with their true stride and dilation (official: as stride 1, one dilated tap); the average
   pool factor is ``1/k^4`` per window (official: 0.5 for the head's 8x8 pool); and the sweep is
   whole-tensor ops (official: Python loops over batch x position x group).

.. note::
   BatchNorm in train mode is treated in its affine view: the batch mean and variance are held
   fixed, so the dependence of the statistics on the input (which couples the samples of a
   batch) is dropped. :mod:`bayesnas_book.curvature.exact` keeps it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bayesnas_book.space.edge import SwitchedEdge
from bayesnas_book.space.switch import Switch

__all__ = [
    "GNRule",
    "GNSaver",
    "GNTape",
    "active_tape",
    "batch_variance",
    "batchnorm_gn_scale",
    "batchnorm_uses_batch_stats",
    "capture",
    "conv2d_gn_backward",
    "curvature_dtype",
    "gn_backward",
    "iter_switches",
    "register_gn_rule",
    "softmax_cross_entropy_gn",
    "supported_module_types",
    "switched_edge_branches_gn_backward",
]

GNRule = Callable[[nn.Module, torch.Tensor, "GNTape"], torch.Tensor]
"""``rule(module, H_out, tape) -> H_in``."""
GNSaver = Callable[[nn.Module, "GNTape", tuple, Any], Any]
"""``saver(module, tape, inputs, output)``, a forward hook; may return a replaced output."""

_ACTIVE_TAPE: contextvars.ContextVar[GNTape | None] = contextvars.ContextVar(
    "bayesnas_gn_tape", default=None
)


def curvature_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the sweep runs in: ``dtype`` promoted to at least float32."""
    if dtype == torch.float64:
        return torch.float64
    return torch.float32


# --------------------------------------------------------------------------------------------
# the tape: what the forward saved, and what the sweep collects
# --------------------------------------------------------------------------------------------


class GNTape:
    """Records one forward pass for one diagonal Gauss-Newton sweep.

    Use as a context manager around exactly one forward (see :func:`capture`). Inside the
    ``with`` block, forward hooks on the modules that have a saver store only what their rule
    needs: layer inputs' shapes, ReLU masks, BN variances, max-pool argmax indices, switch
    inputs (and Linear inputs when ``parameter_curvature``). Nothing is saved outside it.

    Args:
        model: the network; hooks go on its submodules.
        parameter_curvature: also collect the diagonal GN curvature of Linear weights and biases
            into :attr:`parameter_curvature` (saves each Linear input).

    Attributes:
        switch_curvature: ``Switch -> 0-d float64 tensor``, filled by :meth:`backward`.
        parameter_curvature: ``Linear -> {"weight": (out, in), "bias": (out,)}``.
    """

    def __init__(self, model: nn.Module, parameter_curvature: bool = False) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.parameter_curvature_requested = bool(parameter_curvature)
        self.switch_curvature: dict[Switch, torch.Tensor] = {}
        self.parameter_curvature: dict[nn.Module, dict[str, torch.Tensor]] = {}
        self._saved: dict[nn.Module, dict[str, Any]] = {}
        self._names = {m: n for n, m in model.named_modules()}
        self._handles: list[Any] = []
        self._restore: list[Callable[[], None]] = []
        self._token: contextvars.Token | None = None

    # -- recording -----------------------------------------------------------------------

    def __enter__(self) -> GNTape:
        if self._token is not None:
            raise RuntimeError("this GNTape is already recording; use one tape per forward")
        self._saved.clear()
        for module in self.model.modules():
            if callable(getattr(module, "gn_backward", None)):
                continue
            entry = _lookup(type(module))
            if entry is None or entry[1] is None:
                continue
            saver = entry[1]
            self._handles.append(module.register_forward_hook(self._make_hook(saver)))
            pre = _PRE_HOOKS.get(_lookup_type(type(module)))
            if pre is not None:
                self._handles.append(module.register_forward_pre_hook(pre(self)))
        self._token = _ACTIVE_TAPE.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for restore in self._restore:
            restore()
        self._restore.clear()
        if self._token is not None:
            _ACTIVE_TAPE.reset(self._token)
            self._token = None

    def _make_hook(self, saver: GNSaver) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Any) -> Any:
            return saver(module, self, inputs, output)

        return hook

    def name_of(self, module: nn.Module) -> str:
        """The module's name in the model (``"<model>"`` for the root)."""
        name = self._names.get(module)
        if name is None:
            return f"<unnamed {type(module).__name__}>"
        return name or "<model>"

    def save(self, module: nn.Module, **values: Any) -> None:
        """Store ``values`` for ``module``'s rule.

        Raises:
            RuntimeError: if ``module`` already saved in this forward (a module called twice
                would need one record per call, which the recursion does not support).
        """
        if module in self._saved:
            raise RuntimeError(
                f"module {self.name_of(module)!r} ({type(module).__name__}) ran twice in one "
                "captured forward; the recursion needs each module called once per forward "
                "(use separate module instances)"
            )
        self._saved[module] = values

    def saved_for(self, module: nn.Module) -> dict[str, Any]:
        """What ``module`` saved in the captured forward.

        Raises:
            RuntimeError: if it saved nothing (it did not run inside the ``with`` block).
        """
        try:
            return self._saved[module]
        except KeyError:
            raise RuntimeError(
                f"module {self.name_of(module)!r} ({type(module).__name__}) saved nothing: run "
                "the forward inside `with capture(model):` before the sweep"
            ) from None

    def has_saved(self, module: nn.Module) -> bool:
        """Whether ``module`` saved something in the captured forward."""
        return module in self._saved

    def clear(self) -> None:
        """Free the saved tensors (the collected curvatures stay)."""
        self._saved.clear()

    def on_exit(self, restore: Callable[[], None]) -> None:
        """Register a callable that undoes a temporary module change when recording ends."""
        self._restore.append(restore)

    # -- the sweep -----------------------------------------------------------------------

    def backward(self, H_out: torch.Tensor, module: nn.Module | None = None) -> torch.Tensor:
        """Run the diagonal GN sweep from ``module``'s output (default: the whole model).

        Resets and fills :attr:`switch_curvature` (and :attr:`parameter_curvature`).

        Args:
            H_out: the diagonal curvature at the output, e.g. ``(B, classes)`` from
                :func:`softmax_cross_entropy_gn`; non-negative.

        Returns:
            ``H_in``, the diagonal curvature at the model input, e.g. ``(B, C, H, W)``.

        Raises:
            RuntimeError: if called while still recording, or for a module without a rule.
        """
        if self._token is not None:
            raise RuntimeError("finish the forward (leave the `with capture(...)` block) first")
        if not isinstance(H_out, torch.Tensor):
            raise TypeError(f"`H_out` must be a tensor, got {type(H_out).__name__}")
        self.switch_curvature = {}
        self.parameter_curvature = {}
        H = H_out.detach().to(curvature_dtype(H_out.dtype))
        token = _ACTIVE_TAPE.set(self)
        try:
            with torch.no_grad(), torch.autocast(H.device.type, enabled=False):
                return gn_backward(self.model if module is None else module, H)
        finally:
            _ACTIVE_TAPE.reset(token)

    def add_switch_curvature(self, module: Switch, value: torch.Tensor) -> None:
        """Accumulate ``value`` (0-d) into ``module``'s curvature, in float64."""
        value = value.detach().to(torch.float64)
        if module in self.switch_curvature:
            self.switch_curvature[module] = self.switch_curvature[module] + value
        else:
            self.switch_curvature[module] = value


def capture(model: nn.Module, parameter_curvature: bool = False) -> GNTape:
    """A :class:`GNTape` for ``model``: ``with capture(model) as tape: logits = model(x)``."""
    return GNTape(model, parameter_curvature=parameter_curvature)


def active_tape() -> GNTape | None:
    """The tape recording now or sweeping now, else ``None``."""
    return _ACTIVE_TAPE.get()


# --------------------------------------------------------------------------------------------
# the rule table and the dispatcher
# --------------------------------------------------------------------------------------------

_RULES: dict[type, tuple[GNRule, GNSaver | None]] = {}
_PRE_HOOKS: dict[type, Callable[[GNTape], Callable]] = {}


def register_gn_rule(
    module_type: type, rule: GNRule, saver: GNSaver | None = None, *, replace: bool = False
) -> None:
    """Add the diagonal GN rule of a leaf module type (subclasses inherit it).

    Args:
        module_type: an ``nn.Module`` subclass.
        rule: ``rule(module, H_out, tape) -> H_in``, whole-tensor ops, never in place on ``H_out``.
        saver: a forward hook ``saver(module, tape, inputs, output)`` storing what ``rule`` needs
            with ``tape.save(module, ...)``; ``None`` if the rule needs nothing saved.
        replace: allow overwriting an existing rule.

    Raises:
        ValueError: if ``module_type`` already has a rule and ``replace`` is false.
        TypeError: if ``module_type`` is not an ``nn.Module`` subclass.
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"`module_type` must be an nn.Module subclass, got {module_type!r}")
    if module_type in _RULES and not replace:
        raise ValueError(
            f"{module_type.__name__} already has a Gauss-Newton rule; "
            "pass replace=True to change it"
        )
    _RULES[module_type] = (rule, saver)


def supported_module_types() -> tuple[str, ...]:
    """Names of the module types that have a rule."""
    return tuple(sorted(t.__name__ for t in _RULES))


def _lookup_type(module_type: type) -> type | None:
    for base in module_type.__mro__:
        if base in _RULES:
            return base
    return None


def _lookup(module_type: type) -> tuple[GNRule, GNSaver | None] | None:
    base = _lookup_type(module_type)
    return None if base is None else _RULES[base]


def gn_backward(module: nn.Module, H_out: torch.Tensor) -> torch.Tensor:
    """Propagate a diagonal curvature through ``module``, from its output to its input.

    Call it during :meth:`GNTape.backward` (composites call it on their children). A module
    with a ``gn_backward(H_out)`` method handles itself; otherwise the rule of its type is used.

    Args:
        module: a module that ran in the captured forward.
        H_out: ``H`` at the module output, the output's shape (e.g. ``(B, C, H, W)``).

    Returns:
        ``H`` at the module input, the input's shape.

    Raises:
        RuntimeError: outside a sweep, or if the module type has no rule.
    """
    tape = _ACTIVE_TAPE.get()
    if tape is None:
        raise RuntimeError("gn_backward must be called inside GNTape.backward (a curvature sweep)")
    method = getattr(module, "gn_backward", None)
    if callable(method):
        return method(H_out)
    entry = _lookup(type(module))
    if entry is None:
        raise RuntimeError(
            f"no Gauss-Newton rule for {type(module).__name__} (module {tape.name_of(module)!r}); "
            f"supported: {', '.join(supported_module_types())}; or give the module a "
            "`gn_backward(self, H_out) -> H_in` method (see bayesnas_book.curvature.recursion)"
        )
    return entry[0](module, H_out, tape)


# --------------------------------------------------------------------------------------------
# the output: softmax cross-entropy
# --------------------------------------------------------------------------------------------


def softmax_cross_entropy_gn(logits: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Diagonal of ``Lambda = d2 CE / dz2`` per sample: ``p_c (1 - p_c)``, all classes.

    Args:
        logits: ``z``, ``(B, classes)``.
        reduction: ``"mean"`` (the loss is averaged over the batch: divide by ``B``) or ``"sum"``.

    Returns:
        ``(B, classes)``, non-negative, in :func:`curvature_dtype` of the logits.

    Raises:
        ValueError: for logits that are not 2-D or an unknown ``reduction``.

    .. note::
       The official code keeps only the target class's ``p_y (1 - p_y)``; the GN diagonal does
       not depend on the labels and has every class.
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
        raise ValueError(f"`logits` must have shape (B, classes), got {shape}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"`reduction` must be 'mean' or 'sum', got {reduction!r}")
    p = torch.softmax(logits.detach().to(curvature_dtype(logits.dtype)), dim=1)  # (B, classes)
    H = p * (1.0 - p)  # Lambda_cc = p_c (1 - p_c)
    if reduction == "mean":
        H = H / logits.shape[0]
    return H


# --------------------------------------------------------------------------------------------
# leaf rules
# --------------------------------------------------------------------------------------------


def _pair(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _weight(module: nn.Module, H: torch.Tensor) -> torch.Tensor:
    return module.weight.detach().to(H.dtype)


def _save_input_shape(module: nn.Module, tape: GNTape, inputs: tuple, output: Any) -> None:
    tape.save(module, input_shape=tuple(inputs[0].shape))


# Linear ------------------------------------------------------------------------------------


def _save_linear(module: nn.Module, tape: GNTape, inputs: tuple, output: Any) -> None:
    if tape.parameter_curvature_requested:
        tape.save(module, input=inputs[0].detach())


def _linear_rule(module: nn.Linear, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    W = _weight(module, H_out)  # (out, in)
    if tape.parameter_curvature_requested:
        x = tape.saved_for(module)["input"].to(H_out.dtype)  # (..., in)
        Hf = H_out.reshape(-1, H_out.shape[-1])  # (N, out)
        xf2 = x.reshape(-1, x.shape[-1]).square()  # (N, in)
        entry = {"weight": Hf.T @ xf2}  # sum_b H_out[b, i] x[b, j]^2 -> (out, in)
        if module.bias is not None:
            entry["bias"] = Hf.sum(0)  # (out,)
        tape.parameter_curvature[module] = entry
    return H_out @ W.square()  # H_in[j] = sum_i W_ij^2 H_out[i] -> (..., in)


# Conv2d ------------------------------------------------------------------------------------


def conv2d_gn_backward(
    H_out: torch.Tensor,
    weight: torch.Tensor,
    stride: tuple[int, int] | int,
    padding: tuple[int, int] | int,
    dilation: tuple[int, int] | int,
    groups: int,
    in_shape: tuple[int, ...],
) -> torch.Tensor:
    """The Conv2d rule as a function: ``H_in = conv^T(H_out, W^2)``.

    Args:
        H_out: ``(B, C_out, H', W')``.
        weight: the conv weight ``(C_out, C_in / groups, kh, kw)`` (squared here).
        stride, padding, dilation, groups: the forward conv's (integer padding, zeros).
        in_shape: the forward input's shape ``(B, C_in, H, W)``.

    Returns:
        ``(B, C_in, H, W)``: ``sum`` over the outputs each input feeds of ``W^2 * H_out``.
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    kernel = weight.shape[-2:]
    # output_padding recovers the exact input size that stride-s flooring lost
    output_padding = tuple(
        in_shape[-2 + d]
        - ((H_out.shape[-2 + d] - 1) * stride[d] - 2 * padding[d] + dilation[d] * (kernel[d] - 1) + 1)
        for d in range(2)
    )
    H_in = F.conv_transpose2d(
        H_out, weight.detach().to(H_out.dtype).square(), None, stride, padding, output_padding, groups, dilation
    )
    assert tuple(H_in.shape[-3:]) == tuple(in_shape[-3:]), (H_in.shape, in_shape)
    return H_in


def _conv2d_rule(module: nn.Conv2d, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    if isinstance(module.padding, str):
        raise RuntimeError(
            f"Conv2d {tape.name_of(module)!r}: string padding {module.padding!r} is not "
            "supported by the curvature rule; use integer padding or an explicit ZeroPad2d"
        )
    if module.padding_mode != "zeros":
        raise RuntimeError(
            f"Conv2d {tape.name_of(module)!r}: padding_mode {module.padding_mode!r} is not "
            "supported by the curvature rule; use 'zeros'"
        )
    in_shape = tape.saved_for(module)["input_shape"]
    squeeze = H_out.ndim == 3  # unbatched (C, H, W)
    if squeeze:
        H_out = H_out.unsqueeze(0)
        in_shape = (1, *in_shape)
    H_in = conv2d_gn_backward(
        H_out, module.weight, module.stride, module.padding, module.dilation, module.groups, in_shape
    )
    return H_in.squeeze(0) if squeeze else H_in


# BatchNorm ---------------------------------------------------------------------------------


def batchnorm_uses_batch_stats(module: nn.modules.batchnorm._BatchNorm) -> bool:
    """Whether ``module`` normalises with batch statistics now (the decision of ``_BatchNorm.forward``)."""
    return module.training or (module.running_mean is None and module.running_var is None)


def batch_variance(x: torch.Tensor) -> torch.Tensor:
    """The biased per-channel variance BN normalises ``x`` ``(B, C, ...)`` with, ``(C,)``, in the sweep's dtype."""
    x = x.detach()
    dims = [0] + list(range(2, x.ndim))  # all but the channel dim
    return x.to(curvature_dtype(x.dtype)).var(dim=dims, unbiased=False)


def batchnorm_gn_scale(var: torch.Tensor, eps: float, weight: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """The BN rule's per-channel factor in its affine view: ``w^2 / (var + eps)`` (``1 / (var + eps)`` without ``w``)."""
    scale = 1.0 / (var.detach().to(dtype) + eps)
    if weight is not None:
        scale = scale * weight.detach().to(dtype).square()
    return scale


def _save_batchnorm(module: nn.Module, tape: GNTape, inputs: tuple, output: Any) -> None:
    tape.save(module, var=batch_variance(inputs[0]) if batchnorm_uses_batch_stats(module) else None)


def _batchnorm_rule(module: nn.Module, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    var = tape.saved_for(module)["var"]
    scale = batchnorm_gn_scale(module.running_var if var is None else var, module.eps, module.weight, H_out.dtype)  # (C,)
    shape = [1, -1] + [1] * (H_out.ndim - 2)  # broadcast over (B, C, ...)
    return H_out * scale.view(shape)


# ReLU --------------------------------------------------------------------------------------


def _save_relu(module: nn.Module, tape: GNTape, inputs: tuple, output: Any) -> None:
    # output > 0 iff pre-activation > 0 (also true for an in-place ReLU)
    tape.save(module, mask=output.detach() > 0)


def _relu_rule(module: nn.Module, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    return H_out * tape.saved_for(module)["mask"]  # J = 1[x > 0], J^2 = J


# ZeroPad2d, Identity, Flatten, Dropout -----------------------------------------------------


def _zeropad_rule(module: nn.ZeroPad2d, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    # F.pad with negated widths crops what the forward padded (and re-pads what it cropped)
    return F.pad(H_out, [-p for p in module.padding])


def _identity_rule(module: nn.Module, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    return H_out


def _dropout_rule(module: nn.Module, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    if module.training and module.p > 0:
        raise RuntimeError(
            f"{type(module).__name__} {tape.name_of(module)!r} is active (train mode, p > 0): "
            "its random mask is not recorded; call model.eval() on it or set p=0"
        )
    return H_out


def _flatten_rule(module: nn.Module, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    return H_out.reshape(tape.saved_for(module)["input_shape"])


# Pooling -----------------------------------------------------------------------------------


def _maxpool_pre_hook(tape: GNTape) -> Callable:
    """Ask MaxPool2d for its argmax indices during the captured forward (no recomputation)."""

    def pre_hook(module: nn.MaxPool2d, inputs: tuple) -> None:
        if module.return_indices:
            raise RuntimeError(
                f"MaxPool2d {tape.name_of(module)!r} already returns indices; the curvature "
                "capture supports return_indices=False only"
            )
        module.return_indices = True

        def restore() -> None:
            module.return_indices = False

        tape.on_exit(restore)

    return pre_hook


def _save_maxpool(module: nn.Module, tape: GNTape, inputs: tuple, output: Any) -> torch.Tensor:
    out, indices = output  # return_indices was switched on by the pre-hook
    module.return_indices = False
    tape.save(module, indices=indices, input_shape=tuple(inputs[0].shape))
    return out  # the forward sees the plain output


def _maxpool_rule(module: nn.MaxPool2d, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    saved = tape.saved_for(module)
    in_shape = saved["input_shape"]
    idx = saved["indices"].flatten(-2)  # (B, C, Ho*Wo), flat index into H*W
    Hf = H_out.flatten(-2)  # (B, C, Ho*Wo)
    H_in = H_out.new_zeros((*in_shape[:-2], in_shape[-2] * in_shape[-1]))  # (B, C, H*W)
    H_in.scatter_add_(-1, idx, Hf)  # J = 1 at the argmax: route, adding where windows overlap
    return H_in.view(in_shape)


def _avgpool_rule(module: nn.AvgPool2d, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    name = tape.name_of(module)
    kernel = _pair(module.kernel_size)
    stride = _pair(module.stride if module.stride is not None else kernel)
    padding = _pair(module.padding)
    if module.ceil_mode:
        raise RuntimeError(f"AvgPool2d {name!r}: ceil_mode=True is not supported by the rule")
    if any(padding) and not module.count_include_pad and module.divisor_override is None:
        raise RuntimeError(
            f"AvgPool2d {name!r}: count_include_pad=False with padding gives border windows a "
            "different divisor, which the rule does not support; pad with ZeroPad2d instead"
        )
    in_shape = tape.saved_for(module)["input_shape"]
    divisor = module.divisor_override or kernel[0] * kernel[1]  # k^2
    lead = H_out.shape[:-2]
    Hf = H_out.reshape(-1, 1, *H_out.shape[-2:])  # (B*C, 1, Ho, Wo)
    ones = H_out.new_full((1, 1, *kernel), 1.0 / divisor**2)  # J^2 = 1/k^4 on every window tap
    output_padding = tuple(
        in_shape[-2 + d] - ((H_out.shape[-2 + d] - 1) * stride[d] - 2 * padding[d] + kernel[d])
        for d in range(2)
    )
    H_in = F.conv_transpose2d(Hf, ones, None, stride, padding, output_padding)  # (B*C, 1, H, W)
    return H_in.reshape(*lead, *in_shape[-2:])


def _adaptive_avgpool_rule(
    module: nn.AdaptiveAvgPool2d, H_out: torch.Tensor, tape: GNTape
) -> torch.Tensor:
    if _pair(module.output_size) != (1, 1):
        raise RuntimeError(
            f"AdaptiveAvgPool2d {tape.name_of(module)!r}: only output_size=1 (global average "
            f"pooling) is supported, got {module.output_size!r}"
        )
    in_shape = tape.saved_for(module)["input_shape"]
    n = in_shape[-1] * in_shape[-2]  # H W positions, each with J = 1 / (H W)
    return (H_out / n**2).expand(in_shape)  # (B, C, 1, 1) -> (B, C, H, W)


# Switch and SwitchedEdge -------------------------------------------------------------------


def _save_switch(module: nn.Module, tape: GNTape, inputs: tuple, output: Any) -> None:
    tape.save(module, z=inputs[0].detach())


def _switch_rule(module: Switch, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    z = tape.saved_for(module)["z"].to(H_out.dtype)
    # d2L/ds2 ~= sum over batch and positions of z^2 H_y   (dy/ds = z)
    tape.add_switch_curvature(module, torch.sum(z.square() * H_out, dtype=torch.float64))
    s = module.value.detach().to(H_out.dtype)
    return H_out * s.square()  # H_z = s^2 H_y


def switched_edge_branches_gn_backward(
    edge: SwitchedEdge, H_out: torch.Tensor, op_names: Sequence[str]
) -> torch.Tensor | None:
    """Curvature at the edge's ``u = sbar * x`` from the branches ``op_names`` (``None`` if none).

    Collects each branch's child-switch curvature on the way; the branches meet at ``u``: add.
    """
    H_u = None
    for name in op_names:
        H_branch = gn_backward(edge.ops[name], gn_backward(edge.switches[name], H_out))
        H_u = H_branch if H_u is None else H_u + H_branch
    return H_u


def _switched_edge_rule(module: SwitchedEdge, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    return gn_backward(module.parent, switched_edge_branches_gn_backward(module, H_out, module.op_names))


# Sequential --------------------------------------------------------------------------------


def _sequential_rule(module: nn.Sequential, H_out: torch.Tensor, tape: GNTape) -> torch.Tensor:
    H = H_out
    for child in reversed(module):
        H = gn_backward(child, H)
    return H


register_gn_rule(nn.Linear, _linear_rule, _save_linear)
register_gn_rule(nn.Conv2d, _conv2d_rule, _save_input_shape)
register_gn_rule(nn.modules.batchnorm._BatchNorm, _batchnorm_rule, _save_batchnorm)
register_gn_rule(nn.ReLU, _relu_rule, _save_relu)
register_gn_rule(nn.ZeroPad2d, _zeropad_rule)
register_gn_rule(nn.Identity, _identity_rule)
register_gn_rule(nn.modules.dropout._DropoutNd, _dropout_rule)
register_gn_rule(nn.Flatten, _flatten_rule, _save_input_shape)
register_gn_rule(nn.MaxPool2d, _maxpool_rule, _save_maxpool)
_PRE_HOOKS[nn.MaxPool2d] = _maxpool_pre_hook
register_gn_rule(nn.AvgPool2d, _avgpool_rule, _save_input_shape)
register_gn_rule(nn.AdaptiveAvgPool2d, _adaptive_avgpool_rule, _save_input_shape)
register_gn_rule(Switch, _switch_rule, _save_switch)
register_gn_rule(SwitchedEdge, _switched_edge_rule)
register_gn_rule(nn.Sequential, _sequential_rule)


def iter_switches(model: nn.Module) -> Iterator[tuple[str, Switch]]:
    """``(name, switch)`` for every :class:`Switch` in ``model.named_modules()`` order."""
    for name, module in model.named_modules():
        if isinstance(module, Switch):
            yield name, module
