"""The tree bench: checkpointing stores a fraction of the plain supernet's activations."""

from __future__ import annotations

import torch

from bayesnas_book.bench_tree import format_tree_bench, stored_bytes
from bayesnas_book.models.pyramidnet import PyramidNetSpec
from bayesnas_book.space.tree_supernet import TreeSupernet


def test_checkpointing_stores_far_less_for_the_backward() -> None:
    torch.manual_seed(0)
    spec = PyramidNetSpec(depth=11, alpha=4, start_channels=4, in_channels=1, num_classes=10)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    plain = stored_bytes(TreeSupernet(spec, checkpoint=False), x, y)
    kept = stored_bytes(TreeSupernet(spec, checkpoint=True), x, y)
    assert 0 < kept < plain / 5


def test_format_names_both_variants_and_the_ratios() -> None:
    rows = [
        {"checkpoint": c, "parameters": 10, "stored_bytes": b, "peak_bytes": b, "seconds": 1.0}
        for c, b in ((False, 4 * 2**20), (True, 2**20))
    ]
    result = {
        "device": "cpu",
        "batch_size": 64,
        "dataset": "digits",
        "tree": {"depth": 11, "alpha": 4},
        "rows": rows,
    }
    text = format_tree_bench(result)
    assert "plain" in text and "checkpointed" in text and "stored 0.250, peak 0.250" in text
