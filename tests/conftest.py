"""Shared test settings: a non-interactive matplotlib and no dataset outside tmp folders."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's real dataset folder."""
    monkeypatch.setenv("BAYESNAS_DATA", str(tmp_path_factory.mktemp("datasets")))
    monkeypatch.delenv("BAYESNAS_PROFILE", raising=False)
