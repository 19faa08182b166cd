"""Grids of sample images: a figure for the chapters, a PNG for ``bayesnas-book data --grid``."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

from bayesnas_book.atomic import atomic_writer
from bayesnas_book.data.prepare import load_samples

__all__ = ["image_grid_figure", "save_image_grid"]

_CELL_INCHES = 1.1  # width and height given to one image
_TITLE_CHARS = 12  # longer class names are cut


def _to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``0..255`` or floats ``[0, 1]`` -> float ``[0, 1]``."""
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if images.is_floating_point():
        return images.float().clamp(0.0, 1.0)
    raise ValueError(f"`images` must be uint8 or floating point, got dtype {images.dtype}")


def image_grid_figure(
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    class_names: Sequence[str] | None = None,
    columns: int = 8,
) -> Figure:
    """A grid of images, each titled with its label or class name.

    The figure is a plain :class:`matplotlib.figure.Figure` (not registered with pyplot), so it
    shows once when it is the last value of a notebook cell and leaks nothing otherwise.

    Args:
        images: ``(N, C, H, W)`` with ``C`` 1 (grey) or 3 (RGB), uint8 ``0..255`` or float
            ``[0, 1]`` (clamped).
        labels: ``(N,)`` integer labels.
        class_names: names indexed by label; ``None`` titles images with the label number.
        columns: images per row, ``>= 1``.

    Returns:
        The figure (``columns`` x ``ceil(N / columns)`` cells).

    Raises:
        ValueError: if the shapes, dtype, ``columns`` or a label do not fit.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(
            f"`images` must be a tensor of shape (N, C, H, W) with C 1 or 3, got {shape}"
        )
    if len(images) == 0:
        raise ValueError("`images` must hold at least one image, got N=0")
    labels = torch.as_tensor(labels).flatten().tolist()
    if len(labels) != len(images):
        raise ValueError(
            f"`labels` must have one entry per image ({len(images)}), got {len(labels)}"
        )
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"`columns` must be a positive integer, got {columns!r}")
    if class_names is not None:
        bad = [label for label in labels if not 0 <= label < len(class_names)]
        if bad:
            raise ValueError(
                f"label {bad[0]} has no entry in `class_names` ({len(class_names)} names)"
            )
    pixels = (
        _to_unit_range(images).permute(0, 2, 3, 1).cpu().numpy()
    )  # (N, C, H, W) -> (N, H, W, C)
    columns = min(columns, len(pixels))
    rows = math.ceil(len(pixels) / columns)
    figure = Figure(
        figsize=(columns * _CELL_INCHES, rows * (_CELL_INCHES + 0.2)), layout="constrained"
    )
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.set_axis_off()
        if index >= len(pixels):
            continue
        image = pixels[index]
        if image.shape[-1] == 1:
            axis.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            axis.imshow(image, interpolation="nearest")
        label = labels[index]
        title = str(class_names[label]) if class_names is not None else str(label)
        axis.set_title(title[:_TITLE_CHARS], fontsize=8)
    return figure


def save_image_grid(
    name: str,
    path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    count: int = 32,
    columns: int = 8,
) -> Path:
    """Save a PNG grid of ``count`` sample images of a dataset, written atomically.

    Args:
        name: a registered dataset name (``"digits"``, ``"cifar10"``, ...).
        path: the PNG file to write (``.png``); missing folders are created.
        root: the dataset folder, as in :func:`~bayesnas_book.data.prepare.prepare_dataset`.
        count: how many images, ``>= 1``.
        columns: images per row.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: if ``path`` does not end in ``.png`` or ``count`` is not positive.
        DatasetError: if the dataset is unknown, missing or broken.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"`path` must end in .png, got {str(path)!r}")
    images, labels, class_names = load_samples(name, root, count)
    figure = image_grid_figure(images, labels, class_names, columns=columns)
    with atomic_writer(path) as handle:
        figure.savefig(handle, format="png", dpi=100)
    return path
