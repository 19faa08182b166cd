"""The paper's RQ1 and RQ2 as one resumable study: many searches, each cell trained stand-alone.

``bayesnas-book study --seeds 0 1 2 --lambdas 0.1 0.05 --out DIR`` runs, for every
``(seed, lambda)`` (``lambda_o = lambda_c = lambda``), Algorithm 1 on the same data splits
(:func:`~bayesnas_book.experiments.search_sweep`), checks the connectivity of the derived cells
(RQ1, :func:`~bayesnas_book.experiments.connectivity_rows`) and trains the BayesNAS cells, the
magnitude-rule cells from the same switches and random cells of the same size, each stand-alone
the same way, testing each once on the held-out test split (RQ2,
:func:`~bayesnas_book.experiments.compare_cells`).

Files in ``DIR``:

* ``settings.jsonl``: one line per finished setting (its search's genotypes, connectivity rows,
  supernet accuracy and the three stand-alone results), rewritten atomically after each setting,
  so a killed study continues with ``--resume`` at the first setting not in it;
* ``study.json``: the summaries (RQ1: cells with a dangling node; RQ2: test top-1 per rule, mean,
  sd and n, and the paired BayesNAS-minus-magnitude and BayesNAS-minus-random differences);
* ``provenance.json``: command, configuration, commit, device, versions, wall time.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from bayesnas_book.atomic import atomic_write_bytes, find_stale_temporaries
from bayesnas_book.checkpoint import prepare_run_folder
from bayesnas_book.config import RunConfig, config_to_dict
from bayesnas_book.data import run_digits_splits
from bayesnas_book.device import resolve_device
from bayesnas_book.experiments import (
    RULES,
    compare_cells,
    connectivity_rows,
    search_sweep,
    summarize,
)
from bayesnas_book.provenance import provenance_record, write_json
from bayesnas_book.search_data import build_search_data
from bayesnas_book.seeding import seed_everything

__all__ = ["StudyError", "run_study", "study_summary"]

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


def study_summary(done: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """RQ1 and RQ2 summaries of finished settings (see the module docstring).

    Raises:
        ValueError: if ``done`` is empty.
    """
    if not done:
        raise ValueError("no finished setting to summarise")
    connectivity = [row for setting in done for row in setting["connectivity"]]
    standalone = [row for setting in done for row in setting["standalone"]]
    by_rule = summarize(standalone, "rule", "test_top1")
    paired: dict[str, dict[str, float]] = {}
    for other in ("magnitude", "random"):
        differences = []
        for setting in done:
            top1 = {row["rule"]: row["test_top1"] for row in setting["standalone"]}
            differences.append(top1["bayesnas"] - top1[other])
        paired[f"bayesnas_minus_{other}"] = {
            "mean": statistics.fmean(differences),
            "std": statistics.stdev(differences) if len(differences) > 1 else 0.0,
            "n": len(differences),
            "bayesnas_better": sum(d > 0 for d in differences),
            "ties": sum(d == 0 for d in differences),
        }
    return {
        "settings": len(done),
        "rq1": {"cells": len(connectivity), "cells_with_dangling_node": sum(bool(r["dangling"]) for r in connectivity),
                "cells_dangling_without_node_rule": sum(bool(r["dangling_without_node_rule"]) for r in connectivity)},
        "rq2": {"test_top1": {rule: by_rule[rule] for rule in RULES}, "paired": paired,
                "params": {rule: summarize(standalone, "rule", "params")[rule]["mean"] for rule in RULES}},
    }


def _setting_line(index: int, total: int, setting: dict[str, Any], seconds: float) -> str:
    """One line for a finished setting: its supernet's accuracy and its three stand-alone results."""
    top1 = ", ".join(f"{row['rule']} {row['test_top1']:.4f}" for row in setting["standalone"])
    return (f"study: setting {index}/{total} (seed {setting['seed']}, lambda {setting['lambda']:g}) done in "
            f"{seconds:.0f} s: supernet validation accuracy {setting['validation_accuracy']:.4f}; "
            f"stand-alone test top-1: {top1}")


def run_study(config: RunConfig, seeds: Sequence[int], lambdas: Sequence[float], out: str | Path,
              resume: bool = False, channels: int | None = None, num_cells: int | None = None,
              progress: bool = False) -> dict[str, Any]:
    """Run (or continue) the study; returns what ``study.json`` holds.

    Args:
        config: the profile; ``search`` runs Algorithm 1, ``train`` trains the cells stand-alone.
        seeds: search seeds (each also the training seed of its three networks).
        lambdas: penalty strengths, each used for both ``lambda_o`` and ``lambda_c``.
        out: the study folder.
        resume: continue the study in ``out``.
        channels, num_cells: the stand-alone network (default ``config.network``).
        progress: a tqdm bar over the settings, and one line on stderr as each finishes
            (a setting takes minutes: a search and three trainings).

    Raises:
        StudyError: for bad seeds or lambdas, a dataset other than the digits, an occupied
            ``out``, a resume with other settings, or a resume whose ``out`` does not exist (nothing
            is created before these checks and the data pass).
    """
    if config.data.dataset != "digits":
        raise StudyError(f"the study runs on the shipped digits (data.dataset = \"digits\"), got {config.data.dataset!r}; "
                         "for CIFAR-10 run `search` and `train` per setting")
    settings = _check(seeds, lambdas)
    channels = channels or config.network.channels
    num_cells = num_cells or config.network.num_cells
    out = Path(out)
    header = {"config": config_to_dict(config), "settings": [list(s) for s in settings],
              "network": {"channels": channels, "num_cells": num_cells}}
    done = _read_done(out, header, resume)  # only reads: a refused study creates nothing
    started = time.time()
    seed_everything(config.seed, deterministic=config.deterministic, num_threads=config.num_threads,
                       dtype=config.dtype)
    data = build_search_data(config)
    splits = run_digits_splits(config.data)
    prepare_run_folder(out, FILES)  # the inputs are checked: create the folder, clear killed writes' temporaries
    finished = {(d["seed"], d["lambda"]) for d in done}
    bar = tqdm(total=len(settings), initial=len(finished), desc="study settings", unit="setting", disable=not progress,
               file=sys.stderr)
    for index, (seed, lam) in enumerate(settings, start=1):
        if (seed, lam) in finished:
            continue
        setting_started = time.perf_counter()
        record = search_sweep(config, [(seed, lam)], data=data)[0]
        standalone = compare_cells([record], splits["train"], splits["test"], config.train, channels=channels,
                                   num_cells=num_cells, in_channels=data.in_channels, num_classes=data.num_classes)
        done.append({"seed": seed, "lambda": lam, "validation_accuracy": record.validation_accuracy,
                     "genotype": record.genotype.to_dict(), "magnitude_genotype": record.magnitude_genotype.to_dict(),
                     "connectivity": [_jsonable(r) for r in connectivity_rows(record, space=config.search.space)],
                     "standalone": standalone})
        _write_done(out, header, done)  # each search and training seeds itself: settings are independent
        if progress:
            tqdm.write(_setting_line(index, len(settings), done[-1], time.perf_counter() - setting_started), file=sys.stderr)
        bar.update()
    bar.close()
    summary = study_summary(done)
    write_json(out / "study.json", summary)
    record = provenance_record(config_to_dict(config), resolve_device(config.device), started)
    record["study"] = {"seeds": list(seeds), "lambdas": [float(x) for x in lambdas],
                       "network": header["network"], "resumed_with": len(finished)}
    write_json(out / "provenance.json", record)
    return summary

