r"""The curvature methods side by side on one supernet: accuracy, pruning decisions, cost.

BayesNAS (Zhou et al., ICML 2019) needs the curvature ``H`` of the mean NLL in every switch for
its Laplace update (:func:`~bayesnas_book.bayes.laplace.laplace_update`); the library offers
several estimates (:mod:`bayesnas_book.curvature.api`). :func:`compare_curvature_methods`
computes each of them on the same batches and the same weights, and measures it against a
reference (by default the exact Gauss-Newton diagonal ``h_ref`` in train-mode BatchNorm, the
curvature of the loss the search actually minimises):

========================  =====================================================================
column                    definition
========================  =====================================================================
relative error            ``||h - h_ref||_2 / ||h_ref||_2`` over all ``S`` switches
norm ratio                ``||h||_2 / ||h_ref||_2`` (< 1: the method underestimates)
Pearson, Spearman         correlation of ``h`` and ``h_ref`` (Spearman: ranks, ties averaged)
agreement                 fraction of ARD groups whose entropy decision (prune iff
                          ``gamma <= threshold``) after one Laplace update from ``h`` equals
                          the decision from ``h_ref``; same switches, prior variance, lambdas
keep agreement            the same for the final keep mask of :func:`~bayesnas_book.bayes.
                          pruning.prune` (HARD parent rule and node rule included)
cost                      median seconds per batch over the median seconds of one training
                          forward + backward of the same batch, timed interleaved
========================  =====================================================================

The Laplace update here is one update per cell type with ``gamma`` from ``prior_variance``
(default: the deterministic start ``gamma_0 = 1`` of the search's first round), exactly as
:meth:`bayesnas_book.search.SearchRun.update` does it; the groups of both cell types are pooled
(``num_groups = sum over types of E * (1 + K)``).

A method is described by a :class:`MethodSpec`: a registered method name
(:data:`~bayesnas_book.curvature.api.CURVATURE_METHODS`), its options, and the BatchNorm mode it
runs in. ``batchnorm="eval"`` puts the model in eval mode for that method: BatchNorm then
normalises with its *running* statistics, an affine map with no batch coupling. It is the
curvature of a different function (the eval-mode network) at the same weights, shown as a
diagnostic: it separates the two errors of the train-mode recursion (the dropped cross terms,
and the batch-statistics coupling that the affine BN view ignores). The search itself takes the
curvature in train mode.

Timing: for every repeat and batch, one training forward + backward (train mode, running
statistics frozen, as :func:`~bayesnas_book.curvature.bench.benchmark_curvature`) is timed, then
every method on that batch, so load drifts hit all alike. The reference runs only in the first
repeat (it costs hundreds of forward + backward passes); the other methods run ``repeats`` times
after ``warmup`` untimed calls. The curvatures come from the first repeat; Monte-Carlo methods
draw from their own generator seeded by ``seed``, so the results do not depend on ``repeats``
or ``warmup``.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bayesnas_book.bayes.laplace import initial_state, laplace_update
from bayesnas_book.bayes.pruning import DEFAULT_THRESHOLD, PruningError, entropy_prune_mask, prune
from bayesnas_book.curvature.api import CURVATURE_METHODS, switch_curvature
from bayesnas_book.curvature.bench import _timed
from bayesnas_book.curvature.exact import batchnorm_stats_frozen
from bayesnas_book.space.supernet import CELL_TYPES, Supernet
from bayesnas_book.space.switch import Switch
from bayesnas_book.tables import Table
from bayesnas_book.validation import check_positive

__all__ = [
    "DEFAULT_METHODS",
    "EXACT_REFERENCE",
    "CurvatureComparison",
    "MethodResult",
    "MethodSpec",
    "compare_curvature_methods",
    "pearson",
    "spearman",
]

BATCHNORM_MODES = ("train", "eval")


@dataclass(frozen=True)
class MethodSpec:
    """One curvature method to compare.

    Args:
        label: the row's name in the table; unique within a comparison.
        method: a key of :data:`~bayesnas_book.curvature.api.CURVATURE_METHODS`
            (``"recursion"``, ``"exact_ggn"``, ``"mc_ggn"``, ``"hessian"``).
        options: keyword options of the method (``mc_ggn``: ``num_samples``, ``chunk_size``;
            ``exact_ggn``: ``mode``). A Monte-Carlo generator is made from the comparison's
            ``seed``: do not pass one.
        batchnorm: ``"train"`` (batch statistics, as the search) or ``"eval"`` (running
            statistics).
    """

    label: str
    method: str
    options: Mapping[str, Any] = field(default_factory=dict)
    batchnorm: str = "train"


#: The exact GGN diagonal in train mode: the curvature of the loss the search minimises.
EXACT_REFERENCE = MethodSpec("exact_ggn", "exact_ggn")

#: The methods compared by default: the recursion (train and eval BN) and Monte-Carlo GGN.
DEFAULT_METHODS: tuple[MethodSpec, ...] = (
    MethodSpec("recursion", "recursion"),
    MethodSpec("recursion, eval BN", "recursion", batchnorm="eval"),
    MethodSpec("mc_ggn x1", "mc_ggn", {"num_samples": 1}),
    MethodSpec("mc_ggn x4", "mc_ggn", {"num_samples": 4}),
)


@dataclass(frozen=True)
class MethodResult:
    """One method's row of a :class:`CurvatureComparison`.

    Attributes:
        label, method, batchnorm, options: from its :class:`MethodSpec`.
        diagonal: ``(S,)`` float64, the curvature per switch (batch-size-weighted mean).
        relative_error: ``||h - h_ref|| / ||h_ref||``.
        norm_ratio: ``||h|| / ||h_ref||``.
        pearson: Pearson correlation with ``h_ref``.
        spearman: Spearman (rank) correlation with ``h_ref``.
        agreement: fraction of groups with the reference's entropy decision, in [0, 1].
        keep_agreement: fraction of groups with the reference's final keep decision.
        pruned: groups the entropy rule prunes after one update from this curvature.
        prune_mask: bool ``(num_groups,)``, True where the entropy rule prunes (cell types in
            :data:`~bayesnas_book.space.supernet.CELL_TYPES` order, each ``(E, 1 + K)``
            flattened row-major).
        keep_mask: bool ``(num_groups,)``, the final keep mask of :func:`prune` (all False
            where it would prune every edge).
        seconds: median seconds per batch.
        cost_ratio: ``seconds`` over the median seconds of one forward + backward.
        timings: how many timed calls the median is over.
        is_reference: whether this row is the reference.
    """

    label: str
    method: str
    batchnorm: str
    options: Mapping[str, Any]
    diagonal: torch.Tensor
    relative_error: float
    norm_ratio: float
    pearson: float
    spearman: float
    agreement: float
    keep_agreement: float
    pruned: int
    prune_mask: torch.Tensor
    keep_mask: torch.Tensor
    seconds: float
    cost_ratio: float
    timings: int
    is_reference: bool

    def record(self) -> dict[str, Any]:
        """The row's scalars as a JSON-friendly dict (no tensors)."""
        return {
            "label": self.label,
            "method": self.method,
            "batchnorm": self.batchnorm,
            "options": dict(self.options),
            "relative_error": self.relative_error,
            "norm_ratio": self.norm_ratio,
            "pearson": self.pearson,
            "spearman": self.spearman,
            "agreement": self.agreement,
            "keep_agreement": self.keep_agreement,
            "pruned": self.pruned,
            "seconds": self.seconds,
            "cost_ratio": self.cost_ratio,
            "timings": self.timings,
            "is_reference": self.is_reference,
        }


def _coarse(value: float) -> str:
    """Two significant digits, as a plain number (timings are volatile): 0.73, 1.5, 180."""
    if not math.isfinite(value) or value <= 0:
        return f"{value:.2g}"
    exponent = math.floor(math.log10(value))
    decimals = max(0, 1 - exponent)
    return f"{round(value, 1 - exponent):.{decimals}f}"


@dataclass(frozen=True)
class CurvatureComparison:
    """The result of :func:`compare_curvature_methods`.

    Attributes:
        rows: the reference's row first, then one per method, in the order given.
        reference: the reference's label.
        names: ``S`` switch names, the order of every ``diagonal``.
        num_groups: ARD groups whose decisions are compared (both cell types).
        forward_backward_s: median seconds of one training forward + backward per batch.
        num_batches: batches compared on.
        num_examples: examples they held.
        repeats: timed repetitions of each non-reference method per batch.
        lambda_o, lambda_c, threshold: the update's and the entropy rule's settings.
    """

    rows: tuple[MethodResult, ...]
    reference: str
    names: tuple[str, ...]
    num_groups: int
    forward_backward_s: float
    num_batches: int
    num_examples: int
    repeats: int
    lambda_o: float
    lambda_c: float
    threshold: float

    def row(self, label: str) -> MethodResult:
        """The row labelled ``label``.

        Raises:
            KeyError: for an unknown label, listing the valid ones.
        """
        for r in self.rows:
            if r.label == label:
                return r
        valid = ", ".join(repr(r.label) for r in self.rows)
        raise KeyError(f"no method labelled {label!r}; labels: {valid}")

    def records(self) -> list[dict[str, Any]]:
        """Every row as a dict (:meth:`MethodResult.record`)."""
        return [r.record() for r in self.rows]

    def table(self, cost: bool = True, digits: int = 3) -> Table:
        """One row per method: HTML on a page, aligned text as ``str(table)``.

        Args:
            cost: include the cost column (volatile: two significant digits).
            digits: decimals of the error and correlation columns.

        Returns:
            A :class:`~bayesnas_book.tables.Table` (first two columns left-aligned).
        """
        head = [
            "method",
            "BN",
            "rel. error",
            "norm ratio",
            "Pearson",
            "Spearman",
            "agreement",
            "keep agr.",
            "pruned",
        ]
        if cost:
            head.append("cost (x fwd+bwd)")
        rows = []
        for r in self.rows:
            cells = [
                r.label + (" (ref)" if r.is_reference else ""),
                r.batchnorm,
                f"{r.relative_error:.{digits}f}",
                f"{r.norm_ratio:.{digits}f}",
                f"{r.pearson:.{digits}f}",
                f"{r.spearman:.{digits}f}",
                f"{r.agreement:.{digits}f}",
                f"{r.keep_agreement:.{digits}f}",
                f"{r.pruned}/{self.num_groups}",
            ]
            if cost:
                cells.append(_coarse(r.cost_ratio))
            rows.append(cells)
        return Table(head, rows, align="ll" + "r" * (len(head) - 2))

    def best_method(
        self, tolerance: float = 0.0, candidates: Sequence[str] | None = None
    ) -> MethodResult:
        """The most accurate method for its cost, by a stated rule.

        Rule: among the candidates, take the highest prune/keep ``agreement`` with the
        reference; every candidate within ``tolerance`` of it counts as tied; of those, the
        lowest ``cost_ratio`` wins.

        Args:
            tolerance: agreement difference counted as a tie, in ``[0, 1)``.
            candidates: labels to choose from; default every non-reference row that runs in
                train-mode BatchNorm (the mode of the search's curvature).

        Returns:
            The chosen row.

        Raises:
            ValueError: for a bad ``tolerance``, an unknown label, or no candidate.
        """
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, (int, float))
            or not (0 <= tolerance < 1)
        ):
            raise ValueError(f"`tolerance` must be in [0, 1), got {tolerance!r}")
        if candidates is None:
            pool = [r for r in self.rows if not r.is_reference and r.batchnorm == "train"]
        else:
            pool = [self.row(label) for label in candidates]
        if not pool:
            raise ValueError("no candidate method to choose from")
        top = max(r.agreement for r in pool)
        tied = [r for r in pool if r.agreement >= top - tolerance]
        return min(tied, key=lambda r: r.cost_ratio)


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 of a 1-D tensor, ties given their average rank."""
    values, inverse, counts = torch.unique(v, sorted=True, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts  # rank of each distinct value's first copy
    average = first.to(torch.float64) + (counts.to(torch.float64) - 1) / 2
    return average[inverse]


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two 1-D tensors (NaN if one is constant)."""
    a, b = a.to(torch.float64).flatten(), b.to(torch.float64).flatten()
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0 else math.nan


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two 1-D tensors: Pearson of the (tie-averaged) ranks."""
    return pearson(_ranks(a.flatten()), _ranks(b.flatten()))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _batchnorm_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Put the whole model in train or eval mode; restore every module's flag on exit."""
    saved = [(m, m.training) for m in model.modules()]
    model.train(mode == "train")
    try:
        yield
    finally:
        for module, training in saved:
            module.training = training


def _ordered_switches(model: Supernet) -> list[Switch]:
    """Per cell type, per cell, per edge: parent, then the child switches in op order."""
    return [m for kind in CELL_TYPES for m in model.switch_modules(kind)]


def _check_spec(spec: Any, argument: str) -> MethodSpec:
    if not isinstance(spec, MethodSpec):
        raise ValueError(f"`{argument}` entries must be MethodSpec, got {spec!r}")
    if spec.method not in CURVATURE_METHODS:
        raise ValueError(
            f"`{argument}`: unknown curvature method {spec.method!r} (label {spec.label!r}); "
            f"valid methods: {', '.join(CURVATURE_METHODS)}"
        )
    if spec.batchnorm not in BATCHNORM_MODES:
        raise ValueError(
            f"`{argument}`: `batchnorm` must be 'train' or 'eval', got {spec.batchnorm!r} "
            f"(label {spec.label!r})"
        )
    if "generator" in spec.options:
        raise ValueError(
            f"`{argument}`: method {spec.label!r} passes a generator; the comparison seeds its "
            "own from `seed`"
        )
    if "full" in spec.options:
        raise ValueError(
            f"`{argument}`: method {spec.label!r} passes `full`; only the diagonal is compared"
        )
    return spec


def _decisions(
    model: Supernet,
    diagonal: torch.Tensor,
    prior_variance: Mapping[str, torch.Tensor],
    lambda_o: float,
    lambda_c: float,
    threshold: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Laplace update per cell type; the entropy prune mask and the final keep mask."""
    prune_masks, keep_masks, start = [], [], 0
    for kind in CELL_TYPES:
        graph = model.graphs[kind]
        switches = model.switch_values(kind).detach().to("cpu", torch.float64)  # (N, E, 1+K)
        count = switches.numel()
        H = diagonal[start : start + count].reshape(switches.shape)  # (N, E, 1+K)
        start += count
        result = laplace_update(
            switches, H, prior_variance[kind], lambda_o, lambda_c, cell_type=kind, graph=graph
        )
        prune_masks.append(entropy_prune_mask(result.gamma, threshold).flatten())  # (E*(1+K),)
        try:
            keep = prune(graph, result.gamma, threshold=threshold, cell_type=kind).keep
        except PruningError:  # every edge pruned: nothing kept
            keep = torch.zeros_like(result.gamma, dtype=torch.bool)
        keep_masks.append(keep.flatten())
    assert start == diagonal.numel()
    return torch.cat(prune_masks), torch.cat(keep_masks)


# --------------------------------------------------------------------------------------------
# the comparison
# --------------------------------------------------------------------------------------------


def compare_curvature_methods(
    model: Supernet,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    methods: Sequence[MethodSpec] = DEFAULT_METHODS,
    *,
    lambda_o: float,
    lambda_c: float,
    threshold: float = DEFAULT_THRESHOLD,
    prior_variance: Mapping[str, torch.Tensor] | None = None,
    reference: MethodSpec = EXACT_REFERENCE,
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
) -> CurvatureComparison:
    """Compute every method's switch curvature on the same batches and compare with a reference.

    Args:
        model: a :class:`~bayesnas_book.space.supernet.Supernet` (its weights and switches are
            used as they are; nothing in it changes, but parameter ``.grad`` is reset to None
            by the forward + backward timings).
        batches: ``(x, y)`` pairs, ``x`` ``(B, C, H, W)``, ``y`` ``(B,)`` integer labels; each
            method averages over them weighting each by ``B``
            (:func:`~bayesnas_book.curvature.api.switch_curvature`).
        methods: the :class:`MethodSpec` s to compare (default :data:`DEFAULT_METHODS`).
        lambda_o: parent penalty strength of the Laplace update (``search.lambda_o``), > 0.
        lambda_c: child penalty strength (``search.lambda_c``), > 0.
        threshold: the entropy rule's gamma threshold, in ``(0, inf)``; default ``1/(2 pi e)``.
        prior_variance: gamma before the update per cell type, ``{kind: (E, 1 + K)}``; default
            the search's start ``gamma_0 = 1``.
        reference: the method every row is measured against (default the exact GGN, train BN).
        repeats: timed repetitions of each non-reference method per batch, >= 1.
        warmup: untimed calls of each non-reference method (and of the forward + backward) on
            the first batch before timing, >= 0.
        seed: seeds one generator per Monte-Carlo method for the compared pass.

    Returns:
        A :class:`CurvatureComparison` (reference row first).

    Raises:
        ValueError: for a model that is not a Supernet, empty or malformed ``batches``, a bad
            method list (not MethodSpec, unknown method, bad ``batchnorm``, repeated label,
            a ``generator`` or ``full`` option), bad lambdas, threshold, ``repeats``,
            ``warmup`` or ``seed``, or a ``prior_variance`` missing a cell type.
    """
    if not isinstance(model, Supernet):
        raise ValueError(
            f"`model` must be a bayesnas_book.space.supernet.Supernet (the comparison needs its "
            f"cell types), got {type(model).__name__}"
        )
    lambda_o = check_positive("lambda_o", lambda_o)
    lambda_c = check_positive("lambda_c", lambda_c)
    threshold = check_positive("threshold", threshold)
    for name, value, low in (("repeats", repeats, 1), ("warmup", warmup, 0), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            rule = "a positive integer" if low == 1 else "a non-negative integer"
            raise ValueError(f"`{name}` must be {rule}, got {value!r}")
    if isinstance(methods, MethodSpec) or not isinstance(methods, Sequence) or not methods:
        raise ValueError(f"`methods` must be a non-empty sequence of MethodSpec, got {methods!r}")
    specs = [_check_spec(m, "methods") for m in methods]
    reference = _check_spec(reference, "reference")
    labels = [reference.label] + [s.label for s in specs]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise ValueError(
            f"method labels must be unique (the reference's included), repeated: {repeated}"
        )
    data = list(batches)
    if not data:
        raise ValueError("`batches` is empty: give at least one (x, y) batch")
    for index, batch in enumerate(data):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError(f"batch {index} must be an (x, y) pair, got {type(batch).__name__}")
    if prior_variance is None:
        prior_variance = {
            kind: initial_state(model.graphs[kind], dtype=torch.float64)[0] for kind in CELL_TYPES
        }
    missing = [kind for kind in CELL_TYPES if kind not in prior_variance]
    if missing:
        raise ValueError(f"`prior_variance` is missing cell type {missing[0]!r}")
    gamma = {kind: prior_variance[kind].detach().to("cpu", torch.float64) for kind in CELL_TYPES}

    switches = _ordered_switches(model)
    everything = [reference, *specs]

    def run(spec: MethodSpec, batch: tuple, generator: torch.Generator | None) -> torch.Tensor:
        options = dict(spec.options)
        if spec.method == "mc_ggn":
            options["generator"] = generator
        with _batchnorm_mode(model, spec.batchnorm):
            estimate = switch_curvature(model, [batch], spec.method, switches, **options)
        return estimate.diagonal

    def forward_backward(batch: tuple) -> None:
        x, y = batch
        with _batchnorm_mode(model, "train"), batchnorm_stats_frozen(model):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)

    device = data[0][0].device if isinstance(data[0][0], torch.Tensor) else torch.device("cpu")

    def new_generator(offset: int) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(seed + offset)

    # untimed warm-up (first batch), with throwaway generators
    spare = new_generator(1)
    for _ in range(warmup):
        forward_backward(data[0])
        for spec in specs:
            run(spec, data[0], spare)

    generators = {spec.label: new_generator(0) for spec in everything}  # the compared draws
    totals = {spec.label: None for spec in everything}
    times: dict[str, list[float]] = {spec.label: [] for spec in everything}
    fb_times: list[float] = []
    num_examples = 0
    for r in range(repeats):
        for batch in data:
            fb_times.append(_timed(lambda b=batch: forward_backward(b), device))
            B = batch[0].shape[0]
            if r == 0:
                num_examples += B
            for spec in everything:
                if r > 0 and spec is reference:
                    continue  # hundreds of forward + backward passes: timed once
                out: list[torch.Tensor] = []
                generator = generators[spec.label] if r == 0 else spare
                seconds = _timed(
                    lambda s=spec, b=batch, g=generator, o=out: o.append(run(s, b, g)), device
                )
                times[spec.label].append(seconds)
                if r == 0:
                    total = totals[spec.label]
                    totals[spec.label] = B * out[0] if total is None else total + B * out[0]

    diagonals = {label: total / num_examples for label, total in totals.items()}
    fb = statistics.median(fb_times)
    ref = diagonals[reference.label]
    ref_prune, ref_keep = _decisions(model, ref, gamma, lambda_o, lambda_c, threshold)
    ref_norm = float(ref.norm())
    rows = []
    for spec in everything:
        h = diagonals[spec.label]
        prune_mask, keep_mask = (
            (ref_prune, ref_keep)
            if spec is reference
            else _decisions(model, h, gamma, lambda_o, lambda_c, threshold)
        )
        seconds = statistics.median(times[spec.label])
        rows.append(
            MethodResult(
                label=spec.label,
                method=spec.method,
                batchnorm=spec.batchnorm,
                options=dict(spec.options),
                diagonal=h,
                relative_error=float((h - ref).norm()) / ref_norm if ref_norm > 0 else math.nan,
                norm_ratio=float(h.norm()) / ref_norm if ref_norm > 0 else math.nan,
                pearson=pearson(h, ref),
                spearman=spearman(h, ref),
                agreement=float((prune_mask == ref_prune).double().mean()),
                keep_agreement=float((keep_mask == ref_keep).double().mean()),
                pruned=int(prune_mask.sum()),
                prune_mask=prune_mask,
                keep_mask=keep_mask,
                seconds=seconds,
                cost_ratio=seconds / fb,
                timings=len(times[spec.label]),
                is_reference=spec is reference,
            )
        )
    names = tuple(_switch_names(model, switches))
    return CurvatureComparison(
        rows=tuple(rows),
        reference=reference.label,
        names=names,
        num_groups=int(ref_prune.numel()),
        forward_backward_s=fb,
        num_batches=len(data),
        num_examples=num_examples,
        repeats=repeats,
        lambda_o=lambda_o,
        lambda_c=lambda_c,
        threshold=threshold,
    )


def _switch_names(model: nn.Module, switches: list[Switch]) -> list[str]:
    by_module = {id(m): n for n, m in model.named_modules()}
    return [by_module[id(s)] for s in switches]
