"""What ``bayesnas-book data NAME`` reports about a dataset it checked or prepared."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DatasetSummary"]

_SHOWN_CLASS_NAMES = 10  # describe() lists at most this many class names


@dataclass(frozen=True)
class DatasetSummary:
    """A checked dataset, in a few numbers.

    Attributes:
        name: the registry name (``"cifar10"``).
        root: the folder it was read from, or ``None`` for data shipped inside a package.
        splits: images per split, e.g. ``{"train": 50000, "test": 10000}``.
        image_shape: ``(C, H, W)`` of one image, or ``None`` where sizes vary (ImageNet JPEGs).
        num_classes: number of classes.
        class_names: the class names in label order (may be empty).
        source: where the data came from ("shipped with scikit-learn", "checked on disk", ...).
    """

    name: str
    root: Path | None
    splits: Mapping[str, int]
    image_shape: tuple[int, ...] | None
    num_classes: int
    class_names: tuple[str, ...] = ()
    source: str = ""

    @property
    def total(self) -> int:
        """Images over all splits."""
        return sum(self.splits.values())

    def describe(self) -> str:
        """A few human-readable lines for the CLI and the chapters.

        Returns:
            The summary, one fact per line, no trailing newline.
        """
        shape = (
            "of varying size"
            if self.image_shape is None
            else "of shape (" + ", ".join(str(s) for s in self.image_shape) + ")"
        )
        lines = [f"{self.name}: {self.total} images {shape}, {self.num_classes} classes"]
        lines.append(f"  root: {self.root if self.root is not None else '(shipped, no download)'}")
        if self.source:
            lines.append(f"  source: {self.source}")
        lines.append(
            "  splits: " + ", ".join(f"{split} {size}" for split, size in self.splits.items())
        )
        if self.class_names:
            names = list(self.class_names[:_SHOWN_CLASS_NAMES])
            more = len(self.class_names) - len(names)
            lines.append(
                "  classes: " + ", ".join(names) + (f", ... ({more} more)" if more else "")
            )
        return "\n".join(lines)
