"""The ``bayesnas-book`` command.

Subcommands (each a thin layer over a library function; errors are printed as one clear
message with exit status 2, never a traceback). The parser is built from light modules only
(no torch): ``--help``, ``--version`` and usage errors answer at once, and each command imports
the library's heavy modules in its handler.

* ``bayesnas-book info``: library version, device, profile and the resolved configuration
* ``bayesnas-book search``: BayesNAS Algorithm 1; writes the genotype, its drawing, the history
* ``bayesnas-book train --genotype G``, ``bayesnas-book evaluate RUN``: the found cells' network
* ``bayesnas-book transfer --genotype G --imagenet DIR``: the ImageNet mobile network (``train`` and
  ``transfer`` also run under ``torchrun --nproc-per-node N -m bayesnas_book.cli ...``)
* ``bayesnas-book compress --model M``: Bayesian gate pruning of LeNet / VGG and its baselines
* ``bayesnas-book study``: RQ1 and RQ2 over many searches, the cells trained stand-alone
* ``bayesnas-book recover``: architecture recovery of a planted cell, four methods, precision/recall
* ``bayesnas-book curvature``: the curvature methods against the exact GGN, over seeds and
  points of the search
* ``bayesnas-book bench [--suite search|train|scaling|gpu-check]``: benchmarks as ratios to a baseline
* ``bayesnas-book data NAME``: prepare or check a dataset (download where the network allows)
* ``bayesnas-book book sync [--check]``: regenerate and execute the chapter notebooks
* ``bayesnas-book book site OUT``: the public site's sources, from the executed notebooks
* ``bayesnas-book assignments build OUT``, ``assignments grade SUBMISSION``: student notebooks
  and site from the exercises (nbgrader), and the autograder
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bayesnas_book import __version__
from bayesnas_book.config import PROFILES, ConfigError, RunConfig, config_to_dict, load_config
from bayesnas_book.results import BENCH_FILES

if TYPE_CHECKING:  # the library's heavy modules load inside each command (`--help` answers at once)
    from bayesnas_book.search import SearchResult

__all__ = ["build_parser", "main"]


class UserError(Exception):
    """An error caused by the command's input; printed without a traceback."""


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", choices=PROFILES, default=None,
        help="quick (CPU, seconds) or paper (GPU, published protocol); default $BAYESNAS_PROFILE or quick",
    )
    parser.add_argument("--config", metavar="FILE", default=None, help="TOML file applied on top of the profile")
    parser.add_argument(
        "--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
        help="override one config value, e.g. --set data.batch_size=32 (repeatable)",
    )


def _add_run_arguments(parser: argparse.ArgumentParser, kind: str) -> None:
    """The options `search` and `train` share: dataset, seed, output folder, resume, progress."""
    parser.add_argument("--dataset", choices=("digits", "cifar10", "mnist"), default=None, help="overrides data.dataset")
    parser.add_argument("--seed", type=int, default=None, help="overrides seed")
    parser.add_argument("--out", default=None, help=f"output folder (default runs/{kind}-PROFILE-DATASET-seedN)")
    parser.add_argument("--resume", action="store_true", help="continue the run whose checkpoint is in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _run_folder(args: argparse.Namespace, config: RunConfig, kind: str) -> Path:
    """``--out``, or ``runs/KIND-PROFILE-DATASET-seedN``."""
    return Path(args.out) if args.out else Path("runs") / f"{kind}-{config.profile}-{config.data.dataset}-seed{config.seed}"


def _cmd_info(args: argparse.Namespace) -> int:
    from bayesnas_book.device import describe_device, resolve_device

    config = load_config(args.profile, args.config, args.overrides)
    device = resolve_device(config.device)
    print(f"bayesnas-book {__version__}")
    print(f"device: {describe_device(device)}")
    print(f"profile: {config.profile}")
    print(json.dumps(config_to_dict(config), indent=2))
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from bayesnas_book.data import DatasetError, prepare_dataset

    try:
        summary = prepare_dataset(args.name, root=args.root, download=not args.no_download)
    except DatasetError as error:
        raise UserError(str(error)) from None
    print(summary.describe())
    if args.grid is not None:
        from bayesnas_book.data import save_image_grid

        path = save_image_grid(args.name, args.grid, root=args.root)
        print(f"wrote a grid of sample images to {path}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from bayesnas_book.bayes.pruning import PruningError
    from bayesnas_book.data import DatasetError
    from bayesnas_book.search import SearchError, run_search

    overrides = list(args.overrides)
    for flag, key in (("dataset", "data.dataset"), ("lambda_o", "search.lambda_o"), ("lambda_c", "search.lambda_c"),
                      ("rounds", "search.rounds"), ("seed", "seed"), ("space", "search.space")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
    config = load_config(args.profile, args.config, overrides)
    out = _run_folder(args, config, "search")
    started = time.perf_counter()
    try:
        result = run_search(config, out=out, resume=args.resume, progress=not args.no_progress)
    except (SearchError, DatasetError, PruningError) as error:
        raise UserError(str(error)) from None
    print(result.genotype.describe())
    print(f"magnitude rule on the same switches (the paper's RQ2 baseline):\n{result.magnitude_genotype.describe()}")
    print(f"wrote {out}/genotype.json, genotype_magnitude.json, cells.png, history.json, metrics.jsonl, provenance.json")
    print(_search_summary(result, time.perf_counter() - started))
    return 0


def _search_summary(result: SearchResult, seconds: float) -> str:
    """The closing lines of `search`.

    The supernet's validation accuracy after the last epoch, the (edge, op) pairs kept and pruned
    per cell type, and this command's wall time (of a resumed run: since the resume).
    """
    lines = [f"search summary: supernet validation accuracy {100 * result.metrics[-1]['validation_accuracy']:.2f}% "
             f"(last epoch); wall time {seconds:.1f} s"]
    for kind, pruning in result.pruning.items():
        ops, edges = pruning.kept_ops, pruning.kept_edges  # bool (E, K), (E,)
        kept = int(ops.sum())
        lines.append(f"  {kind} cell: {kept} (edge, op) pairs kept, {ops.numel() - kept} pruned; "
                     f"{int(edges.sum())} of {edges.numel()} edges kept")
    return "\n".join(lines)


def _cmd_train(args: argparse.Namespace) -> int:
    from bayesnas_book.data import DatasetError
    from bayesnas_book.evaluation import train_genotype
    from bayesnas_book.space.genotype import GenotypeError, load_genotype
    from bayesnas_book.train import TrainError

    overrides = list(args.overrides)
    if args.dataset is not None:
        overrides.append(f'data.dataset="{args.dataset}"')
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    config = load_config(args.profile, args.config, overrides)
    try:
        genotype = load_genotype(args.genotype)
        out = _run_folder(args, config, "train")
        result = train_genotype(genotype, config, out=out, resume=args.resume, progress=not args.no_progress)
    except (GenotypeError, DatasetError, TrainError) as error:
        raise UserError(str(error)) from None
    final = result.final
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 alone reports
        return 0
    print(f"test top-1 error {100 * (1 - final['top1']):.2f}%, top-5 error {100 * (1 - final['top5']):.2f}% "
          f"after {result.epochs_completed} epochs; wrote {out}/model.pt, metrics.jsonl, provenance.json")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from bayesnas_book.data import DatasetError
    from bayesnas_book.evaluation import MOBILE_MACS, evaluate_run

    try:
        report = evaluate_run(args.folder)
    except (FileNotFoundError, DatasetError) as error:
        raise UserError(str(error)) from None
    print(report.describe())
    if report.input_shape[1] >= 224:
        verdict = "within" if report.macs < MOBILE_MACS else "outside"
        print(f"mobile setting (< 600M multiply-adds): {verdict}")
    return 0


def _cmd_transfer(args: argparse.Namespace) -> int:
    from bayesnas_book.data import DatasetError
    from bayesnas_book.space.genotype import GenotypeError, load_genotype
    from bayesnas_book.train import DistributedError, TrainError
    from bayesnas_book.transfer import TransferError, train_transfer

    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    config = load_config(args.profile, args.config, overrides)
    out = Path(args.out) if args.out else Path("runs") / f"transfer-{config.profile}-imagenet-seed{config.seed}"
    try:
        genotype = load_genotype(args.genotype)
        result = train_transfer(genotype, config, imagenet=args.imagenet, out=out, resume=args.resume,
                                progress=not args.no_progress, stop_after=args.stop_after)
    except (GenotypeError, DatasetError, TrainError, TransferError, DistributedError) as error:
        raise UserError(str(error)) from None
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone reports
        final, done = result.final, result.epochs_completed
        state = "finished" if result.finished else f"stopped after epoch {done} (continue with --resume)"
        print(f"val top-1 error {100 * (1 - final['top1']):.2f}%, top-5 error {100 * (1 - final['top5']):.2f}% "
              f"after {done} epochs, {state}; wrote {out}/checkpoint.pt, metrics.jsonl"
              + (", model.pt, provenance.json" if result.finished else ""))
    return 0


def _cmd_compress(args: argparse.Namespace) -> int:
    from bayesnas_book.compress import CompressionError, run_compress
    from bayesnas_book.data import DatasetError

    overrides = list(args.overrides)
    for flag, key in (("dataset", "data.dataset"), ("model", "compress.model"), ("seed", "seed")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
    config = load_config(args.profile, args.config, overrides)
    out = Path(args.out) if args.out else Path("runs") / f"compress-{config.compress.model}-{config.profile}-{config.data.dataset}-seed{config.seed}"
    try:
        result = run_compress(config, out=out, resume=args.resume, progress=not args.no_progress)
    except (CompressionError, DatasetError) as error:
        raise UserError(str(error)) from None
    before = result.report["before"]
    print(f"before: units {before['units_text']}, {before['params']:,} params, {before['macs']:,} MACs, "
          f"test error {100 * result.report['methods']['pretrained']['test_error']:.2f}%")
    for method in ("bayes", "magnitude", "group_lasso"):
        entry = result.report["methods"][method]
        print(f"{method}: units {entry['units_text']}, {entry['params']:,} params ({entry['compression']:.1f}x), "
              f"{entry['macs']:,} MACs, test error {100 * entry['test_error']:.2f}%")
    print(f"wrote {out}/report.json, history.json, metrics.jsonl, pruned_*.pt, provenance.json")
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    from bayesnas_book.bayes.pruning import PruningError
    from bayesnas_book.study import StudyError, run_study

    config = load_config(args.profile, args.config, args.overrides)
    try:
        summary = run_study(config, args.seeds, args.lambdas, args.out, resume=args.resume, channels=args.channels,
                            num_cells=args.cells, progress=not args.no_progress, train_samples=args.train_samples)
    except (StudyError, PruningError) as error:
        raise UserError(str(error)) from None
    rq1, rq2 = summary["rq1"], summary["rq2"]
    print(f"RQ1: {rq1['cells_with_dangling_node']} of {rq1['cells']} derived cells have a dangling node "
          f"({rq1['cells_dangling_without_node_rule']} would without the node rule)")
    for rule, row in rq2["test_top1"].items():
        print(f"RQ2 {rule:>17}: stand-alone test top-1 {row['mean']:.4f}, 95% interval [{row['low']:.4f}, "
              f"{row['high']:.4f}] (n = {int(row['n'])}), {rq2['params'][rule]:,.0f} params")
    print(f"wrote {Path(args.out) / 'study.json'}, settings.jsonl, provenance.json")
    return 0


def _cmd_curvature(args: argparse.Namespace) -> int:
    from bayesnas_book.curvature.study import CurvatureStudyError, run_curvature_study

    config = load_config(args.profile, args.config, args.overrides)
    try:
        summary = run_curvature_study(
            config, args.seeds, args.out, points=args.points, num_batches=args.batches,
            batch_size=args.batch_size, repeats=args.repeats, resume=args.resume)
    except CurvatureStudyError as error:
        raise UserError(str(error)) from None
    level = f"{summary['level']:.0%}"
    for point in summary["points"]:
        print(f"step {point['step']} ({point['label']}): the exact GGN prunes "
              f"{point['reference_pruned']['mean']:.1f} of {point['num_groups']} groups "
              f"(mean of {len(summary['seeds'])} seeds)")
        for label, row in point["methods"].items():
            agreement = row["agreement"]
            print(f"  {label:20s} agreement {agreement['mean']:.3f} "
                  f"[{agreement['low']:.3f}, {agreement['high']:.3f}] ({level}), "
                  f"rel. error {row['relative_error']['mean']:.3f}, "
                  f"Spearman {row['spearman']['mean']:.3f}, "
                  f"cost {row['cost_ratio']['mean']:.2g} x fwd+bwd")
    print(f"choice (highest agreement at the update steps, ties to the cheaper): "
          f"{summary['choice']['label']}")
    print(f"wrote {Path(args.out) / 'curvature.json'}, points.jsonl, provenance.json")
    return 0


def _cmd_recover(args: argparse.Namespace) -> int:
    from bayesnas_book.bayes.pruning import PruningError
    from bayesnas_book.recovery.experiment import METHODS, RecoveryError, run_recovery

    config = load_config(args.profile, args.config, args.overrides)
    try:
        results = run_recovery(config, args.seeds, args.lambdas, args.out, resume=args.resume,
                               methods=args.methods or METHODS, teacher_seed=args.teacher_seed,
                               random_draws=args.random_draws, check_draws=args.check_draws,
                               darts_arch_lr=args.darts_arch_lr, progress=not args.no_progress)
    except (RecoveryError, PruningError, ValueError) as error:
        raise UserError(str(error)) from None
    check = results["check"]
    if check is not None:
        print(f"label check: planted cells test top-1 {check['planted']:.4f}, random cells "
              + ", ".join(f"{x:.4f}" for x in check["random"]))
    for row in results["summary"]:
        lam = "-" if row["lambda"] is None else f"{row['lambda']:g}"
        p, r = row["precision"], row["recall"]
        print(f"{row['method']:>9} lambda {lam:>5}: precision {p['mean']:.3f} [{p['low']:.3f}, {p['high']:.3f}], "
              f"recall {r['mean']:.3f} [{r['low']:.3f}, {r['high']:.3f}] (n = {row['n']}, {row['pairs']:.1f} pairs)")
    print(f"wrote {Path(args.out) / 'results.json'}, settings.jsonl, provenance.json")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from bayesnas_book.bench_suites import BENCH_SUITES, run_suite

    config = load_config(args.profile, args.config, args.overrides)
    if args.repeats < 1:
        raise UserError(f"--repeats must be >= 1, got {args.repeats}")
    try:
        _, text = run_suite(args.suite, config, args.out, repeats=args.repeats, exact=args.exact, compile=args.compile,
                            tiny=args.tiny, fusion=args.fusion)
    except ValueError as error:
        raise UserError(str(error)) from None
    print(text)
    if args.out:
        print(f"wrote {Path(args.out) / BENCH_SUITES[args.suite]}")
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    from bayesnas_book.book import BookSyncError, check_chapters, sync_chapters

    if args.book_command == "site":
        from bayesnas_book.assignments import AssignmentError
        from bayesnas_book.assignments.public import build_public_site

        try:
            written = build_public_site(Path(args.book), Path(args.out), names=args.chapters)
        except AssignmentError as error:
            raise UserError(str(error)) from None
        print(f"wrote the public site's sources ({len(written)} executed chapters) to {args.out}; "
              f"build it with: cd {args.out} && myst build --html")
        return 0
    chapters_dir = Path(args.chapters)
    try:
        if args.check:
            check_chapters(chapters_dir, names=args.names)
            print("every chapter notebook is in sync with its MyST source and executed")
        else:
            for path in sync_chapters(chapters_dir, names=args.names, timeout=args.timeout):
                print(f"synced and executed {path}")
    except BookSyncError as error:
        raise UserError(str(error)) from None
    return 0


def _cmd_assignments(args: argparse.Namespace) -> int:
    from bayesnas_book.assignments import AssignmentError, build_assignments, grade_submission

    try:
        if args.assignments_command == "build":
            built = build_assignments(Path(args.book), Path(args.out), names=args.chapters)
            print(built.describe())
            print(f"wrote student notebooks to {Path(args.out) / 'release'}, the student site to {built.site}, "
                  f"the autograder's references (keep them private) to {Path(args.out) / 'autograder'}")
        else:
            report = grade_submission(Path(args.submission), Path(args.reference), timeout=args.timeout,
                                      cwd=Path(args.cwd) if args.cwd else None)
            print(report.to_json() if args.json else report.describe())
    except AssignmentError as error:
        raise UserError(str(error)) from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bayesnas-book`` (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="bayesnas-book",
        description="BayesNAS, the runnable book: search, train, compress, and keep the chapters in sync.",
    )
    parser.add_argument("--version", action="version", version=f"bayesnas-book {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="print the version, the device and the resolved configuration")
    _add_config_arguments(info)
    info.set_defaults(run=_cmd_info)

    data = commands.add_parser("data", help="prepare or check a dataset (digits, cifar10, mnist, imagenet)")
    data.add_argument("name", help="digits, cifar10, mnist or imagenet")
    data.add_argument("--root", default=None, help="dataset folder; default $BAYESNAS_DATA or ~/.cache/bayesnas-book/datasets")
    data.add_argument("--no-download", action="store_true", help="only check what is on disk")
    data.add_argument("--grid", metavar="PNG", default=None, help="also save a grid of sample images")
    data.set_defaults(run=_cmd_data)

    search = commands.add_parser("search", help="run the BayesNAS search (Algorithm 1) and draw the found cells")
    _add_config_arguments(search)
    _add_run_arguments(search, "search")
    search.add_argument("--space", choices=("bayesnas", "darts", "tree"), default=None, help="overrides search.space")
    search.add_argument("--lambda-o", type=float, default=None, help="parent (edge) penalty lambda_o (paper: 0.01, 0.007, 0.005)")
    search.add_argument("--lambda-c", type=float, default=None, help="child (op) penalty lambda_c")
    search.add_argument("--rounds", type=int, default=None, help="train-and-update rounds T")
    search.set_defaults(run=_cmd_search)

    train = commands.add_parser("train", help="train the evaluation network of a genotype (official name or JSON file)")
    _add_config_arguments(train)
    train.add_argument("--genotype", required=True, help="a genotype JSON file (from `search`) or an official name, e.g. bayesnas_cifar10_lambda0.01")
    _add_run_arguments(train, "train")
    train.set_defaults(run=_cmd_train)

    evaluate = commands.add_parser("evaluate", help="test a finished `train` or `transfer` run: top-1/top-5 error, parameters, MACs")
    evaluate.add_argument("folder", metavar="RUN", help="the --out folder of a finished `bayesnas-book train` run")
    evaluate.set_defaults(run=_cmd_evaluate)

    transfer = commands.add_parser(
        "transfer", help="train a genotype's ImageNet mobile network on an ImageFolder tree (torchrun for several GPUs)")
    _add_config_arguments(transfer)
    transfer.add_argument("--genotype", required=True, help="a genotype JSON file or an official name, e.g. bayesnas_imagenet")
    transfer.add_argument("--imagenet", required=True, metavar="DIR", help="ImageFolder tree holding train/<class>/ and val/<class>/")
    transfer.add_argument("--seed", type=int, default=None, help="overrides seed")
    transfer.add_argument("--out", default=None, help="output folder (default runs/transfer-PROFILE-imagenet-seedN)")
    transfer.add_argument("--resume", action="store_true", help="continue the run whose checkpoint is in --out")
    transfer.add_argument("--stop-after", type=int, default=None, metavar="EPOCHS",
                          help="stop once this many epochs are done (a job time limit; continue with --resume)")
    transfer.add_argument("--no-progress", action="store_true", help="no progress bars")
    transfer.set_defaults(run=_cmd_transfer)

    compress = commands.add_parser("compress", help="prune neurons and filters with the Bayesian gates; magnitude and group-lasso baselines")
    _add_config_arguments(compress)
    compress.add_argument("--model", choices=("lenet300", "lenet5", "vgg"), default=None, help="overrides compress.model")
    _add_run_arguments(compress, "compress")
    compress.set_defaults(run=_cmd_compress)

    study = commands.add_parser("study", help="RQ1 and RQ2 over many searches: connectivity, and BayesNAS vs magnitude vs "
                                              "random cells trained stand-alone (resumable)")
    _add_config_arguments(study)
    study.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds (default 0 1 2)")
    study.add_argument("--lambdas", type=float, nargs="+", default=[0.1, 0.05], help="lambda_o = lambda_c values")
    study.add_argument("--channels", type=int, default=None, help="C of the stand-alone networks (default network.channels)")
    study.add_argument("--cells", type=int, default=None, help="cells of the stand-alone networks (default network.num_cells)")
    study.add_argument("--train-samples", type=int, default=None,
                       help="train the stand-alone networks on this many training images (default all)")
    study.add_argument("--out", required=True, help="the study folder")
    study.add_argument("--resume", action="store_true", help="continue the study in --out")
    study.add_argument("--no-progress", action="store_true", help="no progress bar, no line per finished setting")
    study.set_defaults(run=_cmd_study)

    curvature = commands.add_parser(
        "curvature", help="the curvature methods against the exact GGN over seeds and points "
                          "of the search: errors, prune agreement, cost (resumable)")
    _add_config_arguments(curvature)
    curvature.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                           help="search seeds (default 0 1 2 3 4)")
    curvature.add_argument("--points", type=int, nargs="+", default=None,
                           help="completed schedule steps to compare at (default: 0, the end of "
                                "the warm-up, every update)")
    curvature.add_argument("--batches", type=int, default=2,
                           help="batches of the switch split per point (default 2)")
    curvature.add_argument("--batch-size", type=int, default=8,
                           help="images per batch (default 8; the exact GGN costs batch x classes "
                                "backward passes)")
    curvature.add_argument("--repeats", type=int, default=2,
                           help="timed repetitions per method and batch (default 2)")
    curvature.add_argument("--out", required=True, help="the study folder")
    curvature.add_argument("--resume", action="store_true", help="continue the study in --out")
    curvature.set_defaults(run=_cmd_curvature)

    recover = commands.add_parser(
        "recover", help="architecture recovery: label the digits with a planted cell's teacher and score "
                        "BayesNAS, the magnitude rule, random cells and first-order DARTS (resumable)")
    _add_config_arguments(recover)
    recover.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="search seeds (default 0 1 2 3 4)")
    recover.add_argument("--lambdas", type=float, nargs="+", default=[0.1, 0.05], help="lambda_o = lambda_c values")
    recover.add_argument("--methods", nargs="+", default=None, help="some of bayesnas magnitude random darts (default all)")
    recover.add_argument("--teacher-seed", type=int, default=0, help="seeds the teacher's weights (default 0)")
    recover.add_argument("--random-draws", type=int, default=10, help="random cells per BayesNAS search (default 10)")
    recover.add_argument("--check-draws", type=int, default=3,
                         help="random cells trained against the planted one in the label check (default 3; 0 skips)")
    recover.add_argument("--darts-arch-lr", type=float, default=0.1, help="Adam learning rate of DARTS's alphas (default 0.1)")
    recover.add_argument("--out", required=True, help="the experiment folder")
    recover.add_argument("--resume", action="store_true", help="continue the experiment in --out")
    recover.add_argument("--no-progress", action="store_true", help="no progress bar")
    recover.set_defaults(run=_cmd_recover)

    bench = commands.add_parser("bench", help="benchmarks as ratios to a baseline run in the same process (search, train, scaling, gpu-check)")
    _add_config_arguments(bench)
    bench.add_argument("--suite", choices=tuple(BENCH_FILES.values()), default="search",
                       help="search: a search step and the curvature; train: evaluation training fp32/AMP/NHWC; "
                            "scaling: cost vs batch/width/depth/switches; gpu-check: CUDA correctness + all at paper sizes")
    bench.add_argument("--repeats", type=int, default=5, help="timed repetitions (median and spread)")
    bench.add_argument("--exact", action="store_true", help="search: also time the exact GGN (slow)")
    bench.add_argument("--compile", action="store_true", help="train, gpu-check: add the torch.compile variant (compiling takes minutes)")
    bench.add_argument("--fusion", action="store_true",
                       help="search: also time the other edge evaluation (search.fused_edges flipped) and count compute ops")
    bench.add_argument("--tiny", action="store_true", help="gpu-check: toy sizes, to try the script on a CPU")
    bench.add_argument("--out", default=None, help="folder for the suite's JSON (with provenance)")
    bench.set_defaults(run=_cmd_bench)

    book = commands.add_parser("book", help="keep the paired chapter notebooks in sync")
    book_commands = book.add_subparsers(dest="book_command", required=True, metavar="ACTION")
    sync = book_commands.add_parser("sync", help="regenerate each .ipynb from its .md and execute it")
    sync.add_argument("--check", action="store_true", help="only check that every pair is in sync and executed")
    sync.add_argument("--chapters", default="chapters", help="the chapters folder (default: chapters)")
    sync.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    sync.add_argument("names", nargs="*", help="chapter stems to sync (default: all)")
    sync.set_defaults(run=_cmd_book)
    site = book_commands.add_parser(
        "site", help="write OUT: a MyST book of the executed notebooks without grading markup (no --execute needed)")
    site.add_argument("out", metavar="OUT", help="output folder")
    site.add_argument("--book", default=".", help="the book's root with myst.yml and chapters/ (default: .)")
    site.add_argument("--chapters", nargs="+", default=None, metavar="NAME", help="chapter stems (default: all)")
    site.set_defaults(run=_cmd_book)

    assignments = commands.add_parser("assignments", help="student notebooks and site from the exercises; grading")
    assignment_commands = assignments.add_subparsers(dest="assignments_command", required=True, metavar="ACTION")
    build = assignment_commands.add_parser("build", help="write OUT/release (students), OUT/site, OUT/autograder")
    build.add_argument("out", metavar="OUT", help="output folder")
    build.add_argument("--chapters", nargs="+", default=None, metavar="NAME", help="chapter stems (default: all)")
    build.add_argument("--book", default=".", help="the book's root with myst.yml and chapters/ (default: .)")
    build.set_defaults(run=_cmd_assignments)
    grade = assignment_commands.add_parser("grade", help="run the hidden tests on a student's notebook; points per exercise")
    grade.add_argument("submission", metavar="SUBMISSION", help="the student's NN_slug.ipynb")
    grade.add_argument("--reference", default="chapters",
                       help="folder of reference notebooks: chapters/ (default) or OUT/autograder")
    grade.add_argument("--cwd", default=None, help="where the notebook runs (default: the reference folder)")
    grade.add_argument("--timeout", type=int, default=300, help="seconds allowed per cell")
    grade.add_argument("--json", action="store_true", help="print the scores as JSON")
    grade.set_defaults(run=_cmd_assignments)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from bayesnas_book.provenance import git_state_at_start

    try:
        with git_state_at_start():  # provenance names the code a long run started with
            return args.run(args)
    except (UserError, ConfigError, ValueError) as error:
        print(f"bayesnas-book {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
