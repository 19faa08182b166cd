"""MNIST: IDX fixture files read by torchvision's parser, and every malformed header named."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from bayesnas_book.data import (
    DatasetError,
    DatasetNotFoundError,
    check_mnist_folder,
    mnist_dataset,
    read_idx_header,
    write_mnist_fixture,
)

IMAGES = "train-images-idx3-ubyte"
LABELS = "train-labels-idx1-ubyte"


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mnist")
    write_mnist_fixture(root, train_images=30, test_images=12, seed=0)
    return root


def _parse_idx(path: Path) -> np.ndarray:
    """An independent IDX reader for the test: big-endian header, then uint8 data."""
    raw = path.read_bytes()
    magic = struct.unpack(">I", raw[:4])[0]
    ndim = magic & 0xFF
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


def test_fixture_writes_big_endian_idx_files(mnist_root: Path) -> None:
    raw = mnist_root / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        [IMAGES, LABELS, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    )
    header = (raw / IMAGES).read_bytes()[:16]
    assert header == bytes([0, 0, 8, 3, 0, 0, 0, 30, 0, 0, 0, 28, 0, 0, 0, 28])
    assert (raw / LABELS).read_bytes()[:8] == bytes([0, 0, 8, 1, 0, 0, 0, 30])
    assert (raw / IMAGES).stat().st_size == 16 + 30 * 28 * 28
    assert read_idx_header(raw / IMAGES, 2051) == (30, 28, 28)
    assert read_idx_header(raw / LABELS, 2049) == (30,)


@pytest.mark.parametrize(("train", "prefix", "count"), [(True, "train", 30), (False, "t10k", 12)])
def test_loader_agrees_with_the_fixture(
    mnist_root: Path, train: bool, prefix: str, count: int
) -> None:
    dataset = mnist_dataset(mnist_root, train=train)
    raw = mnist_root / "MNIST" / "raw"
    images = _parse_idx(raw / f"{prefix}-images-idx3-ubyte")
    labels = _parse_idx(raw / f"{prefix}-labels-idx1-ubyte")
    assert len(dataset) == count
    assert dataset.data.dtype == torch.uint8 and dataset.data.shape == (count, 28, 28)
    assert torch.equal(dataset.data, torch.from_numpy(images.copy()))
    assert dataset.targets.dtype == torch.int64 and dataset.targets.tolist() == labels.tolist()
    assert set(dataset.targets.tolist()) == set(range(10))
    assert dataset.classes[3] == "3 - three"
    image, label = dataset[2]
    assert image.size == (28, 28) and image.mode == "L" and label == int(labels[2])


def test_fixture_images_depend_on_the_label(mnist_root: Path) -> None:
    dataset = mnist_dataset(mnist_root)
    means = torch.stack(
        [dataset.data[dataset.targets == y].float().mean(0) for y in range(10)]
    )  # (10, 28, 28)
    brightest = means.flatten(1).argmax(1)
    assert len(set(brightest.tolist())) == 10  # each class lights a different place


def test_missing_folder_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetNotFoundError,
        match=r"MNIST not found: no folder .*MNIST/raw\. To get it, run `bayesnas-book data mnist",
    ):
        mnist_dataset(tmp_path)


def _fresh(tmp_path: Path) -> Path:
    return write_mnist_fixture(tmp_path, train_images=10, test_images=10)


def test_missing_file_is_named_and_gzip_noticed(tmp_path: Path) -> None:
    raw = _fresh(tmp_path)
    data = (raw / LABELS).read_bytes()
    (raw / LABELS).unlink()
    (raw / f"{LABELS}.gz").write_bytes(gzip.compress(data))
    with pytest.raises(
        DatasetError,
        match=rf"incomplete: missing {LABELS} \(found {LABELS}.gz: decompress them with gunzip\)",
    ):
        check_mnist_folder(tmp_path)


def test_wrong_magic_number_is_named(tmp_path: Path) -> None:
    raw = _fresh(tmp_path)
    path = raw / IMAGES
    path.write_bytes(struct.pack(">I", 1234) + path.read_bytes()[4:])
    with pytest.raises(
        DatasetError, match=rf"wrong IDX magic number 1234 in .*{IMAGES}; expected 2051"
    ):
        mnist_dataset(tmp_path)


def test_labels_file_in_place_of_images_is_named(tmp_path: Path) -> None:
    raw = _fresh(tmp_path)
    (raw / IMAGES).write_bytes((raw / LABELS).read_bytes())
    with pytest.raises(
        DatasetError,
        match=r"wrong IDX magic number 2049 in .*; expected 2051 .*images file where a labels file",
    ):
        check_mnist_folder(tmp_path)


def test_gzip_file_under_the_raw_name_is_named(tmp_path: Path) -> None:
    raw = _fresh(tmp_path)
    (raw / LABELS).write_bytes(gzip.compress((raw / LABELS).read_bytes()))
    with pytest.raises(
        DatasetError,
        match=r"wrong IDX magic number \d+ in .*; expected 2049 .*still gzip-compressed",
    ):
        check_mnist_folder(tmp_path)


def test_file_shorter_than_its_header_is_named(tmp_path: Path) -> None:
    raw = _fresh(tmp_path)
    path = raw / IMAGES
    path.write_bytes(path.read_bytes()[:-100])
    expected = 16 + 10 * 28 * 28
    with pytest.raises(
        DatasetError,
        match=rf"{IMAGES} is {expected - 100} bytes but its IDX header \(10, 28, 28\) "
        rf"promises {expected}; the file is truncated",
    ):
        mnist_dataset(tmp_path)


def test_file_cut_inside_the_header_is_named(tmp_path: Path) -> None:
    raw = _fresh(tmp_path)
    (raw / LABELS).write_bytes((raw / LABELS).read_bytes()[:6])
    with pytest.raises(DatasetError, match=r"is 6 bytes, too short for its 1 IDX dimensions"):
        check_mnist_folder(tmp_path)
    (raw / LABELS).write_bytes(b"\x00\x00")
    with pytest.raises(DatasetError, match=r"is 2 bytes, too short for an IDX header"):
        check_mnist_folder(tmp_path)


def test_file_longer_than_its_header_is_named(tmp_path: Path) -> None:
    raw = _fresh(tmp_path)
    path = raw / LABELS
    path.write_bytes(path.read_bytes() + b"\x00\x01\x02")
    with pytest.raises(DatasetError, match=r"3 unexpected bytes follow the data"):
        check_mnist_folder(tmp_path)


def test_label_count_must_match_image_count(tmp_path: Path) -> None:
    raw = _fresh(tmp_path)
    labels = np.zeros(9, dtype=np.uint8)
    (raw / LABELS).write_bytes(struct.pack(">II", 2049, 9) + labels.tobytes())
    with pytest.raises(DatasetError, match=rf"{LABELS} has 9 labels but .*{IMAGES} has 10 images"):
        mnist_dataset(tmp_path)


def test_wrong_image_size_is_named(tmp_path: Path) -> None:
    raw = _fresh(tmp_path)
    images = np.zeros((10, 32, 32), dtype=np.uint8)
    (raw / IMAGES).write_bytes(struct.pack(">IIII", 2051, 10, 32, 32) + images.tobytes())
    with pytest.raises(DatasetError, match=r"holds images of 32x32 pixels; MNIST's are 28x28"):
        check_mnist_folder(tmp_path)


def test_label_out_of_range_is_named(tmp_path: Path) -> None:
    raw = _fresh(tmp_path)
    labels = np.full(10, 11, dtype=np.uint8)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 10) + labels.tobytes())
    with pytest.raises(
        DatasetError, match=r"t10k-labels-idx1-ubyte: labels must be in 0..9, found 11"
    ):
        check_mnist_folder(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_images": 0}, r"`train_images` must be a positive integer, got 0"),
        ({"test_images": True}, r"`test_images` must be a positive integer, got True"),
        ({"seed": -3}, r"`seed` must be a non-negative integer, got -3"),
    ],
)
def test_fixture_writer_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_mnist_fixture(tmp_path, **kwargs)
