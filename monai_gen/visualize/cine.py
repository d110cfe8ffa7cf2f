"""A cine as the field looks at it: an animated GIF loop, and its contraction curve beside real ones.

Frames follow :mod:`monai_gen.visualize.images`' orientation convention: element ``[r, c]`` of a frame is the
pixel at row ``r``, column ``c`` (reorient beforehand; nothing is transposed here).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from monai_gen.utils.atomic import atomic_output_path
from monai_gen.visualize.figure import new_figure, save_figure
from monai_gen.visualize.images import intensity_window

__all__ = ["save_cine_gif", "plot_contraction_curves"]


def save_cine_gif(
    frames: np.ndarray,
    path: str | os.PathLike,
    *,
    frame_time_ms: float,
    window: tuple[float, float] | None = None,
) -> Path:
    """Write ``frames`` ``(T, H, W)`` as a looping grayscale GIF, atomically.

    Args:
        frames: the cine, one 2D frame per time point.
        path: destination ``.gif``.
        frame_time_ms: display time of each frame. GIF stores hundredths of a second, so each frame's time is a
            multiple of 10 ms, chosen so the loop lasts ``T * frame_time_ms`` to the nearest 10 ms (a 1000 ms cycle
            of 6 frames: 170, 160, 170, 170, 160, 170 ms), whichever identical frames a GIF encoder merges.
        window: ``(low, high)`` intensities shown black and white; None: the 0.5 / 99.5 percentiles of all frames.

    Raises:
        ValueError: not ``(T, H, W)`` with ``T >= 2``, non-finite values, or a frame time that is not positive.
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"save_cine_gif: expected frames (T, H, W) with T >= 2, got shape {frames.shape}.")
    if not frame_time_ms > 0:
        raise ValueError(f"save_cine_gif: frame_time_ms must be positive, got {frame_time_ms}.")
    (low, high), = intensity_window(frames.reshape(1, -1, frames.shape[-1]), mode=window or "shared")
    grey = (np.clip((frames - low) / (high - low), 0.0, 1.0) * 255).round().astype(np.uint8)
    images = [Image.fromarray(frame, mode="L") for frame in grey]
    ends = np.round(np.arange(len(images) + 1) * frame_time_ms / 10).astype(int) * 10  # each frame's end, in 10 ms
    durations = [max(10, int(d)) for d in np.diff(ends)]
    path = Path(path)
    with atomic_output_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
    return path


def plot_contraction_curves(
    phases: Sequence[float],
    synthetic: np.ndarray,
    *,
    real: Mapping[str, tuple[Sequence[float], np.ndarray]] | None = None,
    ylabel: str = "bright blood-pool area (pixels)",
    title: str = "",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Area per frame over the cardiac cycle: the synthetic cine's curve, real cines' curves beside it.

    Args:
        phases: the synthetic frames' phases (fraction of the cycle, ``0 .. 1``).
        synthetic: ``(T,)`` areas of the synthetic frames, e.g. :func:`monai_gen.metrics.cardiac.bright_area_curve`.
        real: label -> ``(phases, areas)`` of real cines (e.g. the test patients of the requested group).
        path: where to write the PNG (atomically), or None.
    """
    figure = new_figure(6.0, 3.2)
    axes = figure.add_subplot(1, 1, 1)
    for label, (real_phases, areas) in (real or {}).items():
        axes.plot(real_phases, areas, color="0.6", linewidth=1.0, label=f"real: {label}")
    axes.plot(phases, synthetic, color="tab:red", linewidth=2.0, marker="o", markersize=3, label="synthetic")
    axes.set_xlabel("cardiac phase (fraction of the cycle; 0 = end-diastole)")
    axes.set_ylabel(ylabel)
    axes.set_xlim(0.0, 1.0)
    if title:
        axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    return save_figure(figure, path)
