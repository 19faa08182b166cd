"""Benchmarks: the tables' structure, their JSON and the GPU check's correctness part (timings are never asserted)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from bayesnas_book import bench_suites, cpu_kernels
from bayesnas_book.bench import bench_search, format_bench
from bayesnas_book.bench_scaling import bench_scaling, format_scaling, scaling_settings
from bayesnas_book.bench_suites import run_suite
from bayesnas_book.bench_train import bench_training, format_training_bench
from bayesnas_book.cli import main
from bayesnas_book.config import load_config
from bayesnas_book.cpu_kernels import channels_last_hazard, cpu_bf16_unsupported, onednn_isa
from bayesnas_book.gpu_check import MIXED_PRECISION_TOLERANCE, curvature_correctness
from bayesnas_book.isolation import NativeCrash
from bayesnas_book.space.supernet import Supernet, SupernetSpec

TINY = ["search.channels=2", 'search.layout="NR"', "data.batch_size=4"]
TINY_NET = ["network.channels=2", "network.num_cells=3", "train.batch_size=4"]


def test_bench_rows_and_projection() -> None:
    result = bench_search(load_config("quick", overrides=TINY), repeats=1, warmup=0, exact=True)
    names = [row["name"] for row in result["rows"]]
    assert names == ["forward+backward", "weight step", "switch step", "straightforward switch step",
                     "curvature recursion", "curvature mc_ggn", "curvature exact_ggn"]
    assert result["rows"][0]["ratio_to_forward_backward"] == 1.0
    assert result["switches"] == 2 * 64 and 0.0 < result["share_outside_weight_training"] < 1.0
    assert result["speedup_vs_straightforward"] > 0 and result["fast_path"] == {"amp": "off", "channels_last": False, "compile": False,
                                                                                      "fused_edges": False}
    assert result["peak_memory_bytes"] == {"switch step": None, "straightforward switch step": None}  # CPU: not measured
    text = format_bench(result)
    assert "projected search" in text and "straightforward" in text
    with pytest.raises(ValueError, match="`repeats` must be >= 1"):
        bench_search(load_config("quick", overrides=TINY), repeats=0)


def test_bench_search_runs_the_fast_path_settings() -> None:
    config = load_config("quick", overrides=[*TINY, 'search.amp="bf16"', "search.channels_last=true"])
    result = bench_search(config, repeats=1, warmup=0, straightforward=False)
    # this CPU's oneDNN decides what is safe to run (bayesnas_book.cpu_kernels); the rest is skipped, with the reason
    no_bf16 = cpu_bf16_unsupported()
    no_nhwc = channels_last_hazard(Supernet(SupernetSpec(in_channels=1, num_classes=10, channels=2, layout="NR")), "cpu")
    assert result["fast_path"] == {"amp": "off" if no_bf16 else "bfloat16", "channels_last": no_nhwc is None,
                                   "compile": False, "fused_edges": False}
    assert result["skipped"] == {k: v for k, v in (("amp", no_bf16), ("channels_last", no_nhwc)) if v}
    assert result["speedup_vs_straightforward"] is None
    assert "straightforward switch step" not in [row["name"] for row in result["rows"]]


@pytest.mark.parametrize("fused", [False, True])
def test_bench_fusion_times_the_other_edge_evaluation(fused: bool) -> None:
    config = load_config("quick", overrides=[*TINY, f"search.fused_edges={str(fused).lower()}"])
    result = bench_search(config, repeats=1, warmup=0, straightforward=False, fusion=True)
    other = "plain edges" if fused else "fused edges"
    names = [row["name"] for row in result["rows"]]
    assert names[-2:] == [f"switch step, {other}", f"curvature recursion, {other}"]
    fusion = result["fusion"]
    assert fusion["compared"] == other and set(fusion["speedup_of_fused_edges"]) == {"switch step", "curvature recursion"}
    ops = fusion["compute_ops_per_switch_step"]
    assert 0 < ops["fused edges"] < ops["plain edges"]  # the point of stacking: fewer ops (kernels on a GPU)
    assert "fused edges: switch step" in format_bench(result)


def test_training_bench_variants_share_the_baseline() -> None:
    config = load_config("quick", overrides=TINY_NET)
    result = bench_training(config, repeats=1, warmup=0, variants=("amp", "channels_last"))
    assert [row["name"] for row in result["rows"]] == ["fp32", "amp", "channels_last"]
    assert "skipped" not in result["rows"][0]  # the baseline always runs
    assert result["rows"][0]["ratio_to_fp32"] == 1.0 and result["batch_size"] == 4
    assert result["network"]["num_cells"] == 3 and result["amp_dtype"] == "bfloat16"
    assert "x fp32 speed" in format_training_bench(result)
    with pytest.raises(ValueError, match=r"unknown training variant\(s\) \['fp8'\]; choose from fp32"):
        bench_training(config, variants=("fp8",))


@pytest.mark.skipif(onednn_isa() in ("non-x86", "default", "sse41", "avx"), reason="needs oneDNN's AVX2 kernels")
def test_variants_that_crash_avx2_onednn_are_skipped_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_kernels, "_ONEDNN_CAP", "AVX2")  # what a CPU without AVX-512 runs
    result = bench_training(load_config("quick", overrides=TINY_NET), repeats=1, warmup=0,
                            variants=("amp", "channels_last", "amp+channels_last"))
    rows = {row["name"]: row for row in result["rows"]}
    assert "skipped" not in rows["fp32"] and set(rows) == {"fp32", "amp", "channels_last", "amp+channels_last"}
    assert "no native bfloat16 kernels" in rows["amp"]["skipped"]
    assert "corrupts the heap" in rows["channels_last"]["skipped"] and "skipped" in rows["amp+channels_last"]
    assert re.search(r"channels_last +skipped: channels_last training on this CPU", format_training_bench(result))
    config = load_config("quick", overrides=[*TINY, 'search.amp="bf16"', "search.channels_last=true"])
    searched = bench_search(config, repeats=1, warmup=0, straightforward=False)
    assert searched["fast_path"]["channels_last"] is False and searched["fast_path"]["amp"] == "off"
    assert set(searched["skipped"]) == {"amp", "channels_last"}
    assert "fast path without channels_last: channels_last training on this CPU" in format_bench(searched)


def test_a_native_crash_in_a_cpu_suite_costs_its_rows_not_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args, what: str = "", **kwargs):
        raise NativeCrash(what, -6)

    monkeypatch.setattr(bench_suites, "call_isolated", crash)
    result, text = run_suite("train", load_config("quick", overrides=TINY_NET), None, repeats=1)
    rows = {row["name"]: row for row in result["rows"]}
    assert "median_s" in rows["fp32"] and set(rows) == {"fp32", "amp", "channels_last", "amp+channels_last"}
    assert rows["amp"]["skipped"] == "failed: bench --suite train crashed natively in an isolated process (killed by SIGABRT)"
    result, text = run_suite("search", load_config("quick", overrides=[*TINY, "search.channels_last=true"]), None, repeats=1)
    assert result["fast_path"]["channels_last"] is False and "killed by SIGABRT" in result["failed"]
    assert text.endswith("(measured again without bf16 and channels_last)")


def test_scaling_changes_one_factor_at_a_time() -> None:
    config = load_config("quick", overrides=TINY)
    settings = scaling_settings(config)
    assert [(f, v) for f, v, _ in settings] == [("profile", "as configured"), ("batch", "2"), ("batch", "8"),
                                                ("channels", "1"), ("channels", "4"), ("cells", "4"), ("switches", "darts")]
    assert settings[-1][2].search.space == "darts" and settings[-1][2].data.batch_size == 4
    assert settings[5][2].search.layout.count("R") == 1 and len(settings[5][2].search.layout) == 4
    result = bench_scaling(config, repeats=1, warmup=0, factors=("switches",))
    assert [row["switches"] for row in result["rows"]] == [2 * 64, 2 * 112]
    assert set(result["rows"][0]["curvature"]) == {"recursion", "mc_ggn"}
    assert "switches" in format_scaling(result)
    with pytest.raises(ValueError, match=r"unknown scaling factor\(s\) \['depth'\]"):
        scaling_settings(config, ("depth",))


def test_curvature_correctness_check_passes_on_the_cpu() -> None:
    result = curvature_correctness(torch.device("cpu"), batch_size=4)
    float64 = dict(result["float64"])
    assert 0.0 <= float64.pop("recursion, fused edges") <= 1e-12  # stacked ops: the same sums, reordered
    assert float64 == {"recursion": 0.0, "exact_ggn": 0.0}  # the same device: bit-identical
    assert 0.0 < max(result["mixed_precision"].values()) <= MIXED_PRECISION_TOLERANCE
    assert result["passed"] and 0.5 <= result["prune_keep_agreement"] <= 1.0


def test_unknown_suite_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown benchmark suite 'disk'; choose from search, train, scaling, gpu-check"):
        run_suite("disk", load_config("quick"), None)


@pytest.mark.parametrize(("suite", "file", "extra"), [("search", "bench.json", TINY), ("train", "bench_train.json", TINY_NET)])
def test_bench_command_writes_json_with_provenance(tmp_path, capsys: pytest.CaptureFixture[str], suite, file, extra) -> None:
    args = ["bench", "--suite", suite, "--repeats", "1", "--out", str(tmp_path)] + [a for o in extra for a in ("--set", o)]
    assert main(args) == 0
    assert f"wrote {tmp_path / file}" in capsys.readouterr().out
    record = json.loads((tmp_path / file).read_text())
    assert record["provenance"]["config"]["profile"] == "quick" and record["result"]["rows"]


def test_bench_command_rejects_zero_repeats(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--repeats", "0"]) == 2
    assert "--repeats must be >= 1, got 0" in capsys.readouterr().err


def test_gpu_check_at_paper_sizes_needs_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--suite", "gpu-check", "--set", 'device="cpu"']) == 2
    assert "needs a CUDA device, got cpu; pass --tiny" in capsys.readouterr().err


@pytest.mark.slow
def test_gpu_check_script_runs_at_toy_sizes(tmp_path) -> None:
    assert main(["bench", "--suite", "gpu-check", "--tiny", "--repeats", "1", "--set", 'device="cpu"', "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    result = record["result"]
    assert result["tiny"] and result["correctness"]["passed"] and set(result["search"]) == {"2", "4"}
    assert result["projected_search_gpu_days"] > 0 and record["provenance"]["device"]
    assert "search_compiled" not in result and result["search"]["2"]["fusion"]["compute_ops_per_switch_step"]


@pytest.mark.slow
def test_gpu_check_compiles_in_reduce_overhead_mode(tmp_path, compile_modes: list) -> None:
    modes = compile_modes
    assert main(["bench", "--suite", "gpu-check", "--tiny", "--compile", "--repeats", "1", "--set", 'device="cpu"',
                 "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "gpu_check.json").read_text())["result"]
    assert result["search_compiled"]["fast_path"]["compile"] == "reduce-overhead"
    training = {row["name"]: row for row in result["training"]["rows"]}
    compiled_training = "skipped" not in training["amp+channels_last+compile"]  # unsafe kernels on this CPU: skipped
    assert set(modes) == {"reduce-overhead"} and len(modes) >= 1 + compiled_training  # the search step and the training step
