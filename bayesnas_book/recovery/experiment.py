"""The recovery experiment: does a search find the planted cells? Four methods, one budget.

``bayesnas-book recover --seeds 0 1 2 3 4 --lambdas 0.1 0.05 --out DIR`` labels the digits with
the teacher of the planted cells (:mod:`bayesnas_book.recovery.teacher`) and, on those labels and
the same splits, supernet and epochs, scores the (edge, op) pairs each method returns against the
planted ones (:mod:`bayesnas_book.recovery.metrics`):

* ``bayesnas``: Algorithm 1 (:mod:`bayesnas_book.search`) with ``lambda_o = lambda_c = lambda``,
  every surviving pair (the BayesNAS rule);
* ``magnitude``: DARTS's rule (2 edges per node, 1 op per edge) on the same search's switches;
* ``random``: cells with as many pairs per cell type as the BayesNAS cells, ``random_draws``
  draws per search (their scores averaged), seeded by the search's seed;
* ``darts``: first-order DARTS (:mod:`bayesnas_book.darts`) with DARTS's rule; it has no lambda,
  so it runs once per seed.

Before the searches, a check that the labels carry the architecture: the planted cells and
``check_draws`` random cells of the same size are trained stand-alone the same way on the
teacher's training split and tested on its test split.

Files in ``DIR``: ``settings.jsonl`` (a header, the check, then one line per finished search,
rewritten atomically after each, so ``--resume`` continues at the first search not in it),
``results.json`` (the summary: precision and recall per method and lambda, mean and 95% t
interval over the seeds) and ``provenance.json``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from bayesnas_book.atomic import atomic_write_bytes, find_stale_temporaries
from bayesnas_book.checkpoint import prepare_run_folder
from bayesnas_book.config import RunConfig, config_to_dict
from bayesnas_book.device import resolve_device
from bayesnas_book.intervals import t_interval
from bayesnas_book.provenance import provenance_record, write_json
from bayesnas_book.recovery.metrics import genotype_pairs, precision_recall
from bayesnas_book.recovery.teacher import (
    build_teacher,
    label_balance,
    teacher_search_data,
)
from bayesnas_book.seeding import seed_everything

__all__ = ["METHODS", "RecoveryError", "recovery_jobs", "recovery_summary", "run_recovery"]

METHODS = ("bayesnas", "magnitude", "random", "darts")
SETTINGS_FILE = "settings.jsonl"
FILES = (SETTINGS_FILE, "results.json", "provenance.json")


class RecoveryError(RuntimeError):
    """The experiment cannot start or resume as asked (the message says why and what to do)."""


def recovery_jobs(
    seeds: Sequence[int], lambdas: Sequence[float], methods: Sequence[str] = METHODS
) -> list[dict[str, Any]]:
    """The searches to run: ``{"search": "bayesnas", "seed", "lambda"}`` per (seed, lambda) when
    a BayesNAS-derived method is asked for, and ``{"search": "darts", "seed"}`` per seed.

    Raises:
        RecoveryError: for no seeds, no lambdas, a repeated or negative seed, a lambda <= 0 or
            repeated, no methods, or an unknown method.
    """
    seeds, lambdas, methods = list(seeds), list(lambdas), list(methods)
    if not seeds or not lambdas:
        raise RecoveryError(
            f"give at least one seed and one lambda, got seeds {seeds} and lambdas {lambdas}"
        )
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise RecoveryError(f"seeds must be integers >= 0, got {bad}")
    bad_lambdas = [x for x in lambdas
                   if isinstance(x, bool) or not isinstance(x, (int, float)) or not x > 0]
    if bad_lambdas:
        raise RecoveryError(f"lambdas must be numbers > 0, got {bad_lambdas}")
    if len(set(seeds)) != len(seeds) or len(set(lambdas)) != len(lambdas):
        raise RecoveryError(
            f"seeds and lambdas must not repeat, got seeds {seeds} and lambdas {lambdas}"
        )
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise RecoveryError(f"methods must be some of {', '.join(METHODS)}, got {methods}")
    jobs: list[dict[str, Any]] = []
    if set(methods) & {"bayesnas", "magnitude", "random"}:
        jobs += [
            {"search": "bayesnas", "seed": s, "lambda": float(x)} for x in lambdas for s in seeds
        ]
    if "darts" in methods:
        jobs += [{"search": "darts", "seed": s} for s in seeds]
    return jobs


def _score(genotype: Any, planted: set) -> dict[str, Any]:
    return {**precision_recall(genotype_pairs(genotype), planted), "genotype": genotype.to_dict()}


def _bayesnas_job(
    config: RunConfig,
    job: dict[str, Any],
    data: Any,
    planted: set,
    methods: Sequence[str],
    random_draws: int,
) -> dict[str, Any]:
    from bayesnas_book.experiments import random_genotype, search_sweep

    record = search_sweep(config, [(job["seed"], job["lambda"])], data=data)[0]
    scores: dict[str, Any] = {}
    if "bayesnas" in methods:
        scores["bayesnas"] = _score(record.genotype, planted)
    if "magnitude" in methods:
        scores["magnitude"] = _score(record.magnitude_genotype, planted)
    if "random" in methods:
        generator = torch.Generator().manual_seed(20_000 + job["seed"])
        draws = [
            precision_recall(genotype_pairs(random_genotype(record.genotype, generator)), planted)
            for _ in range(random_draws)
        ]
        scores["random"] = {
            key: sum(d[key] for d in draws) / len(draws) for key in ("precision", "recall", "found")
        }
        scores["random"]["draws"] = random_draws
    return {**job, "validation_accuracy": record.validation_accuracy, "scores": scores}


def _darts_job(
    config: RunConfig, job: dict[str, Any], data: Any, planted: set, arch_lr: float
) -> dict[str, Any]:
    from bayesnas_book.darts import run_darts

    result = run_darts(dataclasses.replace(config, seed=job["seed"]), data, arch_lr=arch_lr)
    return {
        **job,
        "validation_accuracy": result.metrics[-1]["validation_accuracy"],
        "scores": {"darts": _score(result.genotype, planted)},
        "alpha": {kind: a.tolist() for kind, a in result.alpha.items()},
    }


def architecture_check(
    config: RunConfig, teacher: Any, splits: dict[str, Any], draws: int
) -> dict[str, Any]:
    """Do the labels carry the architecture? Test top-1 of the planted cells and of ``draws``
    random cells of the same size, each trained stand-alone the same way (the teacher's macro
    shape, fresh weights, seed 0, ``config.train``) on the teacher's training split.

    Returns:
        ``{"planted": top-1, "random": [top-1 per draw], "labels": label_balance of all labels}``.
    """
    from bayesnas_book.experiments import random_genotype, train_and_test

    shape = {
        "channels": config.search.channels,
        "num_cells": 3,
        "in_channels": 1,
        "num_classes": 10,
    }
    labels = torch.cat([part.tensors[1] for part in splits.values()])
    planted = train_and_test(
        teacher.genotype, splits["train"], splits["test"], config.train, **shape
    )
    generator = torch.Generator().manual_seed(30_000)
    random = [
        train_and_test(
            random_genotype(teacher.genotype, generator),
            splits["train"],
            splits["test"],
            config.train,
            **shape,
        )["test_top1"]
        for _ in range(draws)
    ]
    return {"planted": planted["test_top1"], "random": random, "labels": label_balance(labels)}


def recovery_summary(
    done: Sequence[dict[str, Any]], confidence: float = 0.95
) -> list[dict[str, Any]]:
    """Per method and lambda (``None`` for DARTS, which has none): precision and recall over the
    seeds as :func:`~bayesnas_book.intervals.t_interval`, and the mean pair count.

    Raises:
        ValueError: if ``done`` holds no finished search.
    """
    if not done:
        raise ValueError("no finished search to summarise")
    groups: dict[tuple[str, float | None], list[dict[str, Any]]] = {}
    for line in done:
        for method, score in line["scores"].items():
            groups.setdefault((method, line.get("lambda")), []).append(score)
    order = {m: i for i, m in enumerate(METHODS)}
    rows = []
    for (method, lam), scores in sorted(
        groups.items(), key=lambda g: (order[g[0][0]], -(g[0][1] or 0.0))
    ):
        rows.append(
            {
                "method": method,
                "lambda": lam,
                "n": len(scores),
                "pairs": sum(s["found"] for s in scores) / len(scores),
                "precision": t_interval([s["precision"] for s in scores], confidence),
                "recall": t_interval([s["recall"] for s in scores], confidence),
            }
        )
    return rows


def _read_done(out: Path, header: dict[str, Any], resume: bool) -> list[dict[str, Any]]:
    path = out / SETTINGS_FILE
    if not path.exists():
        if resume and not out.is_dir():
            raise RecoveryError(
                f"cannot resume: the folder {out} does not exist; start without --resume, "
                "or pass the --out folder of the experiment to continue"
            )
        stale = find_stale_temporaries(out, FILES)
        if out.exists() and any(p not in stale for p in out.iterdir()) and not resume:
            raise RecoveryError(
                f"{out} is not empty and holds no recovery experiment; choose another --out "
                "(nothing was overwritten)"
            )
        return []
    if not resume:
        raise RecoveryError(
            f"{out} already holds a recovery experiment ({SETTINGS_FILE}); pass --resume to "
            "continue it, or choose another --out (nothing was overwritten)"
        )
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as error:
        raise RecoveryError(f"{path} is corrupt ({error}); remove it to start again") from None
    if not lines or lines[0].get("header") != header:
        raise RecoveryError(
            f"{path} belongs to an experiment with another configuration or settings; "
            "resume with the same ones, or choose another --out"
        )
    return lines[1:]


def _write_done(out: Path, header: dict[str, Any], done: list[dict[str, Any]]) -> None:
    text = "\n".join(json.dumps(line) for line in [{"header": header}, *done]) + "\n"
    atomic_write_bytes(out / SETTINGS_FILE, text.encode())


def run_recovery(
    config: RunConfig,
    seeds: Sequence[int],
    lambdas: Sequence[float],
    out: str | Path | None,
    resume: bool = False,
    methods: Sequence[str] = METHODS,
    teacher_seed: int = 0,
    random_draws: int = 10,
    check_draws: int = 3,
    darts_arch_lr: float = 0.1,
    progress: bool = False,
) -> dict[str, Any]:
    """Run (or continue) the recovery experiment; returns what ``results.json`` holds.

    Args:
        config: the profile: ``search`` shapes the supernet, the teacher and the epochs of both
            searches, ``train`` the stand-alone check.
        seeds: search seeds; lambdas: BayesNAS penalty strengths (``lambda_o = lambda_c``).
        out: the experiment folder; ``None`` keeps everything in memory (chapters).
        resume: continue the experiment in ``out``.
        methods: some of :data:`METHODS`.
        teacher_seed: seeds the teacher's weights.
        random_draws: random cells per BayesNAS search (>= 1).
        check_draws: random cells of the architecture check (0 skips the check).
        darts_arch_lr: Adam's learning rate on DARTS's alphas.
        progress: a tqdm bar over the searches.

    Raises:
        RecoveryError: for bad seeds, lambdas, methods or counts, a dataset other than the digits,
            an occupied ``out``, or a resume with other settings (nothing is created before these
            checks).
    """
    if config.data.dataset != "digits":
        raise RecoveryError(
            f'the recovery experiment labels the shipped digits (data.dataset = "digits"), '
            f"got {config.data.dataset!r}"
        )
    jobs = recovery_jobs(seeds, lambdas, methods)
    for name, value, low in (
        ("random_draws", random_draws, 1),
        ("check_draws", check_draws, 0),
        ("teacher_seed", teacher_seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise RecoveryError(f"`{name}` must be an integer >= {low}, got {value!r}")
    if not darts_arch_lr > 0:
        raise RecoveryError(f"`darts_arch_lr` must be > 0, got {darts_arch_lr!r}")
    header = {
        "config": config_to_dict(config),
        "jobs": jobs,
        "methods": list(methods),
        "teacher_seed": teacher_seed,
        "random_draws": random_draws,
        "check_draws": check_draws,
        "darts_arch_lr": darts_arch_lr,
    }
    out_path = Path(out) if out is not None else None
    done = _read_done(out_path, header, resume) if out_path is not None else []
    started = time.time()
    seed_everything(
        config.seed,
        deterministic=config.deterministic,
        num_threads=config.num_threads,
        dtype=config.dtype,
    )
    teacher = build_teacher(config, teacher_seed=teacher_seed)
    data, splits = teacher_search_data(config, teacher)
    planted = genotype_pairs(teacher.genotype)
    if out_path is not None:
        prepare_run_folder(out_path, FILES)
    resumed_with = len(done)
    bar = tqdm(
        total=len(jobs) + 1,
        initial=len(done),
        desc="recovery",
        unit="search",
        disable=not progress,
        file=sys.stderr,
    )
    if not done:
        check = architecture_check(config, teacher, splits, check_draws) if check_draws else None
        done.append({"check": check})
        if out_path is not None:
            _write_done(out_path, header, done)
        bar.update()
    finished = [
        {k: line[k] for k in ("search", "seed", "lambda") if k in line} for line in done[1:]
    ]
    for job in jobs:
        if job in finished:
            continue
        if job["search"] == "darts":
            line = _darts_job(config, job, data, planted, darts_arch_lr)
        else:
            line = _bayesnas_job(config, job, data, planted, methods, random_draws)
        done.append(line)
        if out_path is not None:
            _write_done(out_path, header, done)
        bar.update()
    bar.close()
    results = {
        "planted": teacher.genotype.to_dict(),
        "planted_pairs": len(planted),
        "check": done[0]["check"],
        "methods": list(methods),
        "seeds": list(seeds),
        "lambdas": [float(x) for x in lambdas],
        "summary": recovery_summary(done[1:]),
        "searches": done[1:],
    }
    if out_path is not None:
        write_json(out_path / "results.json", results)
        record = provenance_record(config_to_dict(config), resolve_device(config.device), started)
        record["recovery"] = {
            k: header[k]
            for k in ("methods", "teacher_seed", "random_draws", "check_draws", "darts_arch_lr")
        }
        record["recovery"].update(
            seeds=list(seeds), lambdas=[float(x) for x in lambdas], resumed_with=resumed_with
        )
        write_json(out_path / "provenance.json", record)
    return results
