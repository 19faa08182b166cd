r"""The curvature methods over seeds and points of training: the evidence for the search's default.

:func:`~bayesnas_book.curvature.compare.compare_curvature_methods` compares the methods on one
batch at one point. :func:`run_curvature_study` repeats that comparison for several search seeds
and several points of the search's own schedule, and :func:`summarize_study` aggregates every
metric over the seeds with a t-interval (:func:`mean_interval`):

* a *point* is a number of completed schedule steps of
  :class:`~bayesnas_book.search.SearchRun` (``0``: the initialised supernet; with the quick
  profile ``2``: after the warm-up, ``4``: where the search takes its first curvature, ``7``:
  its second, after the first Laplace update and pruning, done with the profile's own method);
* at each point the comparison runs on the first ``num_batches * batch_size`` images of the
  search's own curvature loader for that step, with the search's current prior variances
  ``gamma``, lambdas and threshold, against the exact Gauss-Newton diagonal in train-mode
  BatchNorm;
* the summary gives, per point and method, the mean and a ``level`` t-interval over the seeds
  of the relative error, the Pearson and Spearman correlations, the prune/keep agreement, the
  number of groups decided differently from the exact curvature, and the cost ratio.

``bayesnas-book curvature --seeds 0 1 2 3 4 --out DIR`` writes into ``DIR``:

* ``points.jsonl``: a header line, then one line per finished ``(seed, point)`` with every
  method's scalars and per-switch diagonals, rewritten atomically after each, so that a killed
  study continues with ``--resume``;
* ``curvature.json``: :func:`summarize_study` of all lines;
* ``provenance.json``: command, configuration, commit, device, versions, wall time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bayesnas_book.atomic import atomic_write_bytes, find_stale_temporaries
from bayesnas_book.config import RunConfig, config_to_dict
from bayesnas_book.curvature.compare import MethodSpec
from bayesnas_book.intervals import t_interval

__all__ = [
    "METRICS",
    "STUDY_METHODS",
    "CurvatureStudyError",
    "choose_method",
    "mean_interval",
    "run_curvature_study",
    "study_points",
    "summarize_study",
]

POINTS_FILE = "points.jsonl"
SUMMARY_FILE = "curvature.json"
FILES = (POINTS_FILE, SUMMARY_FILE, "provenance.json")

#: The methods of the study: the sweep (train and eval BN) and Monte-Carlo GGN with 1, 4, 16 draws.
STUDY_METHODS: tuple[MethodSpec, ...] = (
    MethodSpec("recursion", "recursion"),
    MethodSpec("recursion, eval BN", "recursion", batchnorm="eval"),
    MethodSpec("mc_ggn x1", "mc_ggn", {"num_samples": 1}),
    MethodSpec("mc_ggn x4", "mc_ggn", {"num_samples": 4}),
    MethodSpec("mc_ggn x16", "mc_ggn", {"num_samples": 16}),
)

#: The per-method scalars that :func:`summarize_study` aggregates over seeds.
METRICS = (
    "relative_error",
    "norm_ratio",
    "pearson",
    "spearman",
    "agreement",
    "keep_agreement",
    "disagreements",
    "pruned",
    "cost_ratio",
)


class CurvatureStudyError(RuntimeError):
    """The study cannot start or resume as asked (the message says why and what to do)."""


def mean_interval(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """:func:`~bayesnas_book.intervals.t_interval` of the values that are numbers (NaN dropped).

    A metric can be undefined for one seed (e.g. a correlation of a constant vector); the
    interval is over the seeds where it is defined, and ``n`` says how many.

    Raises:
        ValueError: for a ``level`` outside ``(0, 1)`` or no value that is a number.
    """
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"`level` must be in (0, 1), got {level!r}")
    finite = [float(v) for v in values if not math.isnan(float(v))]
    if not finite:
        raise ValueError(f"`values` holds no number to average, got {list(values)!r}")
    return t_interval(finite, level)


def study_points(config: RunConfig, points: Sequence[int]) -> list[dict[str, Any]]:
    """Check ``points`` against the search's schedule and name each.

    Args:
        config: the run configuration (its schedule).
        points: completed schedule steps, increasing, each in ``0..len(schedule) - 1``, at most
            the step of the schedule's last update.

    Returns:
        One dict per point: ``{"step", "label", "update"}`` (``update``: the search takes its
        curvature at this step).

    Raises:
        CurvatureStudyError: for an empty, unsorted or repeated list, or a point past the last
            update of the schedule.
    """
    from bayesnas_book.search import search_schedule

    schedule = search_schedule(config)
    updates = [i for i, step in enumerate(schedule) if step["phase"] == "update"]
    points = list(points)
    if not points or any(isinstance(p, bool) or not isinstance(p, int) for p in points):
        raise CurvatureStudyError(
            f"give at least one point (an integer schedule step), got {points}"
        )
    if points != sorted(set(points)) or points[0] < 0 or points[-1] > updates[-1]:
        raise CurvatureStudyError(
            f"points must be increasing, distinct schedule steps in 0..{updates[-1]} (the last "
            f"update); got {points}; the schedule is {[s['phase'] for s in schedule]}"
        )
    named = []
    for p in points:
        done = [s["phase"] for s in schedule[:p]]
        if p == 0:
            label = "initialised"
        elif p in updates:
            label = f"update {updates.index(p) + 1}"
        else:
            label = f"after {done.count('warmup')} warm-up + {done.count('switch')} switch epochs"
        named.append({"step": p, "label": label, "update": p in updates})
    return named


def _check_study(seeds: Sequence[int], num_batches: int, batch_size: int, repeats: int) -> None:
    if not seeds:
        raise CurvatureStudyError("give at least one seed")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad or len(set(seeds)) != len(seeds):
        raise CurvatureStudyError(f"seeds must be distinct integers >= 0, got {list(seeds)}")
    for name, value in (
        ("num_batches", num_batches),
        ("batch_size", batch_size),
        ("repeats", repeats),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CurvatureStudyError(f"`{name}` must be a positive integer, got {value!r}")
    if batch_size < 2:
        raise CurvatureStudyError(
            "`batch_size` must be >= 2: train-mode BatchNorm needs two images a batch"
        )


def _read_done(out: Path, header: dict[str, Any], resume: bool) -> list[dict[str, Any]]:
    path = out / POINTS_FILE
    if not path.exists():
        if resume and not out.is_dir():
            raise CurvatureStudyError(
                f"cannot resume: the folder {out} does not exist; start without --resume"
            )
        stale = find_stale_temporaries(out, FILES)
        if out.exists() and any(p not in stale for p in out.iterdir()) and not resume:
            raise CurvatureStudyError(
                f"{out} is not empty and holds no curvature study; choose another --out "
                "(nothing was overwritten)"
            )
        return []
    if not resume:
        raise CurvatureStudyError(
            f"{out} already holds a curvature study ({POINTS_FILE}); pass --resume to "
            "continue it, or choose another --out (nothing was overwritten)"
        )
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as error:
        raise CurvatureStudyError(
            f"{path} is corrupt ({error}); remove it to start again"
        ) from None
    if not lines or lines[0].get("header") != header:
        raise CurvatureStudyError(
            f"{path} belongs to a study with other settings; resume with the same "
            "ones, or choose another --out"
        )
    return lines[1:]


def _write_done(out: Path, header: dict[str, Any], done: list[dict[str, Any]]) -> None:
    text = "\n".join(json.dumps(line) for line in [{"header": header}, *done]) + "\n"
    atomic_write_bytes(out / POINTS_FILE, text.encode())


def _compare_at(
    run: Any,
    step: int,
    num_batches: int,
    batch_size: int,
    methods: Sequence[MethodSpec],
    repeats: int,
) -> dict[str, Any]:
    """The comparison on the search's own curvature images for ``step``, at the run's state."""
    from bayesnas_book.curvature.compare import compare_curvature_methods
    from bayesnas_book.search_data import epoch_loader, take

    config = run.config
    loader = epoch_loader(
        run.data.switch, batch_size, config.seed, 10_000 + step
    )  # the search's order
    batches = [
        (x.to(run.device, run.float_dtype), y.to(run.device)) for x, y in take(loader, num_batches)
    ]
    comparison = compare_curvature_methods(
        run.model,
        batches,
        methods,
        lambda_o=config.search.lambda_o,
        lambda_c=config.search.lambda_c,
        threshold=config.search.prune_threshold,
        prior_variance=run.gamma,
        repeats=repeats,
        warmup=1,
        seed=config.seed,
    )
    rows = []
    for row in comparison.rows:
        record = row.record()
        record["disagreements"] = int((row.prune_mask != comparison.rows[0].prune_mask).sum())
        record["diagonal"] = row.diagonal.tolist()
        rows.append(record)
    return {
        "names": list(comparison.names),
        "num_groups": comparison.num_groups,
        "num_examples": comparison.num_examples,
        "forward_backward_s": comparison.forward_backward_s,
        "rows": rows,
    }


def summarize_study(done: Sequence[dict[str, Any]], level: float = 0.95) -> dict[str, Any]:
    """Per point and method, every metric of :data:`METRICS` as :func:`mean_interval` over seeds.

    Args:
        done: the ``points.jsonl`` lines (each ``{"seed", "step", "label", "rows", ...}``).
        level: the intervals' coverage.

    Returns:
        ``{"level", "seeds", "points": [...]}``, each point ``{"step", "label", "update",
        "num_groups", "reference_pruned", "methods": {label: {metric: interval}}}``.

    Raises:
        ValueError: if ``done`` is empty.
    """
    if not done:
        raise ValueError("no finished (seed, point) to summarise")
    steps = sorted({line["step"] for line in done})
    points = []
    for step in steps:
        lines = [line for line in done if line["step"] == step]
        labels = [row["label"] for row in lines[0]["rows"] if not row["is_reference"]]
        methods = {}
        for label in labels:
            rows = [next(r for r in line["rows"] if r["label"] == label) for line in lines]
            methods[label] = {
                "method": rows[0]["method"],
                "batchnorm": rows[0]["batchnorm"],
                **{m: mean_interval([r[m] for r in rows], level) for m in METRICS},
            }
        reference = [next(r for r in line["rows"] if r["is_reference"]) for line in lines]
        points.append(
            {
                "step": step,
                "label": lines[0]["label"],
                "update": lines[0]["update"],
                "num_groups": lines[0]["num_groups"],
                "num_examples": lines[0]["num_examples"],
                "reference_pruned": mean_interval([r["pruned"] for r in reference], level),
                "reference_cost_ratio": mean_interval([r["cost_ratio"] for r in reference], level),
                "methods": methods,
            }
        )
    return {"level": level, "seeds": sorted({line["seed"] for line in done}), "points": points}


def choose_method(
    summary: dict[str, Any], candidates: Sequence[str] | None = None
) -> dict[str, Any]:
    """The search's curvature method by a stated rule, over the points where the search takes it.

    Rule: over the update points of ``summary`` (all points if it has none), average each
    candidate's mean agreement with the exact decisions; the highest wins, unless its lead over
    a cheaper candidate is inside the larger of the two t-interval half-widths (averaged over the
    points), in which case the cheapest such candidate wins.

    Args:
        summary: from :func:`summarize_study`.
        candidates: method labels; default every train-mode BatchNorm method.

    Returns:
        ``{"label", "method", "options_label", "agreement", "cost_ratio", "ranking"}``, ranking:
        ``[(label, mean agreement, mean half-width, mean cost ratio), ...]`` best first.

    Raises:
        ValueError: for an unknown candidate or no candidate.
    """
    points = [p for p in summary["points"] if p["update"]] or summary["points"]
    available = points[0]["methods"]
    if candidates is None:
        candidates = [label for label, m in available.items() if m["batchnorm"] == "train"]
    unknown = [c for c in candidates if c not in available]
    if unknown or not candidates:
        raise ValueError(f"candidates must be some of {list(available)}, got {list(candidates)}")

    def average(label: str, metric: str, key: str) -> float:
        return statistics.fmean(p["methods"][label][metric][key] for p in points)

    def half_width(label: str) -> float:
        widths = [
            (p["methods"][label]["agreement"]["high"] - p["methods"][label]["agreement"]["low"]) / 2
            for p in points
        ]
        widths = [w for w in widths if not math.isnan(w)]
        return statistics.fmean(widths) if widths else 0.0

    ranking = sorted(
        (
            (c, average(c, "agreement", "mean"), half_width(c), average(c, "cost_ratio", "mean"))
            for c in candidates
        ),
        key=lambda r: (-r[1], r[3]),
    )
    best = ranking[0]
    tied = [r for r in ranking if best[1] - r[1] <= max(best[2], r[2])]
    chosen = min(tied, key=lambda r: r[3])
    return {
        "label": chosen[0],
        "method": available[chosen[0]]["method"],
        "agreement": chosen[1],
        "cost_ratio": chosen[3],
        "ranking": ranking,
    }


def run_curvature_study(
    config: RunConfig,
    seeds: Sequence[int],
    out: str | Path,
    *,
    points: Sequence[int] | None = None,
    num_batches: int = 2,
    batch_size: int = 8,
    methods: Sequence[MethodSpec] = STUDY_METHODS,
    repeats: int = 2,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compare the curvature methods for every seed at every point; write ``out`` (see above).

    Each seed runs the search's schedule (:class:`~bayesnas_book.search.SearchRun` with
    ``config`` and that seed, its own update at an update step) and stops at each point to
    compare. The exact reference costs ``batch_size * classes`` backward passes per batch, so
    batches are small.

    Args:
        config: the run configuration (the quick profile: the digits supernet).
        seeds: search seeds, distinct integers >= 0.
        out: the study folder.
        points: completed schedule steps (:func:`study_points`); default every update step and
            the steps 0 and the end of the warm-up.
        num_batches: batches of the switch split compared on per point.
        batch_size: images per batch.
        methods: the compared methods (default :data:`STUDY_METHODS`).
        repeats: timed repetitions per method and batch.
        resume: continue the study in ``out``.
        log: called with one line per finished ``(seed, point)`` (default: stderr).

    Returns:
        :func:`summarize_study` of every ``(seed, point)`` (also written to ``curvature.json``).

    Raises:
        CurvatureStudyError: for bad settings, an occupied ``out`` without ``resume``, or a
            ``points.jsonl`` of another study.
    """
    from bayesnas_book.provenance import provenance_record, write_json
    from bayesnas_book.search import SearchRun, search_schedule

    started = time.time()
    _check_study(seeds, num_batches, batch_size, repeats)
    if points is None:
        schedule = search_schedule(config)
        warm = sum(step["phase"] == "warmup" for step in schedule)
        points = sorted({0, warm, *(i for i, s in enumerate(schedule) if s["phase"] == "update")})
    named = study_points(config, points)
    log = log or (lambda line: print(line, file=sys.stderr))
    out = Path(out)
    header = {
        "config": config_to_dict(config),
        "seeds": list(seeds),
        "points": [p["step"] for p in named],
        "num_batches": num_batches,
        "batch_size": batch_size,
        "methods": [
            {
                "label": m.label,
                "method": m.method,
                "options": dict(m.options),
                "batchnorm": m.batchnorm,
            }
            for m in methods
        ],
    }
    done = _read_done(out, header, resume)
    finished = {(line["seed"], line["step"]) for line in done}
    for seed in seeds:
        if all((seed, p["step"]) in finished for p in named):
            continue
        run = SearchRun(dataclasses.replace(config, seed=seed))
        for point in named:
            while run.completed < point["step"]:
                run.run_step(run.completed)
            if (seed, point["step"]) in finished:
                continue
            tick = time.perf_counter()
            result = _compare_at(run, point["step"], num_batches, batch_size, methods, repeats)
            last = run.metrics[-1] if run.metrics else {}
            done.append(
                {
                    "seed": seed,
                    **point,
                    "train_loss": last.get("loss"),
                    "train_accuracy": last.get("accuracy"),
                    **result,
                }
            )
            out.mkdir(parents=True, exist_ok=True)
            _write_done(out, header, done)
            reference, *others = result["rows"]
            log(
                f"seed {seed}, step {point['step']} ({point['label']}): exact prunes "
                f"{reference['pruned']}/{result['num_groups']}; disagreements "
                + ", ".join(f"{r['label']} {r['disagreements']}" for r in others)
                + f" ({time.perf_counter() - tick:.0f} s)"
            )
    summary = summarize_study(done)
    summary["choice"] = choose_method(summary)
    summary["search_draws"] = config.search.curvature_batches * config.data.batch_size
    summary["settings"] = {k: v for k, v in header.items() if k != "config"}
    write_json(out / SUMMARY_FILE, summary)
    write_json(
        out / "provenance.json",
        provenance_record(config_to_dict(config), run_device(config), started),
    )
    return summary


def run_device(config: RunConfig) -> Any:
    """The device the study's runs use."""
    from bayesnas_book.device import resolve_device

    return resolve_device(config.device)
