r"""An interactive explorer of one BayesNAS architecture update, and its static figure.

The explorer plays one round of Algorithm 1 on a *quadratic model* of the loss, so that every
slider has its own effect and the whole round runs in milliseconds:

1. **Switch epoch.** Around the switches ``s*`` that minimise the (mean) NLL alone, the NLL is
   modelled by its second-order expansion with its diagonal Gauss-Newton curvature ``H``::

       s = argmin_s  sum_{n,e,c} H / 2 * (s - s*)^2  +  sum_g lambda * omega_0 * ||s_g||_2

   (:func:`quadratic_switch_epoch`, with ``omega_0`` of :func:`~bayesnas_book.bayes.laplace.
   initial_state`). lambda shrinks the switches, whole groups to exactly zero.
2. **Laplace update** (:func:`~bayesnas_book.bayes.laplace.laplace_update`) with a curvature
   *estimate* ``kappa * H`` (``curvature_scale`` kappa; 1 is the true curvature) and
   ``lambda_o = lambda_c = lambda``: ``C = (1/gamma + kappa H / lambda)^-1``, ``omega``,
   ``gamma = ||s_g|| / omega`` and the HARD coupling.
3. **Entropy pruning** (:func:`~bayesnas_book.bayes.pruning.prune`) at ``threshold``.

For a linear model with Gaussian noise the quadratic model is exact; for a network it is the
picture the Laplace approximation itself draws. kappa only enters the update: the switch epoch
sees the loss's own curvature, so kappa shows what a mis-scaled curvature estimate (a wrong
pooling factor, a summed instead of a mean NLL) does to the architecture. (Scaling the loss
itself would change nothing but the meaning of lambda: only ``H / lambda`` matters.)
:func:`explore_update` runs the round, :func:`explorer_figure` draws it (the book's static
figure), and :class:`LaplaceExplorer` wraps both in ipywidgets sliders for lambda, kappa and the
threshold.

.. note::
    The quadratic model stands in for real switch training so that the explorer needs no data
    and no network; chapter 6 runs the real thing. It is a teaching device, not part of the
    paper's method.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor

from bayesnas_book.bayes.hard import group_norms
from bayesnas_book.bayes.laplace import LaplaceResult, laplace_update, penalty_weights
from bayesnas_book.bayes.pruning import (
    DEFAULT_THRESHOLD,
    KEPT,
    PruningError,
    PruningResult,
    prune,
)
from bayesnas_book.space.graph import CellGraph
from bayesnas_book.validation import check_positive
from bayesnas_book.viz import _OP_SHORT  # the cell drawings' op abbreviations, one table

__all__ = [
    "ExplorerState",
    "LaplaceExplorer",
    "explore_update",
    "explorer_figure",
    "figure_png",
    "kept_pairs_sweep",
    "quadratic_switch_epoch",
]



# -- input checks ---------------------------------------------------------------------------------
def _check_quadratic(optimum: Tensor, curvature: Tensor) -> None:
    if not isinstance(optimum, Tensor) or optimum.dim() != 3:
        got = tuple(optimum.shape) if isinstance(optimum, Tensor) else type(optimum).__name__
        raise ValueError(f"`optimum` must have shape (N, E, 1 + K), got {got}")
    if not isinstance(curvature, Tensor) or tuple(curvature.shape) != tuple(optimum.shape):
        got = tuple(curvature.shape) if isinstance(curvature, Tensor) else type(curvature).__name__
        raise ValueError(
            f"`curvature` must have the shape of `optimum` {tuple(optimum.shape)}, got {got}"
        )
    if not bool(torch.isfinite(optimum).all()):
        raise ValueError("`optimum` must be finite")
    if not bool(torch.isfinite(curvature).all()) or not bool((curvature > 0).all()):
        raise ValueError(
            "`curvature` must be finite and > 0 everywhere (the quadratic model needs a "
            f"positive curvature), got min {float(curvature.min())}"
        )


# -- the switch epoch on the quadratic model ------------------------------------------------------
def quadratic_switch_epoch(
    optimum: Tensor,
    curvature: Tensor,
    weights: Tensor,
    *,
    tol: float = 1e-12,
    max_iter: int = 20_000,
) -> Tensor:
    """Minimise ``sum H/2 (s - s*)^2 + sum_g weight_g ||s_g||_2`` over the switches.

    Proximal gradient per group g (the N switch values of one (edge, column) across the cells):
    step ``t_g = 1 / max_n H_{n,g}``, a gradient step on the quadratic, then group
    soft-thresholding ``z_g * max(0, 1 - t_g * weight_g / ||z_g||)``. The problem is strongly
    convex, so the iteration converges linearly to the unique minimiser.

    Args:
        optimum: ``s*``, the minimiser of the quadratic alone, ``(N, E, 1 + K)``.
        curvature: ``H``, its diagonal curvature, ``(N, E, 1 + K)``, all > 0.
        weights: penalty weight of each group (:func:`~bayesnas_book.bayes.laplace.
            penalty_weights`), ``(E, 1 + K)``, >= 0.
        tol: stop when no switch moves by more than ``tol * max(1, max |s|)``; > 0.
        max_iter: the most iterations, >= 1.

    Returns:
        The switches ``s``, ``(N, E, 1 + K)``; groups with ``||H_g * s*_g|| <= weight_g`` are
        exactly zero.

    Raises:
        ValueError: for shapes that do not match, a non-positive or non-finite curvature, a
            negative weight, or a bad ``tol`` / ``max_iter``.
    """
    _check_quadratic(optimum, curvature)
    if not isinstance(weights, Tensor) or tuple(weights.shape) != tuple(optimum.shape[1:]):
        got = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
        raise ValueError(
            f"`weights` must have shape (E, 1 + K) = {tuple(optimum.shape[1:])}, got {got}"
        )
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError("`weights` must be finite and >= 0")
    tol = check_positive("tol", tol)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"`max_iter` must be an integer >= 1, got {max_iter!r}")
    H = curvature.detach()
    target = optimum.detach()
    step = 1.0 / H.amax(dim=0)  # t_g = 1 / max_n H_{n,g}                       (E, 1+K)
    threshold = step * weights.detach().to(H.dtype)  # t_g * weight_g               (E, 1+K)
    s = target.clone()
    for _ in range(max_iter):
        z = s - step * H * (s - target)  # gradient step on the quadratic           (N, E, 1+K)
        norm = group_norms(z)  # ||z_g||                                              (E, 1+K)
        shrink = torch.where(norm > threshold, 1.0 - threshold / norm, torch.zeros_like(norm))
        s_next = z * shrink  # group soft-thresholding                               (N, E, 1+K)
        moved = float((s_next - s).abs().max())
        s = s_next
        if moved <= tol * max(1.0, float(s.abs().max())):
            break
    return s


# -- one round ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExplorerState:
    """One round of the explorer: the trained switches, the update and the pruning.

    Attributes:
        graph: the cell graph.
        lambd: lambda (``lambda_o = lambda_c``).
        curvature_scale: kappa, the factor on the curvature.
        threshold: the entropy rule's gamma threshold.
        switches: s after the switch epoch, ``(N, E, 1 + K)``.
        update: the :class:`~bayesnas_book.bayes.laplace.LaplaceResult`.
        pruning: the :class:`~bayesnas_book.bayes.pruning.PruningResult`, or ``None`` when the
            rule would prune every edge (then ``message`` says so).
        message: the :class:`~bayesnas_book.bayes.pruning.PruningError` text, or ``""``.
    """

    graph: CellGraph
    lambd: float
    curvature_scale: float
    threshold: float
    switches: Tensor
    update: LaplaceResult
    pruning: PruningResult | None
    message: str = ""

    @property
    def keep(self) -> Tensor:
        """bool ``(E, 1 + K)``: the final keep mask (all False when everything was pruned)."""
        if self.pruning is None:
            return torch.zeros(self.update.gamma.shape, dtype=torch.bool)
        return self.pruning.keep

    @property
    def num_kept_pairs(self) -> int:
        """How many (edge, op) pairs survive."""
        if self.pruning is None:
            return 0
        return self.pruning.counts()[KEPT]

    def summary(self) -> str:
        """A short text report of the round."""
        gamma = self.update.gamma
        head = (
            f"lambda = {self.lambd:.3g}, curvature scale = {self.curvature_scale:.3g}, "
            f"threshold = {self.threshold:.4g}\n"
            f"gamma in [{float(gamma.min()):.3g}, {float(gamma.max()):.3g}], "
            f"C in [{float(self.update.C.min()):.3g}, {float(self.update.C.max()):.3g}], "
            f"zero switch groups: {int((self.update.norms == 0).sum())} of {gamma.numel()}"
        )
        body = self.pruning.summary() if self.pruning is not None else self.message
        return f"{head}\n{body}"


def explore_update(
    graph: CellGraph,
    optimum: Tensor,
    curvature: Tensor,
    *,
    lambd: float,
    curvature_scale: float = 1.0,
    threshold: float = DEFAULT_THRESHOLD,
    prior_variance: Tensor | None = None,
    reweighting: Tensor | None = None,
) -> ExplorerState:
    """One BayesNAS round on the quadratic model (module docstring).

    Args:
        graph: the cell graph.
        optimum: ``s*``, ``(N, E, 1 + K)``.
        curvature: ``H``, the diagonal curvature of the mean NLL at ``s*``, ``(N, E, 1 + K)``,
            all > 0.
        lambd: lambda, used as both ``lambda_o`` and ``lambda_c``; > 0.
        curvature_scale: kappa, multiplies ``H`` in the update (not in the switch epoch); > 0.
        threshold: entropy rule threshold on gamma, in ``(0, inf)``.
        prior_variance: gamma before the update, ``(E, 1 + K)``; default all ones (gamma_0).
        reweighting: omega of the switch epoch, ``(E, 1 + K)``; default all ones (omega_0).

    Returns:
        An :class:`ExplorerState`.

    Raises:
        ValueError: for a bad lambda, curvature scale or threshold, or inputs whose shapes do
            not fit ``graph``.
    """
    lambd = check_positive("lambd", lambd)
    curvature_scale = check_positive("curvature_scale", curvature_scale)
    _check_quadratic(optimum, curvature)
    expected = (graph.num_edges, 1 + graph.num_ops)
    if tuple(optimum.shape[1:]) != expected:
        raise ValueError(
            f"`optimum` must have shape (N, {expected[0]}, {expected[1]}) for {graph.name}, "
            f"got {tuple(optimum.shape)}"
        )
    ones = torch.ones(expected, dtype=optimum.dtype)
    gamma0 = ones if prior_variance is None else prior_variance
    omega0 = ones if reweighting is None else reweighting
    weights = penalty_weights(omega0, lambd, lambd)  # lambda * omega_0                (E, 1+K)
    s = quadratic_switch_epoch(optimum, curvature, weights)  # the loss's own curvature H
    estimate = curvature_scale * curvature  # kappa * H, the update's curvature estimate
    update = laplace_update(s, estimate, gamma0, lambd, lambd, graph=graph)
    try:
        pruning: PruningResult | None = prune(
            graph, update.gamma, threshold=threshold, lambda_o=lambd, lambda_c=lambd
        )
        message = ""
    except PruningError as error:
        pruning, message = None, str(error)
    return ExplorerState(
        graph=graph,
        lambd=lambd,
        curvature_scale=curvature_scale,
        threshold=float(threshold),
        switches=s,
        update=update,
        pruning=pruning,
        message=message,
    )


def kept_pairs_sweep(
    graph: CellGraph,
    optimum: Tensor,
    curvature: Tensor,
    lambdas: Sequence[float],
    *,
    curvature_scale: float = 1.0,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[int]:
    """Surviving (edge, op) pairs after :func:`explore_update` for each lambda of ``lambdas``."""
    return [
        explore_update(
            graph,
            optimum,
            curvature,
            lambd=lam,
            curvature_scale=curvature_scale,
            threshold=threshold,
        ).num_kept_pairs
        for lam in lambdas
    ]


# -- drawing --------------------------------------------------------------------------------------
#: Colour floor of the log10 gamma panel: smaller variances (pruned groups sit at the update's
#: floor, 1e-10) are drawn in the lowest colour.
_LOG10_GAMMA_FLOOR = -3.0


def _edge_label(name: str) -> str:
    """``"c_{k-1} -> node_0"`` as mathtext, ``"$c_{k-1}$ -> n0"``."""
    source, target = name.split(" -> ")
    source = f"${source}$" if source.startswith("c_") else source.replace("node_", "n")
    return f"{source} -> {target.replace('node_', 'n')}"


def _heatmap(
    ax: Any,
    values: Tensor,
    state: ExplorerState,
    title: str,
    label: str,
    *,
    vmin: float | None = None,
    line: float | None = None,
) -> None:
    """``values`` ``(E, 1 + K)`` as an image, crosses on the pruned pairs, a colour bar."""
    graph = state.graph
    image = ax.imshow(values.numpy(), cmap="viridis", aspect="auto", vmin=vmin)
    pruned = ~state.keep  # (E, 1+K)
    rows, cols = pruned.nonzero(as_tuple=True)
    ax.scatter(cols.numpy(), rows.numpy(), marker="x", c="white", s=45, linewidths=1.8)
    ax.set_xticks(range(1 + graph.num_ops))
    ax.set_xticklabels(["parent"] + [_OP_SHORT.get(op, op) for op in graph.ops], rotation=60)
    ax.set_yticks(range(graph.num_edges))
    ax.set_yticklabels([_edge_label(edge.name) for edge in graph.edges], fontsize=8)
    ax.set_title(title, fontsize=10)
    bar = ax.figure.colorbar(image, ax=ax, label=label, shrink=0.85)
    if line is not None:
        bar.ax.axhline(line, color="tab:red", lw=2)


def explorer_figure(state: ExplorerState, sweep: Sequence[tuple[float, int]] = ()) -> Figure:
    """The explorer's picture of one round: gamma, C and (optionally) a lambda sweep.

    Left: ``log10 gamma`` of every group (floored at -3 for the colours), the threshold as a red
    line on the colour bar, white crosses on the pruned (edge, op) pairs. Right: ``log10`` of
    the Laplace variance C averaged over the cells. Below (when ``sweep`` is given): surviving
    pairs against lambda, the current lambda marked.

    Args:
        state: from :func:`explore_update`.
        sweep: ``(lambda, kept pairs)`` points, e.g. from :func:`kept_pairs_sweep`.

    Returns:
        A matplotlib Figure (no pyplot state), fixed size.
    """
    # Two heat maps side by side and the sweep below them: three panels in a row shrink to
    # unreadable text in the book's column (issue 15).
    layout = [["gamma", "C"], ["sweep", "sweep"]] if sweep else [["gamma", "C"]]
    figure = Figure(figsize=(8.6, 8.4 if sweep else 4.6), layout="constrained")
    panels = figure.subplot_mosaic(layout, height_ratios=[1.25, 1] if sweep else None)
    axes = [panels["gamma"], panels["C"]] + ([panels["sweep"]] if sweep else [])
    log_gamma = torch.log10(state.update.gamma).clamp_min(_LOG10_GAMMA_FLOOR)
    _heatmap(
        axes[0],
        log_gamma,
        state,
        r"$\log_{10}\gamma$ (x: pruned, red: threshold)",
        r"$\log_{10}\gamma$",
        vmin=_LOG10_GAMMA_FLOOR,
        line=math.log10(state.threshold),
    )
    _heatmap(
        axes[1],
        torch.log10(state.update.C.mean(dim=0)),
        state,
        r"$\log_{10}$ of $C$ averaged over the cells",
        r"$\log_{10} C$",
    )
    axes[1].set_yticklabels([])
    if sweep:
        lams, kept = zip(*sweep, strict=True)
        ax = axes[2]
        ax.semilogx(lams, kept, "o-", ms=3)
        ax.axvline(state.lambd, color="tab:red", ls="--", label=rf"$\lambda$ = {state.lambd:.3g}")
        ax.set_xlabel(r"$\lambda$")
        ax.set_ylabel("surviving (edge, op) pairs")
        ax.set_title(rf"curvature scale $\kappa$ = {state.curvature_scale:.3g}", fontsize=10)
        ax.legend(fontsize=8)
    figure.suptitle(
        f"{state.graph.name}: {state.num_kept_pairs} of "
        f"{state.graph.num_edges * state.graph.num_ops} (edge, op) pairs kept",
        fontsize=11,
    )
    return figure


def figure_png(figure: Figure, dpi: int = 80) -> bytes:
    """The PNG bytes of ``figure``."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


# -- the widget -----------------------------------------------------------------------------------
class LaplaceExplorer:
    """Sliders for lambda, the curvature scale and the threshold over one BayesNAS round.

    Moving a slider reruns :func:`explore_update`; the figure (:func:`explorer_figure`, shown as
    a PNG) and the text summary update. Display the explorer by making it a cell's last value
    (or ``display(explorer.widget)``); with no display, set the sliders' ``value`` and read
    :attr:`state`, :attr:`summary` and :attr:`image` (what a test does).

    Args:
        graph: the cell graph.
        optimum: ``s*``, ``(N, E, 1 + K)``.
        curvature: ``H`` > 0, ``(N, E, 1 + K)``.
        lambd: initial lambda, inside ``lambda_range``.
        curvature_scale: initial kappa, inside ``scale_range``.
        threshold: initial threshold, inside ``threshold_range``.
        lambda_range: ``(low, high)`` of the lambda slider (log scale).
        scale_range: ``(low, high)`` of the curvature scale slider (log scale).
        threshold_range: ``(low, high)`` of the threshold slider (log scale).
        sweep_points: lambdas in the sweep panel (0: no sweep panel).

    Attributes:
        lambda_slider, scale_slider, threshold_slider: the ``FloatLogSlider`` widgets.
        summary: an ``HTML`` widget with :meth:`ExplorerState.summary`.
        image: an ``Image`` widget with the figure as PNG.
        widget: the whole ``VBox``.
        state: the current :class:`ExplorerState`.

    Raises:
        ValueError: as :func:`explore_update`, or for a range that is not ``0 < low < high`` or
            an initial value outside its range.
    """

    def __init__(
        self,
        graph: CellGraph,
        optimum: Tensor,
        curvature: Tensor,
        *,
        lambd: float = 0.01,
        curvature_scale: float = 1.0,
        threshold: float = DEFAULT_THRESHOLD,
        lambda_range: tuple[float, float] = (1e-4, 1.0),
        scale_range: tuple[float, float] = (1e-2, 1e2),
        threshold_range: tuple[float, float] = (1e-3, 1.0),
        sweep_points: int = 13,
    ) -> None:
        import ipywidgets as widgets  # imported here: the rest of the module needs no Jupyter

        _check_quadratic(optimum, curvature)
        if isinstance(sweep_points, bool) or not isinstance(sweep_points, int) or sweep_points < 0:
            raise ValueError(f"`sweep_points` must be an integer >= 0, got {sweep_points!r}")
        self.graph = graph
        self.optimum = optimum
        self.curvature = curvature
        self.sweep_points = sweep_points
        self._lambda_range = lambda_range
        sliders = []
        for name, value, bounds, text in (
            ("lambd", lambd, lambda_range, "lambda"),
            ("curvature_scale", curvature_scale, scale_range, "curv. scale"),
            ("threshold", threshold, threshold_range, "threshold"),
        ):
            low, high = bounds
            if not (0 < low < high < math.inf):
                raise ValueError(
                    f"the range of `{name}` must satisfy 0 < low < high < inf, got {bounds}"
                )
            value = check_positive(name, value)
            if not low <= value <= high:
                raise ValueError(f"`{name}` must lie in its range {bounds}, got {value}")
            sliders.append(
                widgets.FloatLogSlider(
                    value=value,
                    base=10,
                    min=math.log10(low),
                    max=math.log10(high),
                    step=0.05,
                    description=text,
                    readout_format=".3g",
                    continuous_update=False,
                )
            )
        self.lambda_slider, self.scale_slider, self.threshold_slider = sliders
        self.summary = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.widget = widgets.VBox([widgets.HBox(sliders), self.image, self.summary])
        self.state = self._run()
        self._draw()
        for slider in sliders:
            slider.observe(self._on_change, names="value")

    def _run(self) -> ExplorerState:
        return explore_update(
            self.graph,
            self.optimum,
            self.curvature,
            lambd=float(self.lambda_slider.value),
            curvature_scale=float(self.scale_slider.value),
            threshold=float(self.threshold_slider.value),
        )

    def sweep(self) -> list[tuple[float, int]]:
        """``(lambda, kept pairs)`` over the lambda slider's range at the current kappa."""
        if self.sweep_points == 0:
            return []
        low, high = self._lambda_range
        lams = torch.logspace(math.log10(low), math.log10(high), self.sweep_points).tolist()
        kept = kept_pairs_sweep(
            self.graph,
            self.optimum,
            self.curvature,
            lams,
            curvature_scale=self.state.curvature_scale,
            threshold=self.state.threshold,
        )
        return list(zip(lams, kept, strict=True))

    def figure(self) -> Figure:
        """The current figure (the same code draws the book's static figure)."""
        return explorer_figure(self.state, self.sweep())

    def _draw(self) -> None:
        self.image.value = figure_png(self.figure())
        self.summary.value = f"<pre>{html.escape(self.state.summary())}</pre>"

    def _on_change(self, change: Any) -> None:
        self.state = self._run()
        self._draw()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget view only: without a kernel (a static page) nothing shows, not the ``VBox(...)`` repr."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle["text/plain"] = ""  # IPython would otherwise add repr(self) as the plain-text fallback
        return bundle
