"""Shared test settings: a non-interactive matplotlib and no dataset outside tmp folders."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists: a notebook kernel (our child) is gone once shut down and reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's real dataset folder."""
    monkeypatch.setenv("BAYESNAS_DATA", str(tmp_path_factory.mktemp("datasets")))
    monkeypatch.delenv("BAYESNAS_PROFILE", raising=False)


_SESSION_DTYPE = torch.get_default_dtype()


@pytest.fixture(autouse=True)
def _default_dtype_restored():
    """A quick-profile run sets torch's default dtype to float64 (the config's ``dtype``, via
    seed_everything); every test ends with the session's default again, so none leaks it."""
    yield
    torch.set_default_dtype(_SESSION_DTYPE)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests use tiny tensors: one thread is as fast, and results do not depend on the core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def compile_modes(monkeypatch: pytest.MonkeyPatch) -> list:
    """Replace ``torch.compile`` by a recorder: the list of modes it was called with; nothing compiles."""
    modes: list = []

    def record(module, mode=None):
        modes.append(mode)
        return module

    monkeypatch.setattr(torch, "compile", record)
    return modes
