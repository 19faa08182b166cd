r"""The experiments of the Algorithm 1 chapter: switch trajectories, sweeps, RQ1 and RQ2.

BayesNAS (Zhou et al., ICML 2019) asks two questions of its search that a small real task can
answer:

* **RQ1, connectivity**: is every derived cell connected? The entropy rule alone may leave a
  node with outgoing edges but no incoming one; the HARD node rule removes such edges. For a
  finished search, :func:`connectivity_rows` reports, per cell type, the dangling nodes with and
  without the node rule (:func:`~bayesnas_book.bayes.hard.dangling_nodes`).
* **RQ2, the derivation rule**: are the cells of the entropy rule better than those of the
  magnitude rule (DARTS's top-2 edges, top-1 op, on the same switches) and than random cells of
  the same size? :func:`compare_cells` trains each the same short way and tests it on held-out
  data.

The pieces:

* :class:`SwitchTrajectory`: the switch values after every optimiser step and schedule step of
  a :class:`~bayesnas_book.search.SearchRun`;
* :class:`SweepRecord`, :func:`search_sweep`: Algorithm 1 over ``(seed, lambda)`` settings, all on
  the same data splits;
* :func:`random_cell`, :func:`random_genotype`: cells with a given number of (edge, op) pairs,
  drawn uniformly among the connected ones;
* :func:`genotype_keep`, :func:`one_shot_accuracy`, :func:`one_shot_rows`: cells scored inside
  the trained supernet, every other switch set to 0 (one-shot evaluation, Bender et al. 2018);
* :func:`train_and_test`, :func:`compare_cells`: a genotype's evaluation network trained briefly,
  then tested (stand-alone evaluation);
* :func:`summarize`: mean, standard deviation and count per group of rows.

.. note::
   :func:`~bayesnas_book.search_data.build_search_data` cuts the digits by ``config.seed``, so
   two searches with different seeds would see different train / test cuts, and one seed's test
   images would be another's training images. :func:`search_sweep` therefore builds the splits
   once, from the configuration it is given, and varies only the search's own seed (initial
   weights and batch order); the held-out test split stays the same and unseen for every run.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from bayesnas_book.bayes.hard import dangling_nodes, edge_alive
from bayesnas_book.bayes.pruning import PruningResult, prune
from bayesnas_book.config import RunConfig, TrainConfig
from bayesnas_book.curvature.exact import batchnorm_stats_frozen
from bayesnas_book.models.counting import count_parameters
from bayesnas_book.models.eval_net import cifar_network
from bayesnas_book.search import SearchRun, search_schedule
from bayesnas_book.search_data import SearchData, build_search_data
from bayesnas_book.seeding import seed_everything
from bayesnas_book.space.derive import derive_cell
from bayesnas_book.space.genotype import CellGenotype, Genotype
from bayesnas_book.space.graph import CellGraph, get_cell_graph
from bayesnas_book.space.supernet import CELL_TYPES
from bayesnas_book.train import evaluate, train_model
from bayesnas_book.train.precision import parameter_dtype

__all__ = [
    "RULES",
    "SwitchTrajectory",
    "SweepRecord",
    "compare_cells",
    "connectivity_rows",
    "genotype_keep",
    "one_shot_accuracy",
    "one_shot_rows",
    "random_cell",
    "random_genotype",
    "search_sweep",
    "summarize",
    "train_and_test",
]

#: The three kinds of cells RQ2 compares, in table order.
RULES = ("bayesnas", "magnitude", "random")


# -- switch trajectories ----------------------------------------------------------------------
class SwitchTrajectory:
    """Switch values of a search, recorded after every optimiser step and every schedule step.

    Attach it to a fresh :class:`~bayesnas_book.search.SearchRun` with :meth:`attach` (it hooks
    the run's optimiser), and call it after each ``run.run_step(i)`` (or pass it as ``on_step``
    to :func:`~bayesnas_book.search.run_search`, which then records schedule steps only).

    Attributes:
        values: per cell type, a list of ``(N, E, 1 + K)`` tensors, one per record.
        phases: per record, the phase it belongs to (``"start"``, ``"warmup"``, ``"switch"``,
            ``"update"``).
        step_ends: indices into the records where each schedule step ended.

    .. note::
       A record taken by the optimiser hook sees the switches right after ``optimizer.step()``,
       before the search re-zeroes switches pruned in an earlier round.
    """

    def __init__(self) -> None:
        self.values: dict[str, list[Tensor]] = {kind: [] for kind in CELL_TYPES}
        self.phases: list[str] = []
        self.step_ends: list[int] = []
        self._handle: Any = None

    def _record(self, run: SearchRun, phase: str) -> None:
        for kind in CELL_TYPES:
            self.values[kind].append(
                run.model.switch_values(kind).detach().to("cpu", torch.float64).clone()
            )
        self.phases.append(phase)

    @classmethod
    def attach(cls, run: SearchRun) -> SwitchTrajectory:
        """Record ``run``'s switches now (``"start"``) and after each of its optimiser steps.

        Raises:
            ValueError: if ``run`` has already completed a schedule step.
        """
        if run.completed:
            raise ValueError(
                f"attach the trajectory before the first step; `run` has completed {run.completed}"
            )
        trajectory = cls()
        trajectory._record(run, "start")
        schedule = search_schedule(run.config)

        def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            trajectory._record(run, schedule[run.completed]["phase"])

        trajectory._handle = run.optimizer.register_step_post_hook(hook)
        return trajectory

    def __call__(self, run: SearchRun, step_index: int) -> None:
        """Record after schedule step ``step_index`` (``run_search``'s ``on_step`` signature)."""
        self._record(run, search_schedule(run.config)[step_index]["phase"])
        self.step_ends.append(len(self.phases) - 1)

    def detach(self) -> None:
        """Stop recording optimiser steps."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def stacked(self, kind: str) -> Tensor:
        """All records of one cell type, ``(T, N, E, 1 + K)``.

        Raises:
            ValueError: for an unknown cell type or an empty trajectory.
        """
        if kind not in self.values:
            raise ValueError(f"`kind` must be one of {', '.join(CELL_TYPES)}, got {kind!r}")
        if not self.values[kind]:
            raise ValueError("the trajectory is empty; attach it to a run or pass it as `on_step`")
        return torch.stack(self.values[kind])


# -- sweeps over seeds and lambdas ------------------------------------------------------------
@dataclass(frozen=True)
class SweepRecord:
    """What one search of a sweep found.

    Attributes:
        seed: the search's seed.
        lambda_o, lambda_c: its penalty strengths.
        genotype: the BayesNAS cells (entropy rule + HARD rules).
        magnitude_genotype: the magnitude-rule cells from the same switches.
        gamma: per cell type, the prior variances after the last update, ``(E, 1 + K)``.
        pruning: per cell type, the :class:`~bayesnas_book.bayes.pruning.PruningResult`.
        validation_accuracy: the supernet's accuracy on the validation split at the end.
        model: the trained supernet (for one-shot evaluation).
    """

    seed: int
    lambda_o: float
    lambda_c: float
    genotype: Genotype
    magnitude_genotype: Genotype
    gamma: Mapping[str, Tensor]
    pruning: Mapping[str, PruningResult]
    validation_accuracy: float
    model: nn.Module | None = None

    @classmethod
    def from_run(cls, run: SearchRun) -> SweepRecord:
        """The record of a :class:`~bayesnas_book.search.SearchRun` whose schedule is complete.

        Raises:
            ValueError: if the run has steps left.
        """
        total = len(search_schedule(run.config))
        if run.completed != total:
            raise ValueError(
                f"`run` has completed {run.completed} of {total} schedule steps; finish it first"
            )
        genotype, magnitude = run.derive()
        accuracy = run.metrics[-1]["validation_accuracy"] if run.metrics else float("nan")
        return cls(
            seed=run.config.seed,
            lambda_o=run.config.search.lambda_o,
            lambda_c=run.config.search.lambda_c,
            genotype=genotype,
            magnitude_genotype=magnitude,
            gamma={kind: run.gamma[kind].clone() for kind in CELL_TYPES},
            pruning=dict(run.pruning),
            validation_accuracy=float(accuracy),
            model=run.model,
        )


def _check_settings(settings: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    checked = []
    if not settings:
        raise ValueError("`settings` must list at least one (seed, lambda) pair, got none")
    for item in settings:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"`settings` must hold (seed, lambda) pairs, got {item!r}")
        seed, lambd = item
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"a seed in `settings` must be an integer >= 0, got {seed!r}")
        if (
            isinstance(lambd, bool)
            or not isinstance(lambd, (int, float))
            or not 0 < lambd < math.inf
        ):
            raise ValueError(f"a lambda in `settings` must be > 0, got {lambd!r}")
        checked.append((seed, float(lambd)))
    return checked


def search_sweep(
    config: RunConfig,
    settings: Sequence[tuple[int, float]],
    *,
    data: SearchData | None = None,
    on_record: Callable[[SweepRecord], None] | None = None,
) -> list[SweepRecord]:
    """Run Algorithm 1 once per ``(seed, lambda)``, with ``lambda_o = lambda_c = lambda``.

    Args:
        config: the base configuration; each run replaces its ``seed`` and both lambdas.
        settings: ``[(seed, lambda), ...]``.
        data: the splits every run uses (default: built once from ``config``, see the module
            note).
        on_record: called with each record as it is made.

    Returns:
        One :class:`SweepRecord` per setting, in order.

    Raises:
        ValueError: for an empty ``settings``, a negative or non-integer seed, a lambda <= 0.
        PruningError: when a lambda prunes a whole cell
            (see :func:`~bayesnas_book.bayes.pruning.prune`).
    """
    checked = _check_settings(settings)
    data = data if data is not None else build_search_data(config)
    records = []
    for seed, lambd in checked:
        search = dataclasses.replace(config.search, lambda_o=lambd, lambda_c=lambd)
        run = SearchRun(dataclasses.replace(config, seed=seed, search=search), data=data)
        for index in range(len(search_schedule(run.config))):
            run.run_step(index)
        record = SweepRecord.from_run(run)
        if on_record is not None:
            on_record(record)
        records.append(record)
    return records


# -- RQ1: connectivity ------------------------------------------------------------------------
def _graph(space: str, kind: str) -> CellGraph:
    return get_cell_graph(f"{space}_{kind}")


def connectivity_rows(record: SweepRecord, space: str = "bayesnas") -> list[dict[str, Any]]:
    """RQ1 for one search: per cell type, what survives with and without the node rule.

    Args:
        record: a finished search.
        space: its search space (the graphs are ``{space}_normal`` and ``{space}_reduction``).

    Returns:
        One row per cell type: ``seed``, ``lambda_o``, ``cell``, ``pairs`` (kept (edge, op) pairs),
        ``derived_pairs`` (pairs in the derived genotype), ``dangling`` (dangling nodes of the
        kept edges), ``dangling_without_node_rule`` (those the entropy rule alone leaves),
        ``nodes`` (live nodes of the derived cell).
    """
    rows = []
    for kind in CELL_TYPES:
        graph = _graph(space, kind)
        pruning = record.pruning[kind]
        alone = prune(graph, record.gamma[kind], threshold=pruning.threshold, node_rule=False)
        cell: CellGenotype = getattr(record.genotype, kind)
        rows.append(
            {
                "seed": record.seed,
                "lambda_o": record.lambda_o,
                "cell": kind,
                "pairs": pruning.counts()["kept"],
                "derived_pairs": len(cell.edges()),
                "dangling": dangling_nodes(graph, pruning.kept_edges),
                "dangling_without_node_rule": dangling_nodes(graph, alone.kept_edges),
                "nodes": len(cell.live_nodes),
            }
        )
    return rows


# -- random cells -----------------------------------------------------------------------------
def random_cell(
    graph: CellGraph, num_pairs: int, generator: torch.Generator, max_tries: int = 1000
) -> CellGenotype:
    """A cell with exactly ``num_pairs`` (edge, op) pairs, uniform among the connected ones.

    Draws ``num_pairs`` of the ``E * K`` pairs uniformly without replacement and redraws while
    a node would have outgoing edges but no incoming one (rejection sampling keeps the draw
    uniform over the connected cells of that size).

    Args:
        graph: the cell graph to draw from.
        num_pairs: pairs to keep, in ``[1, E * K]``.
        generator: the random source.
        max_tries: draws before giving up.

    Returns:
        The cell; ``len(cell.edges()) == num_pairs``.

    Raises:
        ValueError: if ``num_pairs`` is out of range, or no connected draw came in ``max_tries``.
    """
    E, K = graph.num_edges, graph.num_ops
    if isinstance(num_pairs, bool) or not isinstance(num_pairs, int) or not 1 <= num_pairs <= E * K:
        raise ValueError(
            f"`num_pairs` must be an integer in [1, {E * K}] for {graph.name}, got {num_pairs!r}"
        )
    for _ in range(max_tries):
        chosen = torch.randperm(E * K, generator=generator)[:num_pairs]
        ops = torch.zeros(E * K, dtype=torch.bool)
        ops[chosen] = True
        ops = ops.reshape(E, K)  # (E, K)
        keep = torch.cat(
            [ops.any(dim=1, keepdim=True), ops], dim=1
        )  # (E, 1 + K): parent on iff an op is
        if not dangling_nodes(graph, edge_alive(keep)):
            cell = derive_cell(graph, keep)
            assert len(cell.edges()) == num_pairs
            return cell
    raise ValueError(
        f"no connected {graph.name} cell with {num_pairs} pairs in {max_tries} draws; "
        "raise `max_tries`"
    )


def random_genotype(like: Genotype, generator: torch.Generator) -> Genotype:
    """Random cells with as many (edge, op) pairs per cell type as ``like`` (see random_cell)."""
    cells = {
        kind: random_cell(_graph(like.space, kind), len(getattr(like, kind).edges()), generator)
        for kind in CELL_TYPES
    }
    return Genotype(cells["normal"], cells["reduction"], like.space, {"rule": "random"})


# -- RQ2, one-shot: score cells inside the trained supernet ------------------------------------
def genotype_keep(graph: CellGraph, cell: CellGenotype) -> Tensor:
    """The switches a derived cell keeps, as a bool mask ``(E, 1 + K)`` (column 0: the edge).

    Raises:
        ValueError: if the cell uses an edge or an op that ``graph`` does not have.
    """
    keep = torch.zeros(graph.num_edges, 1 + graph.num_ops, dtype=torch.bool)
    for j, inputs in enumerate(cell.nodes):
        for item in inputs:
            try:
                e = graph.edge_index(item.source, j)
            except (KeyError, ValueError):
                raise ValueError(
                    f"`cell` has an edge {item.source} -> node_{j} that {graph.name} lacks"
                ) from None
            keep[e, 0] = True
            for op in item.ops:
                if op not in graph.ops:
                    raise ValueError(
                        f"`cell` uses op {op!r} that {graph.name} lacks; "
                        f"valid: {', '.join(graph.ops)}"
                    )
                keep[e, 1 + graph.ops.index(op)] = True
    return keep


@torch.no_grad()
def one_shot_accuracy(
    model: nn.Module, keep: Mapping[str, Tensor], dataset: Dataset, batch_size: int = 512
) -> float:
    """Top-1 accuracy of a trained supernet with every switch outside ``keep`` set to 0.

    The kept switches keep their trained values; BatchNorm uses batch statistics and updates
    nothing, as in :meth:`~bayesnas_book.search.SearchRun.evaluate`. The switches are restored
    afterwards.

    Args:
        model: a :class:`~bayesnas_book.space.supernet.Supernet`.
        keep: per cell type, a bool mask ``(E, 1 + K)``.
        dataset: images ``(C, H, W)`` and labels.
        batch_size: images per forward (the batch statistics come from each batch).

    Returns:
        The accuracy, a fraction in ``[0, 1]``.

    Raises:
        ValueError: for a mask of the wrong shape or dtype, or a non-positive ``batch_size``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    saved = {
        kind: model.switch_values(kind).detach().clone() for kind in CELL_TYPES
    }  # (N, E, 1 + K) each
    for kind in CELL_TYPES:
        mask = keep[kind]
        if (
            not isinstance(mask, Tensor)
            or mask.dtype != torch.bool
            or tuple(mask.shape) != tuple(saved[kind].shape[1:])
        ):
            got = (
                (tuple(mask.shape), mask.dtype) if isinstance(mask, Tensor) else type(mask).__name__
            )
            raise ValueError(
                f"`keep[{kind!r}]` must be a bool tensor of shape "
                f"{tuple(saved[kind].shape[1:])}, got {got}"
            )
    was_training = model.training
    correct = seen = 0
    try:
        for kind in CELL_TYPES:
            model.load_switch_values(
                kind, saved[kind] * keep[kind].to(saved[kind])
            )  # (N, E, 1 + K) * (E, 1 + K)
        model.train()
        with batchnorm_stats_frozen(model):
            for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                correct += int((model(x.to(parameter_dtype(model))).argmax(dim=1) == y).sum())
                seen += y.shape[0]
    finally:
        for kind in CELL_TYPES:
            model.load_switch_values(kind, saved[kind])
        model.train(was_training)
    return correct / max(seen, 1)


def one_shot_rows(
    records: Iterable[SweepRecord], dataset: Dataset, num_random: int = 3
) -> list[dict[str, Any]]:
    """RQ2 in the supernet: per search, its BayesNAS cells, its magnitude cells and random cells.

    The random cells have the BayesNAS cells' pair counts; ``num_random`` of them per search, drawn
    with a generator seeded by the search's seed.

    Returns:
        One row per (search, rule, draw): ``seed``, ``lambda_o``, ``rule``, ``draw``,
        ``pairs_normal``, ``pairs_reduction``, ``one_shot_top1``.

    Raises:
        ValueError: if a record has no model, or ``num_random < 0``.
    """
    if isinstance(num_random, bool) or not isinstance(num_random, int) or num_random < 0:
        raise ValueError(f"`num_random` must be an integer >= 0, got {num_random!r}")
    rows = []
    for record in records:
        if record.model is None:
            raise ValueError(
                f"the record of seed {record.seed}, lambda {record.lambda_o} "
                "has no model to evaluate"
            )
        generator = torch.Generator().manual_seed(20_000 + record.seed)
        candidates = [("bayesnas", 0, record.genotype), ("magnitude", 0, record.magnitude_genotype)]
        candidates += [
            ("random", d, random_genotype(record.genotype, generator)) for d in range(num_random)
        ]
        for rule, draw, genotype in candidates:
            keep = {
                kind: genotype_keep(_graph(genotype.space, kind), getattr(genotype, kind))
                for kind in CELL_TYPES
            }
            rows.append(
                {
                    "seed": record.seed,
                    "lambda_o": record.lambda_o,
                    "rule": rule,
                    "draw": draw,
                    "pairs_normal": len(genotype.normal.edges()),
                    "pairs_reduction": len(genotype.reduction.edges()),
                    "one_shot_top1": one_shot_accuracy(record.model, keep, dataset),
                }
            )
    return rows


# -- RQ2, stand-alone: train the cells briefly and test them --------------------------------
def train_and_test(
    genotype: Genotype,
    train_set: Dataset,
    test_set: Dataset,
    config: TrainConfig,
    *,
    channels: int = 4,
    num_cells: int = 3,
    in_channels: int = 1,
    num_classes: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """Build ``genotype``'s evaluation network, train it with ``config``, test it once.

    Args:
        genotype: the cells.
        train_set: training images ``(C, H, W)`` and labels.
        test_set: held-out images, evaluated once after training.
        config: the ``[train]`` section (epochs, batch size, schedule ...).
        channels: ``C`` of the network's first stage.
        num_cells: cells in the network (>= 3: two are reduction cells).
        in_channels: image channels; num_classes: classifier outputs.
        seed: seeds the initial weights and the batch order.

    Returns:
        ``{"test_top1", "test_loss", "params", "train_seconds"}``.
    """
    seed_everything(seed)
    model = cifar_network(
        genotype,
        channels=channels,
        num_cells=num_cells,
        num_classes=num_classes,
        in_channels=in_channels,
    )
    result = train_model(model, train_set, None, config, device="cpu", seed=seed)
    scores = evaluate(result.model, test_set, batch_size=config.eval_batch_size, device="cpu")
    return {
        "test_top1": scores["top1"],
        "test_loss": scores["loss"],
        "params": float(count_parameters(model)),
        "train_seconds": result.seconds,
    }


def compare_cells(
    records: Iterable[SweepRecord],
    train_set: Dataset,
    test_set: Dataset,
    config: TrainConfig,
    *,
    channels: int = 4,
    num_cells: int = 3,
    in_channels: int = 1,
    num_classes: int = 10,
) -> list[dict[str, Any]]:
    """RQ2: for every search, its BayesNAS, magnitude-rule and random cells, trained the same way.

    The random cells of a search match its BayesNAS cells' pair counts and are drawn with a
    generator seeded by the search's seed; the three networks of a search share the training
    seed (the search's seed), so they differ only in their cells.

    Returns:
        One row per (search, rule): ``seed``, ``lambda_o``, ``rule`` (one of :data:`RULES`),
        ``pairs_normal``, ``pairs_reduction`` and the keys of :func:`train_and_test`.
    """
    rows = []
    for record in records:
        generator = torch.Generator().manual_seed(10_000 + record.seed)
        genotypes = {
            "bayesnas": record.genotype,
            "magnitude": record.magnitude_genotype,
            "random": random_genotype(record.genotype, generator),
        }
        for rule in RULES:
            genotype = genotypes[rule]
            scores = train_and_test(
                genotype,
                train_set,
                test_set,
                config,
                channels=channels,
                num_cells=num_cells,
                in_channels=in_channels,
                num_classes=num_classes,
                seed=record.seed,
            )
            rows.append(
                {
                    "seed": record.seed,
                    "lambda_o": record.lambda_o,
                    "rule": rule,
                    "pairs_normal": len(genotype.normal.edges()),
                    "pairs_reduction": len(genotype.reduction.edges()),
                    **scores,
                }
            )
    return rows


def summarize(
    rows: Iterable[Mapping[str, Any]], by: str, value: str
) -> dict[Any, dict[str, float]]:
    """Mean, sample standard deviation (0 for one row) and count of ``value`` per ``by``.

    Args:
        rows: dicts holding both keys.
        by: the grouping key (e.g. ``"rule"``); groups keep their first-seen order.
        value: the numeric key to summarise (e.g. ``"test_top1"``).

    Returns:
        ``{group: {"mean", "std", "n"}}``.

    Raises:
        ValueError: if there is no row, or a row lacks ``by`` or ``value``.
    """
    groups: dict[Any, list[float]] = {}
    for row in rows:
        if by not in row or value not in row:
            raise ValueError(
                f"every row must have the keys {by!r} and {value!r}, got {sorted(row)}"
            )
        groups.setdefault(row[by], []).append(float(row[value]))
    if not groups:
        raise ValueError("`rows` is empty; there is nothing to summarise")
    return {
        group: {
            "mean": statistics.fmean(xs),
            "std": statistics.stdev(xs) if len(xs) > 1 else 0.0,
            "n": float(len(xs)),
        }
        for group, xs in groups.items()
    }
