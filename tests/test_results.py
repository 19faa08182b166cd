"""bayesnas_book.results: finding, filtering and reading the records of real runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bayesnas_book.bench_suites import BENCH_SUITES
from bayesnas_book.results import (
    BENCH_FILES,
    PROVENANCE_FIELDS,
    ResultError,
    ResultWarning,
    format_wall_time,
    iter_records,
    load_result,
    record_kind,
    results_folder,
)


def provenance(command: str, dataset: str = "digits", **extra: Any) -> dict[str, Any]:
    """A provenance dict shaped like :func:`bayesnas_book.provenance.provenance_record`'s."""
    return {"command": command, "config": {"profile": "quick", "data": {"dataset": dataset}},
            "git": {"commit": "0123456789abcdef0123", "dirty": False}, "device": "cpu (x86_64, 1 threads)",
            "started": "2026-01-02T03:04:05+00:00", "wall_time_s": 75.5, **extra}


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    """A repository with four records: study, compress (python -m), train (from Python), bench."""
    root = tmp_path / "repo" / "data" / "results"
    write(root / "study-a" / "provenance.json", provenance("bayesnas-book study --seeds 0 1", study={"seeds": [0, 1]}))
    write(root / "study-a" / "study.json", {"settings": 2})
    write(root / "study-a" / "settings.jsonl", '{"header": 1}\n\n{"seed": 0}\n')
    write(root / "compress-b" / "provenance.json",
          provenance("python -m bayesnas_book.cli compress --model lenet300 --dataset mnist", dataset="mnist", report={}))
    train = provenance("called from Python (no bayesnas-book command line)", final={"top1": 0.9})
    train["config"] = {"train": {}, "run": {"profile": "paper", "data": {"dataset": "cifar10"}}}
    write(root / "nested" / "train-c" / "provenance.json", train)
    write(root / "bench-d" / "gpu_check.json",
          {"result": {"projected_search_gpu_days": 0.01}, "provenance": provenance("bayesnas-book bench --suite gpu-check")})
    write(root / "bench-d" / "other.json", {"not": "a record"})  # ignored: not a record's file name
    return root


def test_results_folder_is_found_upwards(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = results.parent.parent / "chapters" / "sub"
    deep.mkdir(parents=True)
    assert results_folder(deep) == results
    monkeypatch.chdir(deep)
    assert results_folder() == results
    lonely = tmp_path / "elsewhere"
    lonely.mkdir()
    assert results_folder(lonely) is None


def test_iter_records_finds_every_kind(results: Path) -> None:
    records = list(iter_records(root=results))
    assert [r.kind for r in records] == ["bench", "compress", "train", "study"]  # path order
    assert [r.name for r in records] == ["bench-d/gpu_check.json", "compress-b", "nested/train-c", "study-a"]
    bench, compress, train, study = records
    assert bench.suite == "gpu-check" and bench.result == {"projected_search_gpu_days": 0.01}
    assert compress.dataset == "mnist" and compress.suite is None and compress.result is None
    assert train.dataset == "cifar10" and train.profile == "paper"  # the run's own config under "run"
    assert study.read_json("study.json") == {"settings": 2}
    assert study.read_jsonl("settings.jsonl") == [{"header": 1}, {"seed": 0}]
    assert study.has("study.json") and not study.has("missing.json")


def test_iter_records_filters_by_kind(results: Path) -> None:
    assert [r.name for r in iter_records("study", root=results)] == ["study-a"]
    assert [r.name for r in iter_records("train", root=results)] == ["nested/train-c"]
    assert list(iter_records("transfer", root=results)) == []


def test_iter_records_defaults_to_the_working_directory(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(results.parent.parent)
    assert len(list(iter_records())) == 4


def test_missing_results_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no data/results above: nothing recorded
    assert list(iter_records()) == []
    with pytest.raises(ResultError, match="results folder .*nowhere does not exist"):
        list(iter_records(root=tmp_path / "nowhere"))


def test_bad_kind_is_refused(results: Path) -> None:
    with pytest.raises(ValueError, match="`kind` must be None or a command name"):
        list(iter_records("", root=results))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("provenance.json", "{not json", "is not valid JSON"),
        ("provenance.json", "[1, 2]", "must hold a JSON object, got list"),
        ("provenance.json", json.dumps({"command": "bayesnas-book search"}), r"lacks the provenance fields \['config'"),
        ("provenance.json", json.dumps(provenance("x") | {"git": "abc"}), "`config` and `git` must be JSON objects"),
        ("bench.json", json.dumps(provenance("bayesnas-book bench")), r"must hold \{\"result\""),
    ],
)
def test_corrupt_record_is_skipped_with_a_reason_or_raised(results: Path, name: str, content: str, message: str) -> None:
    write(results / "broken" / name, content)
    with pytest.warns(ResultWarning, match=f"skipped .*broken.*{message}"):
        kinds = [r.kind for r in iter_records(root=results)]
    assert kinds == ["bench", "compress", "train", "study"]  # the others are still found
    with pytest.raises(ResultError, match=message):
        list(iter_records(root=results, strict=True))
    with pytest.raises(ResultError, match=message):
        load_result(results / "broken" / name)


def test_load_result_of_a_folder(results: Path, tmp_path: Path) -> None:
    record = load_result(results / "study-a")
    assert record.kind == "study" and record.folder == results / "study-a"
    assert record.name == (results / "study-a").as_posix()  # no root given: the whole path
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ResultError, match="holds no provenance.json: it is not the folder of a recorded run"):
        load_result(empty)
    with pytest.raises(ResultError, match="does not exist"):
        load_result(tmp_path / "absent.json")
    with pytest.raises(ResultError, match="cannot read .*missing.json"):
        record.read_json("missing.json")
    write(results / "study-a" / "bad.jsonl", '{"a": 1}\n{oops\n')
    with pytest.raises(ResultError, match="cannot read .*bad.jsonl"):
        record.read_jsonl("bad.jsonl")


def test_provenance_line(results: Path) -> None:
    line = load_result(results / "study-a").provenance_line()
    assert line == ("`bayesnas-book study --seeds 0 1` | commit 0123456789ab | cpu (x86_64, 1 threads) | "
                    "started 2026-01-02T03:04:05+00:00 | wall time 75.5 s")
    write(results / "dirty" / "provenance.json", provenance("bayesnas-book search") | {"git": {"commit": None, "dirty": True}})
    assert "commit unknown + uncommitted changes" in load_result(results / "dirty").provenance_line()


def test_provenance_line_shows_results_paths_from_data_results(results: Path) -> None:
    command = "bayesnas-book study --out /home/someone/repo/data/results/s --set a=/srv/data/results/t --other /opt/x"
    write(results / "absolute" / "provenance.json", provenance(command))
    line = load_result(results / "absolute").provenance_line()
    assert line.startswith("`bayesnas-book study --out data/results/s --set a=data/results/t --other /opt/x` | ")
    assert load_result(results / "absolute").provenance["command"] == command  # the record is unchanged


@pytest.mark.parametrize(
    ("record", "file_name", "kind"),
    [
        ({"command": "bayesnas-book search --profile paper"}, "provenance.json", "search"),
        ({"command": "/usr/bin/bayesnas-book --verbose train --out x"}, "provenance.json", "train"),
        ({"command": "python -m bayesnas_book.cli transfer --out 'a b'"}, "provenance.json", "transfer"),
        ({"command": "torchrun --nproc_per_node 2 -m bayesnas_book.cli train --out x"}, "provenance.json", "train"),
        ({"command": "called from Python", "config": {"run": {"command": "transfer"}}, "final": {}}, "provenance.json", "transfer"),
        ({"command": "called from Python", "config": {"run": {}}, "final": {}}, "provenance.json", "train"),
        ({"command": "called from Python", "report": {}}, "provenance.json", "compress"),
        ({"command": "called from Python", "study": {}}, "provenance.json", "study"),
        ({"command": "called from Python"}, "bench_scaling.json", "bench"),
        ({"command": "called from Python", "config": {}}, "provenance.json", "unknown"),
        ({"command": "bayesnas-book compress --out 'unbalanced"}, "provenance.json", "compress"),
    ],
)
def test_record_kind(record: dict[str, Any], file_name: str, kind: str) -> None:
    assert record_kind(record, file_name) == kind


def test_bench_files_match_the_suites() -> None:
    assert BENCH_FILES == {file: suite for suite, file in BENCH_SUITES.items()}
    assert set(PROVENANCE_FIELDS) <= set(provenance("x"))


def test_format_wall_time() -> None:
    assert [format_wall_time(s) for s in (44.12, 750.0, 11_520.0)] == ["44.1 s", "12.5 min", "3.20 h"]
