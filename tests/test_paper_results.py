"""The paper's reported numbers ship as data (and agree with the project's notes on the paper, when given)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bayesnas_book.paper import paper_cifar10, paper_imagenet, paper_results, paper_search_cost

# The project's notes on the paper live outside the repository: set the variable to their path
# to check every shipped number against them.
PAPER_NOTES = Path(os.environ.get("BAYESNAS_PAPER_NOTES", "/nonexistent"))


def test_rows_and_lookup() -> None:
    assert len(paper_cifar10()) == 5 and paper_results()["source"].startswith("Zhou")
    row = paper_cifar10(0.007)
    assert (row["test_error"], row["test_error_std"], row["params_m"]) == (2.90, 0.05, 3.10)
    assert paper_imagenet()["top1_error"] == 26.5 and paper_search_cost()["gpu_days"] == 0.2
    with pytest.raises(KeyError, match=r"no CIFAR-10 row for lambda_o = 0.02; it reports \[0.01, 0.007, 0.005\]"):
        paper_cifar10(0.02)


@pytest.mark.skipif(not PAPER_NOTES.is_file(), reason="BAYESNAS_PAPER_NOTES names no file")
def test_every_number_is_in_the_paper_notes() -> None:
    text = PAPER_NOTES.read_text()
    for row in paper_cifar10()[:3]:
        assert f"| BayesNAS lambda_o = {row['lambda_o']} | {row['test_error']:.2f} +- {row['test_error_std']:.2f} | " \
               f"{row['params_m']:.2f} +- {row['params_m_std']:.2f} | {row['search_gpu_days']} |" in text
    imagenet = paper_imagenet()
    assert re.search(rf"{imagenet['top1_error']} top-1 / {imagenet['top5_error']} top-5 error, {imagenet['params_m']}M params", text)
