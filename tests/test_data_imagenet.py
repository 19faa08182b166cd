"""ImageNet from a local ImageFolder tree: real JPEG fixtures and each layout mistake named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from bayesnas_book.data import (
    DatasetError,
    DatasetNotFoundError,
    check_imagenet_folder,
    imagenet_folder,
    write_imagefolder_fixture,
)

WNIDS = ("n01440764", "n01443537", "n01484850")


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("imagenet")
    write_imagefolder_fixture(root, classes=WNIDS, images_per_class=2, size=24, seed=0)
    return root


def test_fixture_writes_real_jpegs(imagenet_root: Path) -> None:
    files = sorted((imagenet_root / "train" / WNIDS[0]).iterdir())
    assert len(files) == 2 and all(f.suffix == ".JPEG" for f in files)
    assert files[0].read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG start-of-image marker
    val = sorted(p.name for p in (imagenet_root / "val" / WNIDS[2]).iterdir())
    assert all(name.startswith("ILSVRC2012_val_") for name in val)


@pytest.mark.parametrize("split", ["train", "val"])
def test_loader_agrees_with_the_fixture(imagenet_root: Path, split: str) -> None:
    dataset = imagenet_folder(imagenet_root, split=split)
    assert dataset.classes == list(WNIDS)
    assert len(dataset) == 6
    assert [label for _, label in dataset.samples] == [0, 0, 1, 1, 2, 2]
    image, label = dataset[3]
    assert image.size == (24, 24) and image.mode == "RGB" and label == 1


def test_fixture_colours_follow_the_class(imagenet_root: Path) -> None:
    from torchvision.transforms.functional import pil_to_tensor

    dataset = imagenet_folder(imagenet_root, split="val", transform=pil_to_tensor)
    means = torch.stack([dataset[i][0].float().mean((1, 2)) for i in range(len(dataset))])  # (6, 3)
    # two images of a class are closer to each other than to any other class
    for i in range(0, 6, 2):
        same = (means[i] - means[i + 1]).norm()
        others = [(means[i] - means[j]).norm() for j in range(6) if j // 2 != i // 2]
        assert same < min(others)


def test_default_root_is_under_the_data_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAYESNAS_DATA", str(tmp_path))
    write_imagefolder_fixture(tmp_path / "imagenet", classes=2, images_per_class=1, size=8)
    layout = check_imagenet_folder()
    assert layout.root == tmp_path / "imagenet" and layout.classes == ("n00000000", "n00000001")


def test_missing_root_explains_the_layout(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetNotFoundError,
        match=r"ImageNet not found: no folder .*cannot be downloaded automatically",
    ) as info:
        imagenet_folder(tmp_path / "nowhere")
    assert "/train/<wnid>/*.JPEG" in str(info.value)


def _copy(imagenet_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(imagenet_root, tmp_path / "imagenet"))


def test_missing_split_is_named(imagenet_root: Path, tmp_path: Path) -> None:
    root = _copy(imagenet_root, tmp_path)
    shutil.rmtree(root / "val")
    assert len(imagenet_folder(root, split="train")) == 6  # the other split is not needed
    with pytest.raises(
        DatasetError,
        match=r"missing ImageNet split folder .*imagenet/val\. ImageNet cannot be downloaded",
    ):
        imagenet_folder(root, split="val")


def test_flat_validation_folder_is_explained(imagenet_root: Path, tmp_path: Path) -> None:
    root = _copy(imagenet_root, tmp_path)
    for image in list((root / "val").rglob("*.JPEG")):
        image.rename(root / "val" / image.name)
    for folder in (root / "val").iterdir():
        if folder.is_dir():
            folder.rmdir()
    with pytest.raises(
        DatasetError,
        match=r"val has no class folders; .*holds 6 images directly: "
        r"sort them into one folder per class",
    ):
        imagenet_folder(root, split="val")


def test_empty_class_folder_is_named(imagenet_root: Path, tmp_path: Path) -> None:
    root = _copy(imagenet_root, tmp_path)
    for image in (root / "train" / WNIDS[1]).iterdir():
        image.unlink()
    (root / "train" / WNIDS[1] / "notes.txt").write_text("not an image")
    with pytest.raises(
        DatasetError,
        match=rf"class folder .*train/{WNIDS[1]} has no images \(extensions .*\); "
        r"fill it or remove it",
    ):
        imagenet_folder(root, split="train")


def test_differing_class_folders_are_named(imagenet_root: Path, tmp_path: Path) -> None:
    root = _copy(imagenet_root, tmp_path)
    (root / "val" / WNIDS[2]).rename(root / "val" / "n09999999")
    with pytest.raises(
        DatasetError,
        match=rf"class folders of .*train and .*val differ.*"
        rf"only in train: {WNIDS[2]}; only in val: n09999999",
    ):
        imagenet_folder(root, split="train")


def test_bad_split_argument() -> None:
    with pytest.raises(ValueError, match=r"`split` must be one of train, val, got 'test'"):
        imagenet_folder(split="test")
    with pytest.raises(ValueError, match=r"`split` must be one of train, val, got 'valid'"):
        check_imagenet_folder(splits=("valid",))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": 0}, r"`classes` must be a positive integer, got 0"),
        (
            {"classes": ["a", "a"]},
            r"`classes` must be a positive int or unique non-empty names, got \['a', 'a'\]",
        ),
        ({"images_per_class": -1}, r"`images_per_class` must be a positive integer, got -1"),
        ({"size": 0}, r"`size` must be a positive integer, got 0"),
        (
            {"splits": "train"},
            r"`splits` must be a non-empty sequence of folder names, got 'train'",
        ),
        ({"seed": -1}, r"`seed` must be a non-negative integer, got -1"),
    ],
)
def test_fixture_writer_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_imagefolder_fixture(tmp_path, **kwargs)
