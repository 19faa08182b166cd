"""Downloads are real up to the network call, staged, and never leave partial files."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torchvision.datasets.utils as tv_utils

from bayesnas_book.cli import main
from bayesnas_book.data import (
    DatasetError,
    DatasetNotFoundError,
    prepare_dataset,
    write_cifar10_fixture,
    write_mnist_fixture,
)
from bayesnas_book.data import cifar as cifar_module
from bayesnas_book.data.download import is_network_error


def _offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every URL unreachable, as on a machine without network; record what was asked."""
    asked: list[str] = []

    def unreachable(request, *args, **kwargs):
        asked.append(request.full_url if hasattr(request, "full_url") else str(request))
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    return asked


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_offline_cifar10_download_is_explained_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _offline(monkeypatch)
    root = tmp_path / "datasets"
    with pytest.raises(
        DatasetError, match=r"cannot download CIFAR-10: the network is unreachable"
    ) as info:
        prepare_dataset("cifar10", root=root)
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message  # what to fetch by hand
    assert (
        "place the `cifar-10-batches-py/` folder (data_batch_1" in message and str(root) in message
    )
    assert asked and asked[0].startswith("https://www.cs.toronto.edu/")  # torchvision really tried
    assert _tree(root) == []  # no staging folder, no partial archive


def test_offline_mnist_download_tries_every_mirror_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _offline(monkeypatch)
    with pytest.raises(
        DatasetError, match=r"cannot download MNIST: the network is unreachable"
    ) as info:
        prepare_dataset("mnist", root=tmp_path)
    assert "place train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte" in str(
        info.value
    )
    assert f"{tmp_path}/MNIST/raw" in str(info.value)
    assert len({url.split("/")[2] for url in asked}) == 2  # both mirrors were tried
    assert _tree(tmp_path) == []


def test_offline_download_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _offline(monkeypatch)
    assert main(["data", "cifar10", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bayesnas-book data: error: cannot download CIFAR-10: the network is unreachable" in err
    assert "Traceback" not in err
    assert _tree(tmp_path) == []


def test_http_error_is_reported_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def not_found(request, *args, **kwargs):
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", not_found)
    with pytest.raises(
        DatasetError, match=r"cannot download CIFAR-10: the server answered HTTP 404 \(Not Found\)"
    ):
        prepare_dataset("cifar10", root=tmp_path)
    assert _tree(tmp_path) == []


def _cifar_archive(tmp_path: Path) -> tuple[bytes, dict[str, str]]:
    """A .tar.gz laid out like the official one, and the md5 of each file in it."""
    source = tmp_path / "source"
    folder = write_cifar10_fixture(source, images_per_batch=3, test_images=2, seed=1)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(folder, arcname="cifar-10-batches-py")
    sums = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    return buffer.getvalue(), sums


def test_successful_cifar10_download_is_checked_then_moved_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, sums = _cifar_archive(tmp_path)
    for name, md5 in sums.items():  # the fixture stands in for the official files
        monkeypatch.setitem(cifar_module._MD5, name, md5)
    root = tmp_path / "datasets"
    seen: list[Path] = []

    def fake_download_url(url, download_root, filename=None, md5=None, **kwargs):
        download_root = Path(download_root)
        seen.append(download_root)
        assert (
            url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
            and filename == "cifar-10-python.tar.gz"
        )
        assert not (root / "cifar-10-batches-py").exists()  # nothing visible while downloading
        (download_root / filename).write_bytes(archive)

    monkeypatch.setattr(tv_utils, "download_url", fake_download_url)
    summary = prepare_dataset("cifar10", root=root)
    assert seen[0].parent == root and seen[0].name.startswith(".cifar-10-batches-py.download-")
    assert summary.splits == {"train": 15, "test": 2} and summary.num_classes == 10
    assert summary.source.startswith("downloaded from https://www.cs.toronto.edu/")
    assert _tree(root) == ["cifar-10-batches-py"] + [
        f"cifar-10-batches-py/{name}" for name in sorted(sums)
    ]  # the archive and the staging folder are gone
    # a second run finds the data and downloads nothing
    monkeypatch.setattr(tv_utils, "download_url", lambda *a, **k: pytest.fail("downloaded twice"))
    assert prepare_dataset("cifar10", root=root, download=True).source == "checked on disk"


def test_download_with_wrong_checksums_is_not_moved_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, _ = _cifar_archive(tmp_path)
    monkeypatch.setattr(
        tv_utils,
        "download_url",
        lambda url, download_root, filename=None, md5=None, **kwargs: (
            Path(download_root) / filename
        ).write_bytes(archive),
    )
    root = tmp_path / "datasets"
    with pytest.raises(
        DatasetError,
        match=r"data_batch_1 has md5 [0-9a-f]{32}, expected c99cafc152244af753f735de768cd75f",
    ):
        prepare_dataset("cifar10", root=root)
    assert _tree(root) == []


def test_interrupted_download_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(url, download_root, filename=None, md5=None, **kwargs):
        (Path(download_root) / filename).write_bytes(b"\x1f\x8b half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(tv_utils, "download_url", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("cifar10", root=tmp_path)
    assert _tree(tmp_path) == []


def test_corrupt_download_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def corrupt(url, download_root, filename=None, md5=None, **kwargs):
        raise RuntimeError("File not found or corrupted.")

    monkeypatch.setattr(tv_utils, "download_url", corrupt)
    with pytest.raises(
        DatasetError,
        match=r"downloading CIFAR-10 from https://\S+ failed "
        r"\(RuntimeError: File not found or corrupted.\)",
    ):
        prepare_dataset("cifar10", root=tmp_path)
    assert _tree(tmp_path) == []


def test_successful_mnist_download_is_decompressed_and_moved_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = write_mnist_fixture(tmp_path / "source", train_images=20, test_images=10)
    asked: list[str] = []

    def fake_download_url(url, download_root, filename=None, md5=None, **kwargs):
        asked.append(url)
        if "ossci" in url:  # the first mirror fails: the next one is tried
            raise urllib.error.URLError("timed out")
        data = (raw / filename.removesuffix(".gz")).read_bytes()
        (Path(download_root) / filename).write_bytes(gzip.compress(data))

    monkeypatch.setattr(tv_utils, "download_url", fake_download_url)
    root = tmp_path / "datasets"
    summary = prepare_dataset("mnist", root=root)
    assert summary.splits == {"train": 20, "test": 10} and summary.image_shape == (1, 28, 28)
    assert len(asked) == 8  # four files, two mirrors each
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert (root / "MNIST" / "raw" / name).read_bytes() == (raw / name).read_bytes()
    assert [p.name for p in root.iterdir()] == ["MNIST"]


def test_broken_existing_folder_is_reported_not_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(monkeypatch)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"mine")
    with pytest.raises(
        DatasetError, match=r"incomplete: missing data_batch_2, .*; delete .* and run"
    ):
        prepare_dataset("cifar10", root=tmp_path, download=True)
    assert (folder / "data_batch_1").read_bytes() == b"mine"


def test_no_download_reports_the_missing_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _offline(monkeypatch)
    with pytest.raises(DatasetNotFoundError, match=r"MNIST not found"):
        prepare_dataset("mnist", root=tmp_path, download=False)
    assert asked == []


def test_is_network_error() -> None:
    assert is_network_error(urllib.error.URLError("x")) and is_network_error(TimeoutError())
    assert is_network_error(ConnectionResetError()) and not is_network_error(PermissionError())
