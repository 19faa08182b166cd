"""CIFAR-10: fixture files in the official format, read by torchvision's own parser."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10

from bayesnas_book.data import (
    DatasetError,
    DatasetNotFoundError,
    check_cifar10_folder,
    cifar10_dataset,
    write_cifar10_fixture,
)
from bayesnas_book.data._py2pickle import dumps_py2
from bayesnas_book.data.cifar import CIFAR10_CLASSES


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10_fixture(root, images_per_batch=12, test_images=7, seed=0)
    return root


def _load(path: Path, encoding: str) -> dict:
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding=encoding)


def test_fixture_files_have_the_official_structure(cifar_root: Path) -> None:
    folder = cifar_root / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    )
    raw = (folder / "data_batch_1").read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2, as the original archive
    # the dataset page's `unpickle` (encoding="bytes") sees byte-string keys ...
    batch = _load(folder / "data_batch_1", "bytes")
    assert list(batch) == [b"batch_label", b"labels", b"data", b"filenames"]
    assert batch[b"batch_label"] == b"training batch 1 of 5"
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (12, 3072)
    assert len(batch[b"filenames"]) == 12 and all(isinstance(f, bytes) for f in batch[b"filenames"])
    # ... and torchvision's (encoding="latin1") sees str keys
    assert list(_load(folder / "test_batch", "latin1")) == [
        "batch_label",
        "labels",
        "data",
        "filenames",
    ]
    meta = _load(folder / "batches.meta", "bytes")
    assert meta[b"label_names"] == [name.encode() for name in CIFAR10_CLASSES]
    assert meta[b"num_vis"] == 3072 and meta[b"num_cases_per_batch"] == 12


def test_py2_pickle_round_trips_arrays_and_containers() -> None:
    array = np.arange(2 * 300, dtype=np.uint8).reshape(2, 300) % 251
    obj = {
        b"a": array,
        "b": [0, 255, 256, -1, 2**31 - 1],
        b"c": [b"x" * 300, "y"],
        b"d": [],
        b"e": {},
    }
    for encoding in ("latin1", "bytes"):
        loaded = pickle.loads(dumps_py2(obj), encoding=encoding)
        key = (lambda k: k) if encoding == "bytes" else (lambda k: k.decode())
        np.testing.assert_array_equal(loaded[key(b"a")], array)
        assert loaded[key(b"b")] == [0, 255, 256, -1, 2**31 - 1]
        assert loaded[key(b"d")] == [] and loaded[key(b"e")] == {}
    with pytest.raises(TypeError, match="only uint8 arrays are supported, got dtype float32"):
        dumps_py2(np.zeros(2, dtype=np.float32))
    with pytest.raises(TypeError, match="cannot write a float as a Python 2 pickle"):
        dumps_py2(1.5)
    with pytest.raises(
        TypeError, match="integers beyond 32 bits are not supported, got 4294967296"
    ):
        dumps_py2(2**32)


def test_fixture_is_deterministic(tmp_path: Path) -> None:
    write_cifar10_fixture(tmp_path / "a", images_per_batch=3, test_images=2, seed=5)
    write_cifar10_fixture(tmp_path / "b", images_per_batch=3, test_images=2, seed=5)
    write_cifar10_fixture(tmp_path / "c", images_per_batch=3, test_images=2, seed=6)
    name = "cifar-10-batches-py/data_batch_3"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


@pytest.mark.parametrize("train", [True, False])
def test_loader_agrees_with_the_fixture(cifar_root: Path, train: bool) -> None:
    dataset = cifar10_dataset(cifar_root, train=train)
    files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    batches = [_load(cifar_root / "cifar-10-batches-py" / name, "bytes") for name in files]
    expected_data = (
        np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    )
    expected_labels = [y for b in batches for y in b[b"labels"]]
    assert len(dataset) == (60 if train else 7)
    np.testing.assert_array_equal(dataset.data, expected_data)
    assert dataset.targets == expected_labels
    assert dataset.classes == list(CIFAR10_CLASSES)
    assert dataset.class_to_idx["truck"] == 9
    image, label = dataset[0]
    assert image.size == (32, 32) and image.mode == "RGB" and label == expected_labels[0]


def test_loader_applies_transforms(cifar_root: Path) -> None:
    dataset = cifar10_dataset(
        cifar_root,
        train=False,
        transform=lambda image: torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255,
        target_transform=lambda label: label + 100,
    )
    image, label = dataset[1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label >= 100


def test_default_root_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cifar10_fixture(tmp_path, images_per_batch=2, test_images=2)
    monkeypatch.setenv("BAYESNAS_DATA", str(tmp_path))
    assert len(cifar10_dataset(train=False)) == 2


def test_torchvision_itself_rejects_fixtures_by_md5(cifar_root: Path) -> None:
    # why CheckedCIFAR10 exists: the plain class only accepts the official bytes
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        CIFAR10(str(cifar_root), train=True)


def test_verify_checksums_names_the_file(cifar_root: Path) -> None:
    with pytest.raises(
        DatasetError,
        match=r"data_batch_1 has md5 [0-9a-f]{32}, expected c99cafc152244af753f735de768cd75f",
    ):
        cifar10_dataset(cifar_root, verify_checksums=True)


def test_missing_folder_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetNotFoundError, match=r"CIFAR-10 not found: no folder .*cifar-10-batches-py"
    ) as info:
        cifar10_dataset(tmp_path)
    message = str(info.value)
    assert (
        "bayesnas-book data cifar10 --root" in message
        and "place the extracted `cifar-10-batches-py/`" in message
    )
    assert "data_batch_5, test_batch, batches.meta" in message


def _fresh(tmp_path: Path) -> Path:
    return write_cifar10_fixture(tmp_path, images_per_batch=4, test_images=3)


def test_missing_file_is_named(tmp_path: Path) -> None:
    folder = _fresh(tmp_path)
    (folder / "data_batch_4").unlink()
    (folder / "batches.meta").unlink()
    with pytest.raises(
        DatasetError, match=r"incomplete: missing data_batch_4, batches.meta; delete .* and run"
    ):
        cifar10_dataset(tmp_path)


def test_truncated_pickle_is_named(tmp_path: Path) -> None:
    folder = _fresh(tmp_path)
    path = folder / "data_batch_2"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(
        DatasetError,
        match=r"cannot read .*data_batch_2: it is truncated or not a CIFAR-10 python pickle",
    ):
        cifar10_dataset(tmp_path, train=False)


def _rewrite(path: Path, batch: dict) -> None:
    path.write_bytes(dumps_py2(batch))


def _batch(data: np.ndarray, labels: list) -> dict:
    return {b"batch_label": b"x", b"labels": labels, b"data": data, b"filenames": []}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            {b"batch_label": b"x", b"images": np.zeros((4, 3072), np.uint8)},
            r"data_batch_1 lacks the key\(s\) 'data', 'labels' \(found: 'batch_label', 'images'\)",
        ),
        (
            _batch(np.zeros((4, 1024), np.uint8), [0, 1, 2, 3]),
            r"'data' must be a uint8 array of shape \(N, 3072\), "
            r"got a uint8 array of shape \(4, 1024\)",
        ),
        (
            _batch(np.zeros((4, 3, 32, 32), np.uint8), [0, 1, 2, 3]),
            r"got a uint8 array of shape \(4, 3, 32, 32\)",
        ),
        (
            _batch(np.zeros((4, 3072), np.uint8), [0, 1, 2]),
            r"data_batch_1 has 4 images but 3 labels",
        ),
        (
            _batch(np.zeros((4, 3072), np.uint8), [0, 1, 2, 10]),
            r"labels must be in 0..9, found 10 \(1 bad\)",
        ),
        ([1, 2], r"data_batch_1 holds a list, expected a dict"),
    ],
)
def test_malformed_batch_is_named(tmp_path: Path, content: object, message: str) -> None:
    folder = _fresh(tmp_path)
    _rewrite(folder / "data_batch_1", content)
    with pytest.raises(DatasetError, match=message):
        check_cifar10_folder(tmp_path)


def test_labels_that_are_not_a_list_of_ints_are_named(tmp_path: Path) -> None:
    folder = _fresh(tmp_path)
    path = folder / "test_batch"
    with open(path, "wb") as handle:  # a Python 3 pickle holding labels as floats
        pickle.dump({"data": np.zeros((3, 3072), np.uint8), "labels": [0.0, 1.0, 2.0]}, handle)
    with pytest.raises(
        DatasetError, match=r"test_batch: 'labels' must be a list of ints, got list"
    ):
        check_cifar10_folder(tmp_path)


def test_malformed_meta_is_named(tmp_path: Path) -> None:
    folder = _fresh(tmp_path)
    _rewrite(folder / "batches.meta", {b"label_names": [b"cat", b"dog"]})
    with pytest.raises(
        DatasetError,
        match=r"batches.meta must hold a dict whose 'label_names' is a list of 10 strings",
    ):
        check_cifar10_folder(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images_per_batch": 0}, r"`images_per_batch` must be a positive integer, got 0"),
        ({"test_images": 2.5}, r"`test_images` must be a positive integer, got 2.5"),
        ({"seed": -1}, r"`seed` must be a non-negative integer, got -1"),
    ],
)
def test_fixture_writer_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_cifar10_fixture(tmp_path, **kwargs)
