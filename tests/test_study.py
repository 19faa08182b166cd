"""The RQ1/RQ2 study: files, resume, summaries and bad input."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from bayesnas_book.cli import main
from bayesnas_book.config import load_config
from bayesnas_book.study import STUDY_RULES, StudyError, run_study, study_summary, train_subset

TINY = ["search.channels=4", 'search.layout="NR"', "search.cutout=0", "search.warmup_epochs=1", "search.switch_epochs=1",
        "search.rounds=1", "search.curvature_batches=1", "search.max_batches_per_epoch=2", "data.batch_size=32",
        "search.reference_batch_size=32", "train.epochs=1", "train.max_batches_per_epoch=2"]
NET = {"channels": 2, "num_cells": 3}


def tiny():
    return load_config("quick", overrides=TINY)


def test_study_writes_its_files_and_resumes_without_redoing(tmp_path) -> None:
    summary = run_study(tiny(), [0, 1], [0.5], tmp_path / "s", **NET)
    lines = (tmp_path / "s" / "settings.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["header"]["settings"] == [[0, 0.5], [1, 0.5]]
    settings = [json.loads(line) for line in lines[1:]]
    assert [s["seed"] for s in settings] == [0, 1]
    assert [[row["rule"] for row in s["standalone"]] for s in settings] == [list(STUDY_RULES)] * 2
    for s in settings:  # the matched cells' networks have the BayesNAS network's size, the magnitude rule's not
        params = {row["rule"]: row["params"] for row in s["standalone"]}
        for rule in ("magnitude_matched", "random"):
            assert abs(params[rule] / params["bayesnas"] - 1) < 0.25, params
        assert set(s["genotypes"]) == set(STUDY_RULES)
    assert summary["rq1"]["cells"] == 4 and summary["rq1"]["cells_with_dangling_node"] == 0
    assert summary["rq2"]["test_top1"]["bayesnas"]["n"] == 2
    paired = summary["rq2"]["paired"]["bayesnas_minus_magnitude"]
    top1 = [{r["rule"]: r["test_top1"] for r in s["standalone"]} for s in settings]
    assert paired["mean"] == pytest.approx(sum(t["bayesnas"] - t["magnitude"] for t in top1) / 2)
    assert paired["low"] <= paired["mean"] <= paired["high"] and paired["confidence"] == 0.95
    assert set(summary["rq2"]["paired"]) == {f"bayesnas_minus_{r}" for r in STUDY_RULES[1:]}
    assert json.loads((tmp_path / "s" / "study.json").read_text()) == json.loads(json.dumps(summary))
    assert json.loads((tmp_path / "s" / "provenance.json").read_text())["study"]["seeds"] == [0, 1]
    # resume: nothing is redone, the same summary comes back
    before = (tmp_path / "s" / "settings.jsonl").read_bytes()
    assert run_study(tiny(), [0, 1], [0.5], tmp_path / "s", resume=True, **NET) == summary
    assert (tmp_path / "s" / "settings.jsonl").read_bytes() == before
    record = json.loads((tmp_path / "s" / "provenance.json").read_text())
    assert record["study"]["resumed_with"] == 2


def test_study_refuses_what_it_cannot_do(tmp_path) -> None:
    with pytest.raises(StudyError, match=r"seeds must be integers >= 0, got \[-1\]"):
        run_study(tiny(), [-1], [0.5], tmp_path / "a")
    with pytest.raises(StudyError, match=r"lambdas must be > 0, got \[0.0\]"):
        run_study(tiny(), [0], [0.0], tmp_path / "a")
    with pytest.raises(StudyError, match="must not repeat"):
        run_study(tiny(), [0, 0], [0.5], tmp_path / "a")
    with pytest.raises(StudyError, match=r"runs on the shipped digits.*got 'cifar10'"):
        run_study(load_config("quick", overrides=['data.dataset="cifar10"']), [0], [0.5], tmp_path / "a")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(StudyError, match="not empty and holds no study.*nothing was overwritten"):
        run_study(tiny(), [0], [0.5], tmp_path / "busy", **NET)
    run_study(tiny(), [0], [0.5], tmp_path / "done", **NET)
    with pytest.raises(StudyError, match="already holds a study.*pass --resume"):
        run_study(tiny(), [0], [0.5], tmp_path / "done", **NET)
    with pytest.raises(StudyError, match="another configuration or settings"):
        run_study(tiny(), [0, 1], [0.5], tmp_path / "done", resume=True, **NET)
    (tmp_path / "done" / "settings.jsonl").write_text("{not json")
    with pytest.raises(StudyError, match="is corrupt"):
        run_study(tiny(), [0], [0.5], tmp_path / "done", resume=True, **NET)
    with pytest.raises(ValueError, match="no finished setting"):
        study_summary([])


def test_study_command_reports_rq1_rq2_and_each_setting_as_it_finishes(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A study runs for minutes per setting: stderr gets a line as each one finishes; stdout
    reports RQ1 and RQ2; a second run into the finished folder is refused."""
    sets = [a for o in TINY for a in ("--set", o)]
    args = ["study", "--lambdas", "0.5", "--channels", "2", "--cells", "3", *sets]
    assert main([*args, "--seeds", "0", "1", "--out", str(tmp_path / "p")]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("study: setting")]
    assert len(lines) == 2, lines
    assert lines[0].startswith("study: setting 1/2 (seed 0, lambda 0.5) done in ")
    assert lines[1].startswith("study: setting 2/2 (seed 1, lambda 0.5) done in ")
    assert "supernet validation accuracy" in lines[0] and "stand-alone test top-1: bayesnas" in lines[0]
    assert "RQ1: 0 of 4 derived cells have a dangling node" in captured.out
    assert re.search(r"RQ2 +bayesnas: stand-alone test top-1 [0-9.]+, 95% interval", captured.out)
    assert main([*args, "--seeds", "0", "1", "--out", str(tmp_path / "p")]) == 2
    assert "already holds a study" in capsys.readouterr().err
    assert main([*args, "--seeds", "0", "--out", str(tmp_path / "q"), "--no-progress"]) == 0
    assert "study: setting" not in capsys.readouterr().err


def test_train_subset_is_fixed_by_its_seed_and_checked() -> None:
    data = torch.utils.data.TensorDataset(torch.arange(50.0))
    assert train_subset(data, None, 0) is data
    first, again, other = (train_subset(data, 20, seed) for seed in (3, 3, 4))
    assert first.indices == again.indices != other.indices and len(set(first.indices)) == 20
    with pytest.raises(StudyError, match=r"--train-samples must be an integer in \[10, 50\].*got 51"):
        train_subset(data, 51, 0)


def test_summary_intervals_are_student_t_over_settings() -> None:
    def setting(b: float, m: float) -> dict:
        rows = [{"rule": "bayesnas", "test_top1": b, "params": 100.0},
                {"rule": "magnitude", "test_top1": m, "params": 40.0}]
        return {"connectivity": [], "standalone": rows}

    summary = study_summary([setting(0.9, 0.8), setting(0.7, 0.8)])
    paired = summary["rq2"]["paired"]["bayesnas_minus_magnitude"]
    # n = 2: differences 0.1 and -0.1, sd sqrt(0.02), t_{0.975, 1} = tan(0.475 pi)
    half = math.tan(0.475 * math.pi) * math.sqrt(0.02) / math.sqrt(2)
    assert paired["mean"] == pytest.approx(0.0, abs=1e-15)
    assert paired["high"] == pytest.approx(half) and paired["low"] == pytest.approx(-half)
    assert paired["bayesnas_better"] == 1 and paired["ties"] == 0
    assert summary["rq2"]["params_relative"]["magnitude"] == {"min": 0.4, "max": 0.4}
    with pytest.raises(ValueError, match="same rules"):
        study_summary([setting(0.9, 0.8), {"connectivity": [], "standalone": setting(0.9, 0.8)["standalone"][:1]}])
