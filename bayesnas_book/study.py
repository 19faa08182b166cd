"""The paper's RQ1 and RQ2 as one resumable study: many searches, each cell trained stand-alone.

``bayesnas-book study --seeds 0 1 2 --lambdas 0.1 0.05 --out DIR`` runs, for every
``(seed, lambda)`` (``lambda_o = lambda_c = lambda``), Algorithm 1 on the same data splits
(:func:`~bayesnas_book.experiments.search_sweep`), checks the connectivity of the derived cells
(RQ1, :func:`~bayesnas_book.experiments.connectivity_rows`) and trains four networks of cells
stand-alone the same way (same network shape, data, schedule and training seed), testing each once
on the held-out test split (RQ2, :data:`STUDY_RULES`):

* ``bayesnas``: the BayesNAS cells (entropy rule and node rule);
* ``magnitude``: DARTS's magnitude rule on the same switches (two edges per node, one op each),
  the paper's baseline, a much smaller network than the BayesNAS one;
* ``magnitude_matched``: the magnitude score's order of (edge, op) pairs, grown until the network
  has as many parameters as the BayesNAS one (:mod:`bayesnas_book.matched_cells`), so that the
  selection rule is compared at the same size. Its scores are the switches as trained just before
  the first architecture update: after an update the switches the entropy rule pruned are zero, so
  a magnitude order of the final switches would list the BayesNAS cell's own pairs first and, at
  its size, mostly give back the BayesNAS cell;
* ``random``: a random order of pairs grown to the same parameter count (drawn from a generator
  seeded by the search's seed).

The summary gives, per rule, the mean test top-1 with a Student-t 95% interval over the settings,
and the paired differences BayesNAS minus each other rule with their intervals
(:func:`~bayesnas_book.intervals.t_interval`). ``train_samples`` trains the stand-alone networks on
a fixed random subset of the training split (the same for every setting and rule): with all of it,
every network classifies nearly all held-out digits right and no difference between rules can show.

Files in ``DIR``:

* ``settings.jsonl``: one line per finished setting (its search's genotypes, connectivity rows,
  supernet accuracy and the three stand-alone results), rewritten atomically after each setting,
  so a killed study continues with ``--resume`` at the first setting not in it;
* ``study.json``: the summaries (RQ1: cells with a dangling node; RQ2: test top-1 per rule, mean,
  sd, n and 95% interval, parameters per rule and relative to the BayesNAS network, and the paired
  BayesNAS-minus-other differences with their intervals);
* ``provenance.json``: command, configuration, commit, device, versions, wall time.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from bayesnas_book.atomic import atomic_write_bytes, find_stale_temporaries
from bayesnas_book.checkpoint import prepare_run_folder
from bayesnas_book.config import RunConfig, config_to_dict
from bayesnas_book.data import run_digits_splits
from bayesnas_book.device import resolve_device
from bayesnas_book.experiments import SweepRecord, connectivity_rows, train_and_test
from bayesnas_book.intervals import t_interval
from bayesnas_book.matched_cells import magnitude_order, matched_genotype, random_order
from bayesnas_book.models.counting import count_parameters
from bayesnas_book.models.eval_net import cifar_network
from bayesnas_book.provenance import provenance_record, write_json
from bayesnas_book.search import SearchRun, search_schedule
from bayesnas_book.search_data import build_search_data
from bayesnas_book.seeding import seed_everything
from bayesnas_book.space.genotype import Genotype
from bayesnas_book.space.graph import get_cell_graph
from bayesnas_book.space.supernet import CELL_TYPES

__all__ = ["STUDY_RULES", "StudyError", "run_study", "search_with_switches", "study_genotypes", "study_summary",
           "train_subset"]

STUDY_RULES = ("bayesnas", "magnitude", "magnitude_matched", "random")
"""The cells each setting trains stand-alone, in table order (see the module docstring)."""

CONFIDENCE = 0.95

SETTINGS_FILE = "settings.jsonl"
FILES = (SETTINGS_FILE, "study.json", "provenance.json")  # every file a study writes into its folder


class StudyError(RuntimeError):
    """The study cannot start or resume as asked (the message says why and what to do)."""


def _check(seeds: Sequence[int], lambdas: Sequence[float]) -> list[tuple[int, float]]:
    if not seeds or not lambdas:
        raise StudyError(f"give at least one seed and one lambda, got seeds {list(seeds)} and lambdas {list(lambdas)}")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise StudyError(f"seeds must be integers >= 0, got {bad}")
    if any(not lam > 0 for lam in lambdas):
        raise StudyError(f"lambdas must be > 0, got {[lam for lam in lambdas if not lam > 0]}")
    settings = [(seed, float(lam)) for lam in lambdas for seed in seeds]
    if len(set(settings)) != len(settings):
        raise StudyError(f"seeds and lambdas must not repeat, got seeds {list(seeds)} and lambdas {list(lambdas)}")
    return settings


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in row.items()}


def _read_done(out: Path, header: dict[str, Any], resume: bool) -> list[dict[str, Any]]:
    path = out / SETTINGS_FILE
    if not path.exists():
        if resume and not out.is_dir():
            raise StudyError(f"cannot resume: the study folder {out} does not exist; start the study without --resume, "
                             "or pass the --out folder of the study to continue")
        stale = find_stale_temporaries(out, FILES)  # a study killed while writing its first setting
        if out.exists() and any(p not in stale for p in out.iterdir()) and not resume:
            raise StudyError(f"{out} is not empty and holds no study; choose another --out (nothing was overwritten)")
        return []
    if not resume:
        raise StudyError(f"{out} already holds a study ({SETTINGS_FILE}); pass --resume to continue it, "
                         "or choose another --out (nothing was overwritten)")
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as error:
        raise StudyError(f"{path} is corrupt ({error}); remove it to start the study again") from None
    if not lines or lines[0].get("header") != header:
        raise StudyError(f"{path} belongs to a study with another configuration or settings; "
                         "resume with the same ones, or choose another --out")
    return lines[1:]


def _write_done(out: Path, header: dict[str, Any], done: list[dict[str, Any]]) -> None:
    text = "\n".join(json.dumps(line) for line in [{"header": header}, *done]) + "\n"
    atomic_write_bytes(out / SETTINGS_FILE, text.encode())


def _rules(done: Sequence[dict[str, Any]]) -> list[str]:
    rules = [row["rule"] for row in done[0]["standalone"]]
    for setting in done:
        if [row["rule"] for row in setting["standalone"]] != rules:
            raise ValueError(f"every setting must train the same rules, got {rules} and "
                             f"{[row['rule'] for row in setting['standalone']]}")
    return rules


def _interval(values: Sequence[float]) -> dict[str, float]:
    """Mean, sd, n and the t interval; one value has no interval (its ends are the value)."""
    if len(values) > 1:
        return t_interval(values, CONFIDENCE)
    value = float(values[0])
    return {"mean": value, "std": 0.0, "n": 1, "low": value, "high": value, "confidence": CONFIDENCE}


def study_summary(done: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """RQ1 and RQ2 summaries of finished settings (see the module docstring).

    Returns:
        ``{"settings", "rq1", "rq2"}``; ``rq2`` holds ``rules``, ``test_top1`` (per rule: mean,
        std, n, low, high, confidence), ``paired`` (``bayesnas_minus_<rule>``: the same, plus
        ``bayesnas_better`` and ``ties``), ``params`` (per rule: the mean parameter count) and
        ``params_relative`` (per rule: min and max over settings of its network's parameters over
        the BayesNAS network's).

    Raises:
        ValueError: if ``done`` is empty or its settings trained different rules.
    """
    if not done:
        raise ValueError("no finished setting to summarise")
    rules = _rules(done)
    connectivity = [row for setting in done for row in setting["connectivity"]]
    by_setting = [{row["rule"]: row for row in setting["standalone"]} for setting in done]
    test_top1 = {rule: _interval([rows[rule]["test_top1"] for rows in by_setting]) for rule in rules}
    paired: dict[str, dict[str, float]] = {}
    for other in rules[1:]:
        differences = [rows[rules[0]]["test_top1"] - rows[other]["test_top1"] for rows in by_setting]
        paired[f"{rules[0]}_minus_{other}"] = {**_interval(differences),
                                               "bayesnas_better": sum(d > 0 for d in differences),
                                               "ties": sum(d == 0 for d in differences)}
    relative = {rule: [rows[rule]["params"] / rows[rules[0]]["params"] for rows in by_setting] for rule in rules}
    return {
        "settings": len(done),
        "rq1": {"cells": len(connectivity), "cells_with_dangling_node": sum(bool(r["dangling"]) for r in connectivity),
                "cells_dangling_without_node_rule": sum(bool(r["dangling_without_node_rule"]) for r in connectivity)},
        "rq2": {"rules": rules, "test_top1": test_top1, "paired": paired,
                "params": {rule: statistics.fmean(rows[rule]["params"] for rows in by_setting) for rule in rules},
                "params_relative": {rule: {"min": min(r), "max": max(r)} for rule, r in relative.items()}},
    }


def train_subset(train_set: Dataset, samples: int | None, seed: int) -> Dataset:
    """``samples`` images of ``train_set`` drawn without replacement by ``seed`` (all for ``None``).

    Raises:
        StudyError: if ``samples`` is not in ``[10, len(train_set)]``.
    """
    if samples is None:
        return train_set
    if isinstance(samples, bool) or not isinstance(samples, int) or not 10 <= samples <= len(train_set):
        raise StudyError(f"--train-samples must be an integer in [10, {len(train_set)}] (the training split's size), "
                         f"got {samples!r}")
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed))
    return Subset(train_set, sorted(order[:samples].tolist()))


def search_with_switches(config: RunConfig, seed: int, lam: float, data: Any) -> tuple[SweepRecord, dict[str, Any]]:
    """One search (as :func:`~bayesnas_book.experiments.search_sweep` runs it) and its switches before the first update.

    Returns:
        The record, and per cell type the ``(E, 1 + K)`` mean ``|s|`` over the cells of that type,
        taken just before the schedule's first ``update`` step.
    """
    search = dataclasses.replace(config.search, lambda_o=lam, lambda_c=lam)
    run = SearchRun(dataclasses.replace(config, seed=seed, search=search), data=data)
    before: dict[str, Any] = {}
    for index, step in enumerate(search_schedule(run.config)):
        if step["phase"] == "update" and not before:
            with torch.no_grad():
                before = {kind: run.model.switch_values(kind).abs().mean(0).cpu() for kind in CELL_TYPES}
        run.run_step(index)
    return SweepRecord.from_run(run), before


def study_genotypes(record: SweepRecord, space: str, params: Any, switches: dict[str, Any]) -> dict[str, Genotype]:
    """The cells of :data:`STUDY_RULES` for one finished search.

    Args:
        record: the search.
        space: the search space.
        params: ``Genotype -> int``, the parameter count of its stand-alone network.
        switches: per cell type, the ``(E, 1 + K)`` switch values the magnitude order ranks
            (:func:`search_with_switches`: before the first update).
    """
    graphs = {kind: get_cell_graph(f"{space}_{kind}") for kind in CELL_TYPES}
    generator = torch.Generator().manual_seed(10_000 + record.seed)
    return {
        "bayesnas": record.genotype,
        "magnitude": record.magnitude_genotype,
        "magnitude_matched": matched_genotype(record.genotype, graphs,
                                              {k: magnitude_order(switches[k]) for k in CELL_TYPES}, params,
                                              "magnitude_matched"),
        "random": matched_genotype(record.genotype, graphs, {k: random_order(graphs[k], generator) for k in CELL_TYPES},
                                   params, "random"),
    }


def _setting_line(index: int, total: int, setting: dict[str, Any], seconds: float) -> str:
    """One line for a finished setting: its supernet's accuracy and its three stand-alone results."""
    top1 = ", ".join(f"{row['rule']} {row['test_top1']:.4f} ({row['params']:,.0f} params)"
                     for row in setting["standalone"])
    return (f"study: setting {index}/{total} (seed {setting['seed']}, lambda {setting['lambda']:g}) done in "
            f"{seconds:.0f} s: supernet validation accuracy {setting['validation_accuracy']:.4f}; "
            f"stand-alone test top-1: {top1}")


def run_study(config: RunConfig, seeds: Sequence[int], lambdas: Sequence[float], out: str | Path,
              resume: bool = False, channels: int | None = None, num_cells: int | None = None,
              progress: bool = False, train_samples: int | None = None) -> dict[str, Any]:
    """Run (or continue) the study; returns what ``study.json`` holds.

    Args:
        config: the profile; ``search`` runs Algorithm 1, ``train`` trains the cells stand-alone.
        seeds: search seeds (each also the training seed of its three networks).
        lambdas: penalty strengths, each used for both ``lambda_o`` and ``lambda_c``.
        out: the study folder.
        resume: continue the study in ``out``.
        channels, num_cells: the stand-alone network (default ``config.network``).
        progress: a tqdm bar over the settings, and one line on stderr as each finishes
            (a setting takes minutes: a search and four trainings).
        train_samples: train the stand-alone networks on this many images of the training split
            (a subset drawn by ``config.data.split_seed``; default all).

    Raises:
        StudyError: for bad seeds or lambdas, a bad ``train_samples``, a dataset other than the digits, an occupied
            ``out``, a resume with other settings, or a resume whose ``out`` does not exist (nothing
            is created before these checks and the data pass).
    """
    if config.data.dataset != "digits":
        raise StudyError(f"the study runs on the shipped digits (data.dataset = \"digits\"), "
                         f"got {config.data.dataset!r}; for CIFAR-10 run `search` and `train` per setting")
    settings = _check(seeds, lambdas)
    channels = channels or config.network.channels
    num_cells = num_cells or config.network.num_cells
    out = Path(out)
    header = {"config": config_to_dict(config), "settings": [list(s) for s in settings],
              "network": {"channels": channels, "num_cells": num_cells}, "rules": list(STUDY_RULES),
              "train_samples": train_samples}
    done = _read_done(out, header, resume)  # only reads: a refused study creates nothing
    started = time.time()
    seed_everything(config.seed, deterministic=config.deterministic, num_threads=config.num_threads,
                       dtype=config.dtype)
    data = build_search_data(config)
    splits = run_digits_splits(config.data)
    train_set = train_subset(splits["train"], train_samples, config.data.split_seed)
    prepare_run_folder(out, FILES)  # the inputs are checked: create the folder, clear killed writes' temporaries
    finished = {(d["seed"], d["lambda"]) for d in done}

    def params(genotype: Genotype) -> int:
        return count_parameters(cifar_network(genotype, channels=channels, num_cells=num_cells,
                                              num_classes=data.num_classes, in_channels=data.in_channels))
    bar = tqdm(total=len(settings), initial=len(finished), desc="study settings", unit="setting", disable=not progress,
               file=sys.stderr)
    for index, (seed, lam) in enumerate(settings, start=1):
        if (seed, lam) in finished:
            continue
        setting_started = time.perf_counter()
        record, switches = search_with_switches(config, seed, lam, data)
        genotypes = study_genotypes(record, config.search.space, params, switches)
        standalone = []
        for rule, genotype in genotypes.items():
            scores = train_and_test(genotype, train_set, splits["test"], config.train, channels=channels,
                                    num_cells=num_cells, in_channels=data.in_channels, num_classes=data.num_classes,
                                    seed=seed)
            standalone.append({"seed": seed, "lambda_o": lam, "rule": rule,
                               "pairs_normal": len(genotype.normal.edges()),
                               "pairs_reduction": len(genotype.reduction.edges()), **scores})
        done.append({"seed": seed, "lambda": lam, "validation_accuracy": record.validation_accuracy,
                     "genotype": record.genotype.to_dict(), "magnitude_genotype": record.magnitude_genotype.to_dict(),
                     "genotypes": {rule: g.to_dict() for rule, g in genotypes.items()},
                     "connectivity": [_jsonable(r) for r in connectivity_rows(record, space=config.search.space)],
                     "standalone": standalone})
        _write_done(out, header, done)  # each search and training seeds itself: settings are independent
        if progress:
            seconds = time.perf_counter() - setting_started
            tqdm.write(_setting_line(index, len(settings), done[-1], seconds), file=sys.stderr)
        bar.update()
    bar.close()
    summary = study_summary(done)
    write_json(out / "study.json", summary)
    record = provenance_record(config_to_dict(config), resolve_device(config.device), started)
    record["study"] = {"seeds": list(seeds), "lambdas": [float(x) for x in lambdas],
                       "network": header["network"], "rules": list(STUDY_RULES), "train_samples": train_samples,
                       "resumed_with": len(finished)}
    write_json(out / "provenance.json", record)
    return summary

