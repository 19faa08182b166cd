"""prepare_dataset, the registry, sample grids, atomic writes and `bayesnas-book data`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

from bayesnas_book.atomic import atomic_write_bytes, atomic_writer
from bayesnas_book.cli import main
from bayesnas_book.data import (
    DatasetError,
    DatasetSpec,
    DatasetSummary,
    dataset_names,
    default_data_root,
    get_dataset_spec,
    image_grid_figure,
    load_samples,
    prepare_dataset,
    register_dataset,
    save_image_grid,
    write_cifar10_fixture,
    write_imagefolder_fixture,
    write_mnist_fixture,
)
from bayesnas_book.data.paths import resolve_root

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("all")
    write_cifar10_fixture(root, images_per_batch=4, test_images=3)
    write_mnist_fixture(root, train_images=12, test_images=5)
    write_imagefolder_fixture(root / "imagenet", classes=4, images_per_class=3, size=20)
    return root


def test_registry_lists_the_builtin_datasets() -> None:
    assert dataset_names() == ("cifar10", "digits", "imagenet", "mnist")
    assert get_dataset_spec(" CIFAR10 ").title == "CIFAR-10"


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(
        DatasetError,
        match=r"unknown dataset 'cifar100'; valid names: cifar10, digits, imagenet, mnist",
    ):
        prepare_dataset("cifar100")
    with pytest.raises(DatasetError, match=r"unknown dataset 3; valid names"):
        get_dataset_spec(3)  # type: ignore[arg-type]


def test_registry_refuses_duplicates_and_bad_names() -> None:
    spec = get_dataset_spec("digits")
    with pytest.raises(ValueError, match=r"dataset 'digits' is already registered"):
        register_dataset(spec)
    with pytest.raises(
        ValueError, match=r"dataset name must be a lower-case identifier, got 'My-Data'"
    ):
        register_dataset(DatasetSpec("My-Data", "x", spec.prepare, spec.samples))


def test_default_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BAYESNAS_DATA", str(tmp_path / "here"))
    assert default_data_root() == tmp_path / "here"
    assert resolve_root(None) == tmp_path / "here"
    monkeypatch.setenv("BAYESNAS_DATA", "  ")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_root() == tmp_path / ".cache" / "bayesnas-book" / "datasets"
    monkeypatch.delenv("BAYESNAS_DATA")
    assert default_data_root() == tmp_path / ".cache" / "bayesnas-book" / "datasets"


def test_resolve_root_rejects_bad_values() -> None:
    with pytest.raises(
        ValueError, match=r"`root` must be a folder path \(str or Path\) or None, got 3"
    ):
        resolve_root(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"got an empty string"):
        resolve_root(" ")


def test_prepare_digits_summary() -> None:
    summary = prepare_dataset("digits", root="/does/not/matter", download=False)
    assert (
        summary.splits == {"all": 1797}
        and summary.image_shape == (1, 8, 8)
        and summary.num_classes == 10
    )
    lines = summary.describe().splitlines()
    assert lines[0] == "digits: 1797 images of shape (1, 8, 8), 10 classes"
    assert lines[1] == "  root: (shipped, no download)"


@pytest.mark.parametrize(
    ("name", "sub", "splits", "shape", "classes"),
    [
        ("cifar10", "", {"train": 20, "test": 3}, (3, 32, 32), 10),
        ("mnist", "", {"train": 12, "test": 5}, (1, 28, 28), 10),
        ("imagenet", "imagenet", {"train": 12, "val": 12}, None, 4),
    ],
)
def test_prepare_checks_what_is_on_disk(
    fixture_root: Path, name, sub, splits, shape, classes
) -> None:
    summary = prepare_dataset(name, root=fixture_root / sub, download=False)
    assert summary.name == name and summary.root == fixture_root / sub
    assert (
        dict(summary.splits) == splits
        and summary.image_shape == shape
        and summary.num_classes == classes
    )
    assert summary.total == sum(splits.values())
    assert f"{name}: {summary.total} images" in summary.describe()


def test_prepare_missing_imagenet_explains_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"ImageNet not found: .*get ILSVRC-2012 from https://image-net.org"
    ):
        prepare_dataset("imagenet", root=tmp_path / "imagenet", download=True)


def test_describe_shortens_long_class_lists() -> None:
    summary = DatasetSummary(
        "x", Path("/d"), {"train": 3}, None, 12, tuple(f"c{i}" for i in range(12)), "test"
    )
    text = summary.describe()
    assert "x: 3 images of varying size, 12 classes" in text and "source: test" in text
    assert (
        text.splitlines()[-1] == "  classes: c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, ... (2 more)"
    )


@pytest.mark.parametrize(
    ("name", "sub", "shape"),
    [
        ("digits", "", (5, 1, 8, 8)),
        ("cifar10", "", (5, 3, 32, 32)),
        ("mnist", "", (5, 1, 28, 28)),
        ("imagenet", "imagenet", (5, 3, 64, 64)),
    ],
)
def test_load_samples(fixture_root: Path, name: str, sub: str, shape: tuple) -> None:
    images, labels, class_names = load_samples(name, root=fixture_root / sub, count=5)
    assert tuple(images.shape) == shape and images.dtype == torch.uint8
    assert labels.shape == (5,) and labels.dtype == torch.int64
    assert int(labels.max()) < len(class_names)


def test_imagenet_samples_spread_over_the_classes(fixture_root: Path) -> None:
    _, labels, _ = load_samples("imagenet", root=fixture_root / "imagenet", count=4)
    assert labels.tolist() == [0, 1, 2, 3]


def test_load_samples_rejects_bad_count() -> None:
    with pytest.raises(ValueError, match=r"`count` must be a positive integer, got 0"):
        load_samples("digits", count=0)


def test_image_grid_figure_layout() -> None:
    images = torch.rand(10, 3, 6, 6, dtype=torch.float64)
    figure = image_grid_figure(images, torch.arange(10) % 3, ["a", "b", "c"], columns=4)
    assert isinstance(figure, Figure) and len(figure.axes) == 12  # 3 rows of 4
    assert [axis.get_title() for axis in figure.axes[:4]] == ["a", "b", "c", "a"]
    grey = image_grid_figure(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), [7, 8])
    assert [axis.get_title() for axis in grey.axes] == ["7", "8"]


@pytest.mark.parametrize(
    ("images", "labels", "kwargs", "message"),
    [
        (
            torch.zeros(2, 2, 4, 4),
            [0, 1],
            {},
            r"`images` must be a tensor of shape \(N, C, H, W\) with C 1 or 3, got \(2, 2, 4, 4\)",
        ),
        (torch.zeros(0, 1, 4, 4), [], {}, r"`images` must hold at least one image, got N=0"),
        (torch.zeros(2, 1, 4, 4), [0], {}, r"`labels` must have one entry per image \(2\), got 1"),
        (
            torch.zeros(2, 1, 4, 4),
            [0, 1],
            {"columns": 0},
            r"`columns` must be a positive integer, got 0",
        ),
        (
            torch.zeros(2, 1, 4, 4),
            [0, 5],
            {"class_names": ["a", "b"]},
            r"label 5 has no entry in `class_names` \(2 names\)",
        ),
        (
            torch.zeros(2, 1, 4, 4, dtype=torch.int32),
            [0, 1],
            {},
            r"`images` must be uint8 or floating point, got dtype torch.int32",
        ),
    ],
)
def test_image_grid_figure_rejects_bad_input(images, labels, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        image_grid_figure(images, labels, **kwargs)


def test_save_image_grid_writes_a_png(fixture_root: Path, tmp_path: Path) -> None:
    path = save_image_grid("mnist", tmp_path / "figures" / "mnist.png", root=fixture_root, count=6)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in path.parent.iterdir()] == ["mnist.png"]  # no temporary file left
    with pytest.raises(ValueError, match=r"`path` must end in .png, got '.*grid.jpg'"):
        save_image_grid("digits", tmp_path / "grid.jpg")


def test_cli_data_digits_with_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "g.png"
    assert main(["data", "digits", "--grid", str(grid)]) == 0
    out = capsys.readouterr().out
    assert (
        "digits: 1797 images of shape (1, 8, 8), 10 classes" in out
        and f"wrote a grid of sample images to {grid}" in out
    )
    assert grid.read_bytes()[:8] == PNG_SIGNATURE


def test_cli_data_cifar10_on_fixture(
    fixture_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "cifar10", "--root", str(fixture_root), "--no-download"]) == 0
    assert "cifar10: 23 images of shape (3, 32, 32), 10 classes" in capsys.readouterr().out


def test_cli_data_missing_cifar10_without_download(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "cifar10", "--root", str(empty), "--no-download"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(
        f"bayesnas-book data: error: CIFAR-10 not found: no folder {empty}/cifar-10-batches-py"
    )
    assert (
        "place the extracted `cifar-10-batches-py/` folder" in captured.err
        and "Traceback" not in captured.err
    )
    assert list(empty.iterdir()) == []


def test_cli_data_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "svhn"]) == 2
    assert (
        "unknown dataset 'svhn'; valid names: cifar10, digits, imagenet, mnist"
        in capsys.readouterr().err
    )


def test_atomic_write_replaces_whole_files(tmp_path: Path) -> None:
    path = atomic_write_bytes(tmp_path / "sub" / "file.bin", b"first")
    assert path.read_bytes() == b"first" and (path.stat().st_mode & 0o777) == 0o644
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"


def test_interrupted_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = atomic_write_bytes(tmp_path / "file.bin", b"old")
    with pytest.raises(RuntimeError, match="disk gone"):
        with atomic_writer(path) as handle:
            handle.write(b"new but half")
            raise RuntimeError("disk gone")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file.bin"]
