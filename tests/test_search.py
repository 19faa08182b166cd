"""Algorithm 1 end to end on the shipped digits: artefacts, resume == uninterrupted, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from bayesnas_book.bayes.pruning import PruningError
from bayesnas_book.cli import main
from bayesnas_book.config import ConfigError, load_config
from bayesnas_book.search import SearchError, run_search, search_schedule
from bayesnas_book.space.genotype import load_genotype

TINY = [
    "search.channels=4", 'search.layout="NR"', "search.cutout=0", "search.warmup_epochs=1", "search.switch_epochs=1",
    "search.rounds=2", "search.curvature_batches=1", "search.max_batches_per_epoch=2", "data.batch_size=32",
    "search.reference_batch_size=32",
]


def tiny(*extra: str):
    return load_config("quick", overrides=[*TINY, *extra])


def test_schedule_follows_algorithm_1() -> None:
    phases = [(s["phase"], s["round"]) for s in search_schedule(tiny())]
    assert phases == [("warmup", 0), ("switch", 1), ("update", 1), ("switch", 2), ("update", 2)]


def test_search_writes_every_artefact(tmp_path) -> None:
    result = run_search(tiny(), out=tmp_path / "run")
    out = tmp_path / "run"
    for name in ("genotype.json", "genotype_magnitude.json", "cells.png", "history.json", "metrics.jsonl", "provenance.json", "checkpoint.pt"):
        assert (out / name).exists(), name
    assert load_genotype(out / "genotype.json") == result.genotype
    history = json.loads((out / "history.json").read_text())
    assert [h["round"] for h in history] == [1, 2]
    assert torch.tensor(history[0]["normal"]["gamma"]).shape == (8, 8)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["phase"] for m in metrics] == ["warmup", "switch", "switch"]
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["config"]["search"]["rounds"] == 2 and provenance["wall_time_s"] > 0
    assert set(provenance["timings"]) == {"weight_training_s", "switch_training_s", "curvature_s", "update_s"}


def test_resume_ends_with_the_same_genotype(tmp_path) -> None:
    config = tiny("search.lambda_o=0.5", "search.lambda_c=0.5")
    whole = run_search(config, out=tmp_path / "whole")
    partial = run_search(config, out=tmp_path / "killed", stop_after=3)
    assert partial.genotype is None
    resumed = run_search(config, out=tmp_path / "killed", resume=True)
    assert resumed.genotype == whole.genotype
    assert resumed.magnitude_genotype == whole.magnitude_genotype
    for kind in ("normal", "reduction"):
        assert resumed.history[-1][kind]["gamma"] == whole.history[-1][kind]["gamma"]
    assert [m["loss"] for m in resumed.metrics] == [m["loss"] for m in whole.metrics]


def test_an_output_folder_holding_another_run_is_refused(tmp_path) -> None:
    run_search(tiny(), out=tmp_path / "run", stop_after=1)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(SearchError, match="already holds a search .*pass --resume.*nothing was overwritten"):
        run_search(tiny(), out=tmp_path / "run")
    with pytest.raises(SearchError, match=r"configuration differs \(search.lambda_o: checkpoint 0.05, now 0.02\)"):
        run_search(tiny("search.lambda_o=0.02"), out=tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


def test_corrupt_or_foreign_checkpoint(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(SearchError, match="is not a readable checkpoint"):
        run_search(tiny(), out=tmp_path / "a", resume=True)
    (tmp_path / "b").mkdir()
    torch.save({"model": {}}, tmp_path / "b" / "checkpoint.pt")
    with pytest.raises(SearchError, match="was not written by bayesnas-book"):
        run_search(tiny(), out=tmp_path / "b", resume=True)
    with pytest.raises(SearchError, match="no checkpoint at"):
        run_search(tiny(), out=tmp_path / "c", resume=True)


def test_lambdas_that_prune_everything_name_lambda(tmp_path) -> None:
    config = tiny("search.prune_threshold=1e6")
    with pytest.raises(PruningError, match="lambda_o"):
        run_search(config)


def test_layout_needs_both_cell_types() -> None:
    with pytest.raises(SearchError, match="has no reduction cell"):
        run_search(tiny('search.layout="NN"'))


def test_search_command(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["search", "--out", str(tmp_path / "cli"), "--no-progress", "--lambda-o", "0.02", "--rounds", "1"]
    args += [a for o in TINY if not o.startswith("search.rounds") for a in ("--set", o)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "normal cell (output = concat of" in out and "magnitude rule" in out
    # the closing summary: validation accuracy, pairs kept / pruned per cell type, wall time
    accuracy = json.loads((tmp_path / "cli" / "metrics.jsonl").read_text().splitlines()[-1])["validation_accuracy"]
    assert f"supernet validation accuracy {100 * accuracy:.2f}%" in out and "wall time " in out
    last = json.loads((tmp_path / "cli" / "history.json").read_text())[-1]
    for kind in ("normal", "reduction"):
        ops = torch.tensor(last[kind]["kept"])[:, 1:]
        kept = int(ops.sum())
        assert f"{kind} cell: {kept} (edge, op) pairs kept, {ops.numel() - kept} pruned" in out
    assert main(args) == 2
    assert "already holds a search" in capsys.readouterr().err
    sets = [a for o in TINY for a in ("--set", o)]
    assert main(["search", "--dataset", "cifar10", "--out", str(tmp_path / "c10"), "--no-progress", *sets]) == 2
    err = capsys.readouterr().err
    assert "bayesnas-book data cifar10" in err and "Traceback" not in err


def test_the_fast_path_off_changes_nothing_and_channels_last_agrees(tmp_path) -> None:
    plain = run_search(tiny(), out=tmp_path / "plain")
    nhwc = run_search(tiny("search.channels_last=true"), out=tmp_path / "nhwc")
    assert nhwc.genotype == plain.genotype
    for a, b in zip(plain.metrics, nhwc.metrics, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


def test_bf16_search_runs_on_cpu_and_keeps_curvature_finite(tmp_path) -> None:
    result = run_search(tiny("search.amp=\"bf16\""), out=tmp_path / "bf16")
    for record in result.history:
        for kind in ("normal", "reduction"):
            curvature = torch.tensor(record[kind]["curvature"])
            assert torch.isfinite(curvature).all() and (curvature >= 0).all()
    assert all(m["loss"] == m["loss"] for m in result.metrics)  # not NaN


def test_fp16_search_on_a_cpu_is_refused_with_the_fix(tmp_path) -> None:
    with pytest.raises(SearchError, match=r"search.amp.*fp16.*CUDA.*amp=bf16 or amp=off"):
        run_search(tiny("search.amp=\"fp16\""), out=tmp_path / "fp16")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_channels_last_search_on_cuda(tmp_path) -> None:
    result = run_search(tiny('device="cuda"', 'search.amp="fp16"', "search.channels_last=true"), out=tmp_path / "cuda")
    assert result.genotype is not None
    assert all(m["loss"] == m["loss"] for m in result.metrics)


def test_compile_mode_reaches_torch_compile(tmp_path, compile_modes: list) -> None:
    modes = compile_modes
    run_search(tiny("search.compile=true", 'search.compile_mode="reduce-overhead"'), out=tmp_path / "graphs")
    assert modes == ["reduce-overhead"]
    run_search(tiny(), out=tmp_path / "eager")
    assert modes == ["reduce-overhead"]  # compile off: not called


def test_an_unknown_compile_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="`search.compile_mode` must be one of default, reduce-overhead, max-autotune"):
        tiny('search.compile_mode="fastest"')


def test_pruning_trace_counts_the_kept_pairs_of_every_round() -> None:
    from bayesnas_book.search import pruning_trace
    from bayesnas_book.viz import search_progress_figure

    result = run_search(tiny("search.lambda_o=0.5", "search.lambda_c=0.5"))
    trace = pruning_trace(result.history, result.metrics)
    assert [row["round"] for row in trace] == [0, 1, 2]
    for kind in ("normal", "reduction"):
        pairs = [row[f"{kind}_pairs"] for row in trace]
        assert pairs[0] == 8 * 7  # before the first update: every (edge, op) pair
        assert pairs[-1] == result.pruning[kind].counts()["kept"]
        assert pairs == sorted(pairs, reverse=True)  # pruned switches stay pruned
    last_of_round = {m["round"]: m["validation_accuracy"] for m in result.metrics}
    assert [row["validation_accuracy"] for row in trace] == [last_of_round[r] for r in (0, 1, 2)]
    # a history whose masks drop pairs round by round, counted from scratch
    keep = torch.ones(8, 8, dtype=torch.bool)
    made = []
    for r, (edge, ops) in enumerate([(0, [1, 2]), (5, [0, 7])], start=1):
        keep[edge, ops] = False  # column 0 (the parent) is not a pair
        made.append({"round": r, "normal": {"kept": keep.tolist()}, "reduction": {"kept": keep.tolist()}})
    counted = pruning_trace(made, [{"round": 2, "validation_accuracy": 0.5}])
    assert [row["normal_pairs"] for row in counted] == [56, 54, 53]
    assert [row["validation_accuracy"] for row in counted] == [None, None, 0.5]
    figure = search_progress_figure(trace, "tiny")
    pairs_ax, accuracy_ax = figure.axes
    plotted = {line.get_label(): list(line.get_ydata()) for line in pairs_ax.get_lines()}
    assert plotted["normal cell"] == [row["normal_pairs"] for row in trace]
    assert list(accuracy_ax.get_lines()[0].get_ydata()) == [row["validation_accuracy"] for row in trace]
    with pytest.raises(SearchError, match="no `kept` mask"):
        pruning_trace([{"round": 1, "normal": {}, "reduction": {}}], [])
    with pytest.raises(ValueError, match="non-empty rows of pruning_trace"):
        search_progress_figure([])
