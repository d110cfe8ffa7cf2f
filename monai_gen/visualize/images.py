"""Image grids: a batch of 2D images, or one slice of each 3D volume, in grayscale with a chosen window.

Orientation convention: the displayed pixel at row ``r``, column ``c`` (counted from the top left) is
element ``[r, c]`` of the 2D slice, i.e. the first remaining spatial axis runs down the page and the second
runs left to right (``imshow(..., origin="upper")``, never transposed). Reorient the data beforehand
(e.g. MONAI ``Orientation``) to choose a radiological view; this module never does it silently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from monai.utils import convert_to_numpy

from monai_gen.visualize.figure import new_figure, save_figure

__all__ = ["WINDOW_MODES", "image_slices", "intensity_window", "plot_image_grid", "show_image"]

WINDOW_MODES = ("shared", "per_image")
"""``shared``: one intensity window for the whole grid (compare brightness); ``per_image``: one each."""


def image_slices(
    images: np.ndarray | torch.Tensor,
    *,
    channel: int = 0,
    slice_axis: int = -1,
    slice_index: int | None = None,
) -> np.ndarray:
    """The 2D images to show from a ``(B, C, H, W)`` or ``(B, C, H, W, D)`` batch, as ``(B, H', W')`` floats.

    Args:
        images: the batch (numpy, torch or MetaTensor).
        channel: which channel to show (grayscale).
        slice_axis: for volumes, the spatial axis sliced through (0, 1, 2, or negative; default the last, ``D``).
        slice_index: the slice taken along ``slice_axis``; the middle one (``size // 2``) when None.

    Returns:
        ``(B, H', W')`` float64: the two spatial axes left, in their array order (no transpose).

    Raises:
        ValueError: an empty batch, a rank other than 4 or 5, or a channel / slice out of range.
    """
    array = convert_to_numpy(images, dtype=np.float64)
    if array.ndim not in (4, 5):
        raise ValueError(f"images must be (B, C, H, W) or (B, C, H, W, D); got shape {tuple(array.shape)}.")
    if array.shape[0] == 0:
        raise ValueError(f"images is an empty batch (shape {tuple(array.shape)}); nothing to plot.")
    if not -array.shape[1] <= channel < array.shape[1]:
        raise ValueError(f"channel={channel} is out of range for {array.shape[1]} channels.")
    array = array[:, channel]
    if array.ndim == 4:
        if not -3 <= slice_axis < 3:
            raise ValueError(f"slice_axis must be a spatial axis in -3..2, got {slice_axis}.")
        size = array.shape[1:][slice_axis]
        index = size // 2 if slice_index is None else slice_index
        if not 0 <= index < size:
            raise ValueError(f"slice_index={slice_index} is out of range for {size} slices along axis {slice_axis}.")
        array = np.take(array, index, axis=1 + slice_axis % 3)
    return array


def intensity_window(
    slices: np.ndarray, *, mode: str | tuple[float, float] = "shared", percentiles: tuple[float, float] = (0.5, 99.5)
) -> np.ndarray:
    """Display limits ``(B, 2)`` (low, high) for ``(B, H, W)`` slices.

    Args:
        slices: the images.
        mode: ``"shared"`` (percentiles over the whole batch), ``"per_image"``, or explicit ``(low, high)``.
        percentiles: the lower and upper percentile of the intensities mapped to black and white.

    Raises:
        ValueError: unknown mode, an empty or inverted window, or non-finite intensities.
    """
    if not np.isfinite(slices).all():
        raise ValueError("images contain NaN or infinite values; cannot choose an intensity window.")
    if isinstance(mode, str):
        if mode not in WINDOW_MODES:
            raise ValueError(f"window must be one of {WINDOW_MODES} or a (low, high) pair, got {mode!r}.")
        axes = None if mode == "shared" else tuple(range(1, slices.ndim))
        low, high = (np.broadcast_to(np.percentile(slices, p, axis=axes), slices.shape[:1]) for p in percentiles)
    else:
        low, high = (np.full(slices.shape[0], float(v)) for v in mode)
    if np.any(high < low):
        raise ValueError(f"the intensity window must have low <= high, got {mode} / percentiles {percentiles}.")
    return np.stack([low, np.maximum(high, low + 1e-12)], axis=1)  # a constant image still gets a valid window


def plot_image_grid(
    images: np.ndarray | torch.Tensor,
    *,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    channel: int = 0,
    slice_axis: int = -1,
    slice_index: int | None = None,
    window: str | tuple[float, float] = "shared",
    percentiles: tuple[float, float] = (0.5, 99.5),
    panel_inches: float = 2.0,
    dpi: float = 100,
    path: str | Path | None = None,
) -> Figure:
    """Show a batch of images as a grayscale grid, image ``i`` at row ``i // ncols``, column ``i % ncols``.

    Args:
        images: ``(B, C, H, W)`` or ``(B, C, H, W, D)``; volumes show one slice each (see :func:`image_slices`).
        titles: one title per image.
        ncols: columns of the grid; ``min(B, 4)`` when None.
        channel, slice_axis, slice_index: which 2D image to show, as in :func:`image_slices`.
        window: intensity window, as in :func:`intensity_window`.
        percentiles: percentiles of the window for the string modes.
        panel_inches: size of each square panel in inches.
        dpi: dots per inch of the figure and of the PNG.
        path: also write the figure as a PNG here (atomically).

    Returns:
        The figure; ``figure.axes[i]`` holds image ``i`` (its ``AxesImage.get_array()`` is the slice).

    Raises:
        ValueError: an empty batch, titles of the wrong length, ``ncols < 1`` or a bad window.
    """
    slices = image_slices(images, channel=channel, slice_axis=slice_axis, slice_index=slice_index)
    count = slices.shape[0]
    if titles is not None and len(titles) != count:
        raise ValueError(f"titles has {len(titles)} entries for {count} images.")
    ncols = min(count, 4) if ncols is None else ncols
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}.")
    nrows = math.ceil(count / ncols)
    limits = intensity_window(slices, mode=window, percentiles=percentiles)
    lines = max(str(t).count("\n") + 1 for t in titles) if titles is not None else 0
    title_inches = 0.14 * lines + 0.04 if lines else 0.0  # room above each row for its (multi-line) titles
    height = nrows * (panel_inches + title_inches)
    figure = new_figure(ncols * panel_inches, height, dpi=dpi)
    for i, (image, (low, high)) in enumerate(zip(slices, limits, strict=True)):
        ax = figure.add_subplot(nrows, ncols, i + 1)
        show_image(ax, image, low, high)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    top, hspace = (1 - title_inches / height, title_inches / panel_inches) if lines else (0.99, 0.1)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top, wspace=0.03, hspace=hspace)
    return save_figure(figure, path, dpi=dpi)


def show_image(ax: Axes, image: np.ndarray, low: float, high: float) -> None:
    """Draw one 2D slice in grayscale on ``ax`` with the module's orientation convention, without axes."""
    ax.imshow(image, cmap="gray", vmin=low, vmax=high, origin="upper", interpolation="nearest")
    ax.set_axis_off()
