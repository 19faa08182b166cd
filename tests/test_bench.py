"""`bayesnas-book bench`: the table's structure and its JSON (timings are never asserted)."""

from __future__ import annotations

import json

import pytest

from bayesnas_book.bench import bench_search, format_bench
from bayesnas_book.cli import main
from bayesnas_book.config import load_config

TINY = ["search.channels=2", 'search.layout="NR"', "data.batch_size=4"]


def test_bench_rows_and_projection() -> None:
    result = bench_search(load_config("quick", overrides=TINY), repeats=1, warmup=0, exact=True)
    names = [row["name"] for row in result["rows"]]
    assert names == ["forward+backward", "weight step", "switch step", "curvature recursion", "curvature mc_ggn",
                     "curvature exact_ggn"]
    assert result["rows"][0]["ratio_to_forward_backward"] == 1.0
    assert result["switches"] == 2 * 64 and 0.0 < result["share_outside_weight_training"] < 1.0
    assert "projected search" in format_bench(result)
    with pytest.raises(ValueError, match="`repeats` must be >= 1"):
        bench_search(load_config("quick", overrides=TINY), repeats=0)


def test_bench_command_writes_json_with_provenance(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "--repeats", "1", "--out", str(tmp_path)] + [a for o in TINY for a in ("--set", o)]
    assert main(args) == 0
    assert "x fwd+bwd" in capsys.readouterr().out
    record = json.loads((tmp_path / "bench.json").read_text())
    assert record["provenance"]["config"]["search"]["channels"] == 2 and record["result"]["rows"]
