"""Architecture recovery: the planted cells, the teacher, the scores, the experiment and its CLI."""

from __future__ import annotations

import json

import pytest
import torch

from bayesnas_book.cli import main
from bayesnas_book.config import load_config
from bayesnas_book.data import load_digits
from bayesnas_book.recovery.experiment import (
    METHODS,
    RecoveryError,
    recovery_jobs,
    recovery_summary,
    run_recovery,
)
from bayesnas_book.recovery.metrics import (
    genotype_pairs,
    precision_recall,
)
from bayesnas_book.recovery.teacher import (
    build_teacher,
    genotype_mask,
    label_balance,
    planted_genotype,
    teacher_search_data,
)
from bayesnas_book.space.graph import get_cell_graph

TINY = [
    "search.channels=2",
    'search.layout="NR"',
    "search.warmup_epochs=0",
    "search.switch_epochs=1",
    "search.rounds=1",
    "search.curvature_batches=1",
    "search.max_batches_per_epoch=2",
    "data.batch_size=32",
    "search.reference_batch_size=32",
    "train.epochs=1",
    "train.max_batches_per_epoch=2",
]


def tiny():
    return load_config("quick", overrides=TINY)


# -- scores --------------------------------------------------------------------------------------
def test_precision_and_recall_by_hand() -> None:
    planted = {("normal", "a", 0, "x"), ("normal", "b", 1, "y"), ("reduction", "a", 0, "x")}
    found = {
        ("normal", "a", 0, "x"),
        ("normal", "b", 1, "z"),
        ("reduction", "a", 0, "x"),
        ("reduction", "b", 2, "x"),
    }
    score = precision_recall(found, planted)
    assert score == {"precision": 2 / 4, "recall": 2 / 3, "hits": 2, "found": 4, "planted": 3}
    assert precision_recall(planted, planted)["precision"] == 1.0
    with pytest.raises(ValueError, match="planted"):
        precision_recall(found, set())
    with pytest.raises(ValueError, match="found"):
        precision_recall(set(), planted)


# -- planted cells and teacher -------------------------------------------------------------------
def test_planted_cells_fit_both_spaces() -> None:
    planted = planted_genotype()
    pairs = genotype_pairs(planted)
    assert len(pairs) == 9 and sum(p[0] == "normal" for p in pairs) == 5
    for space in ("bayesnas", "darts"):
        for kind in ("normal", "reduction"):
            mask = genotype_mask(get_cell_graph(f"{space}_{kind}"), getattr(planted, kind))
            assert int(mask[:, 1:].sum()) == len(getattr(planted, kind).edges())


def test_teacher_labels_are_fixed_balanced_and_its_own() -> None:
    config = tiny()
    images, digits = load_digits()
    teacher = build_teacher(config)
    labels = teacher.labels(images)
    assert torch.equal(labels, build_teacher(config).labels(images))  # seeded, deterministic
    assert torch.equal(
        labels[:100], teacher.labels(images[:100])
    )  # a label depends on its image only
    balance = label_balance(labels)
    assert balance["entropy_ratio"] > 0.9 and balance["smallest"] > 0.02
    assert (labels != build_teacher(config, teacher_seed=1).labels(images)).float().mean() > 0.5
    assert (labels == digits).float().mean() < 0.3  # not the digit classes
    data, splits = teacher_search_data(config, teacher)
    assert torch.equal(splits["test"].tensors[1], teacher.labels(splits["test"].tensors[0]))
    assert len(data.warmup) + len(data.switch) == len(splits["train"])
    with pytest.raises(ValueError, match="teacher_seed"):
        build_teacher(config, teacher_seed=-1)
    with pytest.raises(ValueError, match="digits"):
        build_teacher(load_config("quick", overrides=TINY + ['data.dataset="cifar10"']))


def test_label_balance_by_hand() -> None:
    balance = label_balance(torch.tensor([0, 0, 1, 1]), num_classes=2)
    assert balance == {"counts": [2, 2], "smallest": 0.5, "largest": 0.5, "entropy_ratio": 1.0}
    assert label_balance(torch.tensor([1, 1]), num_classes=2)["entropy_ratio"] == 0.0
    with pytest.raises(ValueError, match="empty"):
        label_balance(torch.tensor([], dtype=torch.int64))
    with pytest.raises(ValueError, match="0..9"):
        label_balance(torch.tensor([10]))


# -- the experiment ------------------------------------------------------------------------------
def test_jobs_and_bad_input() -> None:
    jobs = recovery_jobs([0, 1], [0.1, 0.05])
    assert len(jobs) == 6 and jobs[-1] == {"search": "darts", "seed": 1}
    assert recovery_jobs([0], [0.1], ["darts"]) == [{"search": "darts", "seed": 0}]
    for args, message in (
        (([], [0.1]), "at least one seed"),
        (([0], []), "at least one seed"),
        (([-1], [0.1]), "seeds must be"),
        (([0], [0.0]), "lambdas must be"),
        (([0, 0], [0.1]), "must not repeat"),
        (([0], [0.1], ["bayes"]), "methods must be some of"),
        (([0], [0.1], []), "methods must be some of"),
    ):
        with pytest.raises(RecoveryError, match=message):
            recovery_jobs(*args)


def test_summary_groups_by_method_and_lambda() -> None:
    done = [
        {
            "search": "bayesnas",
            "seed": s,
            "lambda": 0.1,
            "scores": {"bayesnas": {"precision": p, "recall": 1.0, "found": 4}},
        }
        for s, p in ((0, 0.5), (1, 1.0))
    ]
    done.append(
        {
            "search": "darts",
            "seed": 0,
            "scores": {"darts": {"precision": 0.25, "recall": 0.5, "found": 16}},
        }
    )
    rows = recovery_summary(done)
    assert [(r["method"], r["lambda"], r["n"]) for r in rows] == [
        ("bayesnas", 0.1, 2),
        ("darts", None, 1),
    ]
    assert rows[0]["precision"]["mean"] == 0.75 and rows[1]["pairs"] == 16
    with pytest.raises(ValueError, match="no finished"):
        recovery_summary([])


def test_experiment_writes_resumes_and_refuses(tmp_path) -> None:
    out = tmp_path / "r"
    results = run_recovery(tiny(), [0, 1], [0.5], out, random_draws=2, check_draws=1)
    lines = (out / "settings.jsonl").read_text().splitlines()
    assert len(lines) == 2 + 4  # header, check, 2 BayesNAS searches, 2 DARTS searches
    assert {r["method"] for r in results["summary"]} == set(METHODS)
    for row in results["summary"]:
        assert row["n"] == 2 and 0.0 <= row["precision"]["mean"] <= 1.0
        assert row["recall"]["low"] <= row["recall"]["mean"] <= row["recall"]["high"]
    check = results["check"]
    assert 0.0 <= check["planted"] <= 1.0 and len(check["random"]) == 1
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    assert json.loads((out / "provenance.json").read_text())["recovery"]["seeds"] == [0, 1]
    # a run killed after its first two searches resumes at the third, with the same results
    (out / "settings.jsonl").write_text("\n".join(lines[:4]) + "\n")
    again = run_recovery(tiny(), [0, 1], [0.5], out, resume=True, random_draws=2, check_draws=1)
    assert json.loads(json.dumps(again)) == json.loads(json.dumps(results))
    assert json.loads((out / "provenance.json").read_text())["recovery"]["resumed_with"] == 3
    with pytest.raises(RecoveryError, match="already holds"):
        run_recovery(tiny(), [0, 1], [0.5], out, random_draws=2, check_draws=1)
    with pytest.raises(RecoveryError, match="another configuration"):
        run_recovery(tiny(), [0], [0.5], out, resume=True, random_draws=2, check_draws=1)
    with pytest.raises(RecoveryError, match="does not exist"):
        run_recovery(tiny(), [0], [0.5], tmp_path / "none", resume=True)
    for kwargs, message in (
        ({"random_draws": 0}, "random_draws"),
        ({"darts_arch_lr": 0.0}, "darts_arch_lr"),
    ):
        with pytest.raises(RecoveryError, match=message):
            run_recovery(tiny(), [0], [0.5], tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_cli_recover(tmp_path, capsys) -> None:
    sets = [arg for item in TINY for arg in ("--set", item)]
    code = main(
        [
            "recover",
            "--seeds",
            "0",
            "--lambdas",
            "0.5",
            "--methods",
            "darts",
            "--check-draws",
            "0",
            "--out",
            str(tmp_path / "c"),
            "--no-progress",
            *sets,
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "darts" in printed and "precision" in printed
    assert (tmp_path / "c" / "results.json").exists()
    assert (
        main(["recover", "--seeds", "0", "--lambdas", "-1", "--out", str(tmp_path / "d"), *sets])
        == 2
    )
    assert "lambdas must be" in capsys.readouterr().err
