"""The ``bayesnas-book`` command.

Subcommands (each a thin layer over a library function; errors are printed as one clear
message with exit status 2, never a traceback):

* ``bayesnas-book info``: library version, device, profile and the resolved configuration
* ``bayesnas-book data NAME``: prepare or check a dataset (download where the network allows)
* ``bayesnas-book book sync [--check]``: regenerate and execute the chapter notebooks
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bayesnas_book import __version__
from bayesnas_book.config import PROFILES, ConfigError, config_to_dict, load_config

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


def _cmd_book(args: argparse.Namespace) -> int:
    from bayesnas_book.book import BookSyncError, check_chapters, sync_chapters

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

    book = commands.add_parser("book", help="keep the paired chapter notebooks in sync")
    book_commands = book.add_subparsers(dest="book_command", required=True, metavar="ACTION")
    sync = book_commands.add_parser("sync", help="regenerate each .ipynb from its .md and execute it")
    sync.add_argument("--check", action="store_true", help="only check that every pair is in sync and executed")
    sync.add_argument("--chapters", default="chapters", help="the chapters folder (default: chapters)")
    sync.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    sync.add_argument("names", nargs="*", help="chapter stems to sync (default: all)")
    sync.set_defaults(run=_cmd_book)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (UserError, ConfigError, ValueError) as error:
        print(f"bayesnas-book {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
