r"""BayesNAS Algorithm 1, end to end and resumable.

Zhou, Yang, Wang, Pan, "BayesNAS", ICML 2019, Algorithm 1. With switches ``s`` on a
supernet, per cell type and ARD group ``g`` (one (edge, switch kind), shared by the cells of
that type):

1. warm-up: ``warmup_epochs`` on the weights only (switches fixed at 1), warm-up split;
2. for each round ``t = 1..T``:

   a. ``switch_epochs`` on weights and switches, switch split, minimising
      ``mean NLL + sum_g lambda_g omega_g ||s_g||_2`` (``lambda_o`` on parents, ``lambda_c``
      on children; weight decay on weights only);
   b. curvature ``H`` of the mean NLL in every switch, averaged over ``curvature_batches``;
   c. the Laplace update (:func:`bayesnas_book.bayes.laplace.laplace_update`)::

        C = (1/gamma + H/lambda)^-1,   omega = sqrt(sum_cells |1/gamma - C/gamma^2|),
        gamma = ||s_g|| / omega,       then the HARD coupling of each child to its parent;

   d. the entropy rule (prune where ``gamma <= 1/(2 pi e)``) and the node rule; pruned
      switches are set to 0 and stay 0 in later rounds;
3. derive the cells: every surviving (edge, op) pair (:func:`~bayesnas_book.space.derive.derive_cell`),
   and, from the same switches, the magnitude rule of the paper's RQ2
   (:func:`~bayesnas_book.space.derive.magnitude_cell`).

The schedule is a list of steps (warm-up epochs, switch epochs, updates); a checkpoint is
written atomically after every step, so ``--resume`` continues a killed run at the next step and
ends with the same genotype as an uninterrupted run (on a CPU).

.. note::
   Departures from the official code, each a fix of a defect of that code: disjoint data
   splits; a deterministic start ``gamma = omega = 1``; curvature over all classes, averaged
   over many batches; omega summed over every cell of a type (not the last cell's only).

The GPU fast path (``search.amp``, ``search.channels_last``, ``search.compile``,
``search.fused_edges``): the supernet forward runs under autocast (bf16, or fp16 with a
``GradScaler``) in NHWC, optionally with each edge's convolution ops channel-stacked
(:class:`~bayesnas_book.space.fused_edge.FusedSwitchedEdge`), the switch penalty and
the curvature sweep stay in float32 (curvature accumulated in float64), and the training loop keeps
its running sums on the device, so nothing waits for the GPU inside an epoch except the progress
bar's refresh every :data:`PROGRESS_EVERY` steps. With everything off (the quick profile) the loop
computes exactly what it did without the fast path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bayesnas_book.atomic import atomic_write_bytes, atomic_writer
from bayesnas_book.bayes.laplace import (
    initial_state,
    laplace_update,
    penalty_weights,
    switch_penalty,
)
from bayesnas_book.bayes.pruning import PruningResult, prune
from bayesnas_book.checkpoint import (
    CheckpointError,
    claim_run_folder,
    prepare_run_folder,
    restore_rng_state,
    save_checkpoint,
)
from bayesnas_book.config import RunConfig, config_to_dict
from bayesnas_book.cpu_kernels import resolve_channels_last
from bayesnas_book.curvature.api import switch_curvature
from bayesnas_book.curvature.exact import batchnorm_stats_frozen
from bayesnas_book.device import resolve_device
from bayesnas_book.provenance import provenance_record, write_json
from bayesnas_book.search_data import SearchData, build_search_data, epoch_loader, take
from bayesnas_book.seeding import seed_everything
from bayesnas_book.space.derive import derive_cell, magnitude_cell
from bayesnas_book.space.genotype import Genotype, save_genotype
from bayesnas_book.space.supernet import CELL_TYPES, Supernet, SupernetSpec
from bayesnas_book.train.engine import PROGRESS_EVERY
from bayesnas_book.train.precision import (
    amp_dtype,
    autocast,
    compiled_forward,
    parameter_dtype,
    to_memory_format,
)

__all__ = ["SearchError", "SearchResult", "SearchRun", "pruning_trace", "run_search", "search_schedule"]

CHECKPOINT = "checkpoint.pt"
# Files a finished or running search writes into its output folder.
OUTPUTS = ("genotype.json", "genotype_magnitude.json", "cells.png", "history.json", "metrics.jsonl", "provenance.json")


class SearchError(RuntimeError):
    """A search cannot start or resume as asked (the message says why and what to do)."""


def search_schedule(config: RunConfig) -> list[dict[str, Any]]:
    """The steps of Algorithm 1 in order: ``{"phase": "warmup"|"switch"|"update", "round", "epoch"}``."""
    steps: list[dict[str, Any]] = [{"phase": "warmup", "round": 0, "epoch": e} for e in range(config.search.warmup_epochs)]
    for r in range(1, config.search.rounds + 1):
        steps += [{"phase": "switch", "round": r, "epoch": e} for e in range(config.search.switch_epochs)]
        steps.append({"phase": "update", "round": r, "epoch": None})
    return steps


def pruning_trace(history: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> list[dict]:
    """Per round, the (edge, op) pairs kept per cell type and the supernet's validation accuracy.

    Args:
        history: the update records of a search (``SearchResult.history`` or ``history.json``),
            each holding ``kept``, the ``(E, 1 + K)`` keep mask of every cell type.
        metrics: its epoch records (``SearchResult.metrics`` or ``metrics.jsonl``).

    Returns:
        One row per round ``0..T``: ``round``, per cell type the kept pairs (``{kind}_pairs``,
        the true entries of the op columns; round 0, before any update, keeps all ``E * K``) and
        ``validation_accuracy``, the supernet's after the last epoch of that round (round 0:
        the warm-up's; ``None`` without a warm-up).

    Raises:
        SearchError: if a history record has no keep mask (not a search's history).
    """
    kinds = [kind for kind in CELL_TYPES if history and kind in history[0]]
    accuracy: dict[int, float] = {}
    for m in metrics:
        accuracy[int(m["round"])] = m["validation_accuracy"]  # the last epoch of a round wins
    rows: list[dict] = []
    for index, record in enumerate(history):
        if any("kept" not in record.get(kind, {}) for kind in kinds):
            raise SearchError(f"history record {index} has no `kept` mask: pass a search's history")
        # (E, 1 + K) keep masks
        keep = {kind: torch.tensor(record[kind]["kept"], dtype=torch.bool) for kind in kinds}
        if index == 0:
            every = {f"{k}_pairs": keep[k][:, 1:].numel() for k in kinds}
            rows.append({"round": 0, **every, "validation_accuracy": accuracy.get(0)})
        kept = {f"{k}_pairs": int(keep[k][:, 1:].sum()) for k in kinds}
        r = int(record["round"])
        rows.append({"round": r, **kept, "validation_accuracy": accuracy.get(r)})
    return rows


@dataclass
class SearchResult:
    """What a search returns (and writes to its output folder)."""

    genotype: Genotype
    magnitude_genotype: Genotype
    pruning: dict[str, PruningResult]
    history: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    out: Path | None
    timings: dict[str, float] = field(default_factory=dict)


class SearchRun:
    """The state of one search: supernet, optimiser, priors, history; steps it one at a time.

    Args:
        config: a validated :class:`~bayesnas_book.config.RunConfig`.
        data: the splits (default: built from ``config``).
        progress: show tqdm progress bars.
    """

    def __init__(self, config: RunConfig, data: SearchData | None = None, progress: bool = False) -> None:
        self.config = config
        self.progress = progress
        seed_everything(config.seed, deterministic=config.deterministic, num_threads=config.num_threads,
                       dtype=config.dtype)
        self.device = resolve_device(config.device)
        self.data = data if data is not None else build_search_data(config)
        search = config.search
        if search.space == "tree":  # the proxyless space brings its own cell types
            from bayesnas_book.space.tree_supernet import build_tree_supernet

            tree_net = build_tree_supernet(config, self.data.in_channels, self.data.num_classes)
            self.model = tree_net.to(self.device)
        spec = None if search.space == "tree" else SupernetSpec(
            in_channels=self.data.in_channels,
            num_classes=self.data.num_classes,
            channels=search.channels,
            layout=search.layout,
            stem_multiplier=search.stem_multiplier,
            space=search.space,
            fused_edges=search.fused_edges,
        )
        if spec is not None:
            self.model = Supernet(spec).to(self.device)
        self.cell_types: tuple[str, ...] = tuple(getattr(self.model, "cell_types", CELL_TYPES))
        try:
            self.amp_dtype = amp_dtype(search.amp, self.device)
        except ValueError as error:
            raise SearchError(f"`search.amp`: {error}") from None
        self.float_dtype = parameter_dtype(self.model)  # images are cast to it
        self.channels_last = resolve_channels_last(self.model, self.device, search.channels_last)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward: Callable[[torch.Tensor], torch.Tensor] = compiled_forward(self.model, search.compile, search.compile_mode)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        missing = [kind for kind in self.cell_types if not self.model.cell_indices(kind)]
        if missing:
            raise SearchError(f"`search.layout` {search.layout!r} has no {missing[0]} cell; it needs at least one N and one R")
        self.lr = search.lr * config.data.batch_size / search.reference_batch_size  # linear scaling
        self.optimizer = torch.optim.SGD(
            [
                {"params": self.model.weight_parameters(), "weight_decay": search.weight_decay},
                {"params": self.model.switch_parameters(), "weight_decay": 0.0},
            ],
            lr=self.lr,
            momentum=search.momentum,
        )
        self.gamma: dict[str, torch.Tensor] = {}
        self.omega: dict[str, torch.Tensor] = {}
        self.alive: dict[str, torch.Tensor] = {}  # switches not pruned yet, (N, E, 1 + K)
        for kind in self.cell_types:
            self.gamma[kind], self.omega[kind] = initial_state(self.model.graphs[kind], dtype=torch.float64)
            self.alive[kind] = torch.ones_like(self.model.switch_values(kind), dtype=torch.bool)
        self.history: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []
        self.pruning: dict[str, PruningResult] = {}
        self.completed = 0  # number of schedule steps done
        self.timings = {"weight_training_s": 0.0, "switch_training_s": 0.0, "curvature_s": 0.0, "update_s": 0.0}

    # -- training --------------------------------------------------------------------------

    def _penalty(self) -> torch.Tensor:
        total = torch.zeros((), device=self.device)
        for kind in self.cell_types:
            weights = penalty_weights(self.omega[kind], self.config.search.lambda_o, self.config.search.lambda_c)
            total = total + switch_penalty(self.model.switch_values(kind), weights.to(self.device, self.float_dtype))
        return total

    @torch.no_grad()
    def _enforce_pruning(self) -> None:
        for kind in self.cell_types:
            if not bool(self.alive[kind].all()):
                values = self.model.switch_values(kind)
                self.model.load_switch_values(kind, values * self.alive[kind].to(values))

    def _train_epoch(self, step: dict[str, Any], step_index: int) -> dict[str, Any]:
        search, switches_train = self.config.search, step["phase"] == "switch"
        dataset = self.data.switch if switches_train else self.data.warmup
        for p in self.model.switch_parameters():
            p.requires_grad_(switches_train)
        self.model.train()
        loader = epoch_loader(dataset, self.config.data.batch_size, self.config.seed, step_index, num_workers=self.config.data.num_workers)
        total = len(loader) if not search.max_batches_per_epoch else min(len(loader), search.max_batches_per_epoch)
        # running sums stay on the device (float64, as Python floats would be): no sync per step
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        penalty_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        started = time.perf_counter()
        bar = tqdm(take(loader, search.max_batches_per_epoch), total=total, disable=not self.progress,
                   desc=f"{step['phase']} r{step['round']} e{step['epoch']}", leave=False)
        for index, (x, y) in enumerate(bar):
            x = to_memory_format(x.to(self.device, self.float_dtype, non_blocking=True), self.channels_last)
            y = y.to(self.device, non_blocking=True)
            with autocast(self.device, self.amp_dtype):
                logits = self.forward(x)
                loss = F.cross_entropy(logits, y)
            penalty = self._penalty() if switches_train else torch.zeros((), device=self.device)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss + penalty).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if switches_train:
                self._enforce_pruning()
            B = y.shape[0]
            loss_sum += loss.detach().to(torch.float64) * B
            penalty_sum += penalty.detach().to(torch.float64) * B
            correct += (logits.argmax(1) == y).sum()
            seen += B
            if self.progress and (index + 1) % PROGRESS_EVERY == 0:
                elapsed = time.perf_counter() - started
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{int(correct) / seen:.3f}",
                                img_s=f"{seen / max(elapsed, 1e-9):.0f}")
        totals = {"loss": float(loss_sum), "penalty": float(penalty_sum), "correct": int(correct)}  # one sync
        elapsed = time.perf_counter() - started
        self.timings["switch_training_s" if switches_train else "weight_training_s"] += elapsed
        images, seen = seen, max(seen, 1)
        return {
            "phase": step["phase"], "round": step["round"], "epoch": step["epoch"],
            "loss": totals["loss"] / seen, "penalty": totals["penalty"] / seen, "accuracy": totals["correct"] / seen,
            "images": images, "seconds": elapsed, "images_per_s": images / max(elapsed, 1e-9),
            "validation_accuracy": self.evaluate(),
        }

    @torch.no_grad()
    def evaluate(self) -> float:
        """Top-1 accuracy of the supernet on the validation split, with batch-statistics BatchNorm.

        .. note::
           The supernet's BN running statistics lag behind its fast-changing switched sums (on
           the quick profile they give chance accuracy while batch statistics give ~77%), so it
           is evaluated with batch statistics, updating nothing (``batchnorm_stats_frozen``).
           The derived cells are trained and evaluated normally (chapter 8).
        """
        self.model.train()
        correct = seen = 0
        with batchnorm_stats_frozen(self.model):
            loader = epoch_loader(self.data.validation, max(self.config.data.batch_size, 256), 0, 0, shuffle=False)
            for x, y in take(loader, self.config.search.max_batches_per_epoch):
                with autocast(self.device, self.amp_dtype):
                    logits = self.model(to_memory_format(x.to(self.device, self.float_dtype), self.channels_last))
                correct += int((logits.argmax(1).cpu() == y).sum())
                seen += y.shape[0]
        return correct / max(seen, 1)

    # -- the Bayesian update -----------------------------------------------------------------

    def curvature(self, step_index: int) -> dict[str, torch.Tensor]:
        """Diagonal curvature of the mean NLL in every switch, per cell type ``(N, E, 1 + K)``."""
        search = self.config.search
        loader = epoch_loader(self.data.switch, self.config.data.batch_size, self.config.seed, 10_000 + step_index)
        batches = [(to_memory_format(x.to(self.device, self.float_dtype), self.channels_last), y.to(self.device))
                   for x, y in take(loader, search.curvature_batches)]
        self.model.train()  # BatchNorm with batch statistics, as in training
        everything = [m for kind in self.cell_types for m in self.model.switch_modules(kind)]
        options = {}
        if search.curvature_method == "mc_ggn":  # labels drawn from a generator of (seed, step): resumable
            options["generator"] = torch.Generator(self.device).manual_seed(self.config.seed * 1_000_003 + 20_000 + step_index)
        with autocast(self.device, self.amp_dtype):  # the sweep itself runs in float32 (recursion.GNTape)
            estimate = switch_curvature(self.model, batches, method=search.curvature_method, switches=everything, **options)
        result, start = {}, 0
        for kind in self.cell_types:
            shape = self.model.switch_values(kind).shape
            count = shape.numel()
            result[kind] = estimate.diagonal[start:start + count].reshape(shape)
            start += count
        return result

    def update(self, step: dict[str, Any], step_index: int) -> dict[str, Any]:
        """Steps b-d of Algorithm 1 for every cell type; returns the history record."""
        search = self.config.search
        started = time.perf_counter()
        H = self.curvature(step_index)
        self.timings["curvature_s"] += time.perf_counter() - started
        started = time.perf_counter()
        record: dict[str, Any] = {"round": step["round"]}
        for kind in self.cell_types:
            switches = self.model.switch_values(kind).detach().to("cpu", torch.float64)
            result = laplace_update(
                switches, H[kind], self.gamma[kind], search.lambda_o, search.lambda_c,
                cell_type=kind, graph=self.model.graphs[kind],
            )
            self.gamma[kind], self.omega[kind] = result.gamma, result.omega
            pruning = prune(self.model.graphs[kind], result.gamma, threshold=search.prune_threshold,
                            lambda_o=search.lambda_o, lambda_c=search.lambda_c, cell_type=kind)
            self.pruning[kind] = pruning
            self.alive[kind] = self.alive[kind] & pruning.keep.unsqueeze(0)
            record[kind] = {
                "switches": switches.tolist(),
                "curvature": H[kind].tolist(),
                "gamma": result.gamma.tolist(),
                "omega": result.omega.tolist(),
                "posterior_variance": result.posterior_variance.tolist(),
                "kept": pruning.keep.tolist(),
            }
        self._enforce_pruning()
        self.timings["update_s"] += time.perf_counter() - started
        return record

    # -- driving the schedule -------------------------------------------------------------------

    def run_step(self, step_index: int) -> None:
        """Run schedule step ``step_index`` (which must be the next one)."""
        assert step_index == self.completed, "steps run in order"
        step = search_schedule(self.config)[step_index]
        if step["phase"] == "update":
            self.history.append(self.update(step, step_index))
        else:
            self.metrics.append(self._train_epoch(step, step_index))
        self.completed += 1

    def derive(self) -> tuple[Genotype, Genotype]:
        """The BayesNAS genotype and the magnitude-rule genotype of the same switches."""
        if not self.pruning:
            raise SearchError("no architecture update has run yet; derive after at least one round")
        meta = {"lambda_o": self.config.search.lambda_o, "lambda_c": self.config.search.lambda_c,
                "seed": self.config.seed, "dataset": self.config.data.dataset}
        if hasattr(self.model, "derive_genotypes"):  # a space with its own genotype (tree cells)
            return self.model.derive_genotypes(self.pruning, meta)
        cells = {kind: derive_cell(self.model.graphs[kind], self.pruning[kind].keep) for kind in CELL_TYPES}
        bayes = Genotype(cells["normal"], cells["reduction"], self.config.search.space, {**meta, "rule": "bayesnas"})
        magnitude = {
            kind: magnitude_cell(self.model.graphs[kind], self.model.switch_values(kind).detach().abs().mean(0).cpu())
            for kind in CELL_TYPES
        }
        magnitude_genotype = Genotype(magnitude["normal"], magnitude["reduction"], self.config.search.space, {**meta, "rule": "magnitude"})
        return bayes, magnitude_genotype

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "gamma": self.gamma, "omega": self.omega, "alive": self.alive,
            "pruning_keep": {k: v.keep for k, v in self.pruning.items()},
            "history": self.history, "metrics": self.metrics,
            "completed": self.completed, "timings": self.timings,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):  # empty when the scaler is disabled (no fp16)
            self.scaler.load_state_dict(state["scaler"])
        self.gamma, self.omega, self.alive = state["gamma"], state["omega"], state["alive"]
        self.history, self.metrics = state["history"], state["metrics"]
        self.completed, self.timings = state["completed"], state["timings"]
        self.pruning = {}
        for kind, keep in state["pruning_keep"].items():
            search = self.config.search
            self.pruning[kind] = prune(self.model.graphs[kind], self.gamma[kind], threshold=search.prune_threshold,
                                       lambda_o=search.lambda_o, lambda_c=search.lambda_c, cell_type=kind)
            assert torch.equal(self.pruning[kind].keep, keep)

    def save(self, path: Path) -> None:
        save_checkpoint(path, "search", config_to_dict(self.config), {"completed": self.completed}, self.state_dict())


def _check_output_folder(out: Path, config: RunConfig, resume: bool) -> dict[str, Any] | None:
    """Refuse to overwrite another run; on resume, return the checkpoint after checking it matches."""
    try:
        return claim_run_folder(out, "search", OUTPUTS, resume, describe="a search", config=config_to_dict(config))
    except CheckpointError as error:
        raise SearchError(str(error)) from None


def run_search(
    config: RunConfig,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    data: SearchData | None = None,
    stop_after: int | None = None,
    on_step: Callable[[SearchRun, int], None] | None = None,
) -> SearchResult:
    """Run (or resume) Algorithm 1 and write its artefacts to ``out``.

    Args:
        config: the validated configuration (``config.search`` holds Algorithm 1's settings).
        out: output folder (created once the checkpoint and the data are checked); ``None`` keeps
            everything in memory (chapters).
        resume: continue the run whose checkpoint is in ``out``.
        progress: tqdm progress bars.
        data: the splits (default: from ``config``).
        stop_after: stop after this many schedule steps (simulates a killed run in tests).
        on_step: called after every step with the run and the step index (chapters record
            switch trajectories with it).

    Returns:
        A :class:`SearchResult` (``genotype`` is the BayesNAS cell pair).

    Raises:
        SearchError: for an output folder holding another run, a foreign / corrupt / mismatched
            checkpoint, or a layout without both cell types.
        PruningError: when the lambdas prune every edge (the message names them).
    """
    started = time.time()
    out_path = Path(out) if out is not None else None
    payload = None
    if out_path is not None:
        payload = _check_output_folder(out_path, config, resume)  # only reads: a refused run creates nothing
    elif resume:
        raise SearchError("--resume needs the --out folder of the run to continue")
    run = SearchRun(config, data=data, progress=progress)  # reads the data: a missing dataset stops here
    if out_path is not None:
        prepare_run_folder(out_path, (CHECKPOINT, *OUTPUTS))
    if payload is not None:
        run.load_state_dict(payload["state"])
        restore_rng_state(payload["rng"])
    schedule = search_schedule(config)
    for index in range(run.completed, len(schedule)):
        if stop_after is not None and index >= stop_after:
            break
        run.run_step(index)
        if out_path is not None:
            run.save(out_path / CHECKPOINT)
            _append_metrics(out_path, run)
        if on_step is not None:
            on_step(run, index)
    if run.completed < len(schedule):
        return SearchResult(None, None, run.pruning, run.history, run.metrics, out_path, run.timings)  # type: ignore[arg-type]
    genotype, magnitude = run.derive()
    if out_path is not None:
        _write_outputs(out_path, run, genotype, magnitude, started)
    return SearchResult(genotype, magnitude, run.pruning, run.history, run.metrics, out_path, dict(run.timings))


def _append_metrics(out: Path, run: SearchRun) -> None:
    lines = "".join(json.dumps(m) + "\n" for m in run.metrics)
    atomic_write_bytes(out / "metrics.jsonl", lines.encode("utf-8"))


def _write_outputs(out: Path, run: SearchRun, genotype: Genotype, magnitude: Genotype, started: float) -> None:
    from bayesnas_book.viz import draw_genotype

    title = f"BayesNAS cells (lambda_o={run.config.search.lambda_o})"
    if hasattr(genotype, "save"):  # a space with its own genotype type (tree cells)
        genotype.save(out / "genotype.json")
        magnitude.save(out / "genotype_magnitude.json")
        figure = genotype.draw(title)
    else:
        save_genotype(genotype, out / "genotype.json")
        save_genotype(magnitude, out / "genotype_magnitude.json")
        figure = draw_genotype(genotype, title)
    with atomic_writer(out / "cells.png") as handle:  # a kill mid-write leaves no partial PNG
        figure.savefig(handle, format="png", dpi=100)
    write_json(out / "history.json", run.history)
    record = provenance_record(config_to_dict(run.config), run.device, started)
    record["timings"] = run.timings
    write_json(out / "provenance.json", record)
