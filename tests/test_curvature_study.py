"""The curvature study over seeds and points: intervals, summary, the choice rule, files, resume."""

from __future__ import annotations

import json
import math

import pytest

from bayesnas_book.cli import main
from bayesnas_book.config import load_config
from bayesnas_book.curvature.compare import MethodSpec
from bayesnas_book.curvature.study import (
    METRICS,
    CurvatureStudyError,
    choose_method,
    mean_interval,
    run_curvature_study,
    study_points,
    summarize_study,
)

SMALL = ["search.channels=2"]  # the quick supernet at C = 2: the exact reference in seconds


def test_mean_interval_is_student_t() -> None:
    # n = 2: t_{0.975, 1} = tan(0.475 pi); sd of (1, 3) is sqrt(2)
    result = mean_interval([1.0, 3.0])
    half = math.tan(0.475 * math.pi) * math.sqrt(2) / math.sqrt(2)
    assert result["mean"] == 2.0 and result["n"] == 2
    assert result["low"] == pytest.approx(2 - half) and result["high"] == pytest.approx(2 + half)
    five = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0], level=0.9)  # t_{0.95, 4} = 2.131847
    assert five["high"] - five["mean"] == pytest.approx(
        2.131847 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6
    )
    one = mean_interval([0.7, math.nan])
    assert one["mean"] == 0.7 and math.isnan(one["low"]) and one["n"] == 1
    with pytest.raises(ValueError, match="level"):
        mean_interval([1.0, 2.0], level=1.0)
    with pytest.raises(ValueError, match="no number"):
        mean_interval([])


def _line(seed: int, step: int, agreements: dict[str, float], costs: dict[str, float]) -> dict:
    rows = [
        {
            "label": "exact_ggn",
            "method": "exact_ggn",
            "batchnorm": "train",
            "is_reference": True,
            **{m: 0.0 for m in METRICS},
            "agreement": 1.0,
            "pruned": 10,
            "cost_ratio": 50.0,
        }
    ]
    for label, value in agreements.items():
        rows.append(
            {
                "label": label,
                "method": label.split()[0],
                "batchnorm": "train",
                "is_reference": False,
                **{m: 0.5 for m in METRICS},
                "agreement": value,
                "cost_ratio": costs[label],
            }
        )
    return {
        "seed": seed,
        "step": step,
        "label": f"step {step}",
        "update": step > 0,
        "num_groups": 128,
        "num_examples": 16,
        "rows": rows,
    }


def test_summary_and_choice_rule() -> None:
    costs = {"recursion": 1.0, "mc_ggn x16": 5.0}
    done = [
        _line(s, step, {"recursion": 0.90 + 0.01 * s, "mc_ggn x16": 0.99 - 0.001 * s}, costs)
        for s in range(3)
        for step in (0, 4)
    ]
    summary = summarize_study(done)
    assert [p["step"] for p in summary["points"]] == [0, 4] and summary["seeds"] == [0, 1, 2]
    rec = summary["points"][1]["methods"]["recursion"]["agreement"]
    assert rec["mean"] == pytest.approx(0.91) and rec["n"] == 3 and rec["low"] < 0.91 < rec["high"]
    assert summary["points"][0]["reference_pruned"]["mean"] == 10
    choice = choose_method(summary)
    assert choice["label"] == "mc_ggn x16"  # a clear lead beats the cheaper method
    assert [r[0] for r in choice["ranking"]] == ["mc_ggn x16", "recursion"]
    # a lead inside the interval is a tie: the cheaper method wins
    noisy = [
        _line(s, 4, {"recursion": 0.95 + 0.04 * (-1) ** s, "mc_ggn x16": 0.96}, costs)
        for s in range(4)
    ]
    assert choose_method(summarize_study(noisy))["label"] == "recursion"
    with pytest.raises(ValueError, match="candidates"):
        choose_method(summary, ["hessian"])
    with pytest.raises(ValueError, match="no finished"):
        summarize_study([])


def test_points_are_named_from_the_schedule() -> None:
    config = load_config("quick")
    named = study_points(config, [0, 2, 4, 7])
    assert [p["label"] for p in named] == [
        "initialised",
        "after 2 warm-up + 0 switch epochs",
        "update 1",
        "update 2",
    ]
    assert [p["update"] for p in named] == [False, False, True, True]
    for bad in ([], [4, 2], [0, 0], [-1], [8]):
        with pytest.raises(CurvatureStudyError, match="point"):
            study_points(config, bad)


def test_study_writes_its_files_and_resumes(tmp_path) -> None:
    config = load_config("quick", overrides=SMALL)
    methods = (
        MethodSpec("recursion", "recursion"),
        MethodSpec("mc_ggn x4", "mc_ggn", {"num_samples": 4}),
    )
    lines: list[str] = []
    kwargs = dict(
        points=[0], num_batches=1, batch_size=4, methods=methods, repeats=1, log=lines.append
    )
    summary = run_curvature_study(config, [0, 1], tmp_path / "c", **kwargs)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "curvature.json",
        "points.jsonl",
        "provenance.json",
    ]
    assert len(lines) == 2 and lines[0].startswith("seed 0, step 0 (initialised)")
    written = json.loads((tmp_path / "c" / "curvature.json").read_text())
    assert written["choice"]["label"] == summary["choice"]["label"]
    point = written["points"][0]
    assert (
        set(point["methods"]) == {"recursion", "mc_ggn x4"}
        and point["methods"]["recursion"]["agreement"]["n"] == 2
    )
    records = [json.loads(x) for x in (tmp_path / "c" / "points.jsonl").read_text().splitlines()]
    reference = records[1]["rows"][0]
    assert reference["is_reference"] and reference["relative_error"] == 0.0
    assert len(reference["diagonal"]) == len(records[1]["names"]) > 0
    with pytest.raises(CurvatureStudyError, match="--resume"):
        run_curvature_study(config, [0, 1], tmp_path / "c", **kwargs)
    lines.clear()
    again = run_curvature_study(config, [0, 1], tmp_path / "c", resume=True, **kwargs)
    assert lines == [] and again["points"] == summary["points"]  # nothing recomputed
    with pytest.raises(CurvatureStudyError, match="other settings"):
        run_curvature_study(config, [0, 1, 2], tmp_path / "c", resume=True, **kwargs)
    with pytest.raises(CurvatureStudyError, match="batch_size"):
        run_curvature_study(config, [0], tmp_path / "d", points=[0], batch_size=1)
    with pytest.raises(CurvatureStudyError, match="distinct"):
        run_curvature_study(config, [0, 0], tmp_path / "d", points=[0])


def test_curvature_command(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "curvature",
        "--set",
        SMALL[0],
        "--seeds",
        "0",
        "--points",
        "0",
        "--batches",
        "1",
        "--batch-size",
        "4",
        "--repeats",
        "1",
        "--out",
        str(tmp_path / "c"),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "step 0 (initialised)" in out and "mc_ggn x16" in out and "choice" in out
    provenance = json.loads((tmp_path / "c" / "provenance.json").read_text())
    assert provenance["config"]["search"]["channels"] == 2 and "git" in provenance
    assert main(args) == 2  # an occupied folder without --resume
    assert "--resume" in capsys.readouterr().err
