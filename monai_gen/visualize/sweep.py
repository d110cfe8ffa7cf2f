"""Phenotype-sweep strips: rows are values of one condition, columns are seeds (the same noise per column).

Reading a column top to bottom shows what changing only the condition does to one synthetic subject; reading
a row shows the spread across subjects. Every cell shares one amplitude scale (signals) or one intensity
window (images), so a change between rows is a change in the data, not in the display.

See:
    Friedman et al., "xMADD: A Unified Diffusion Framework for Conditioned Synthesis of Medical Images and
    Waveforms", Fig. 5 (phenotype varied down the rows, random seeds across the columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from monai.data import MetaTensor
from monai.utils import convert_to_numpy

from monai_gen.data.ecg_meta import LEAD_NAMES, STANDARD_LEADS, ecg_sampling_rate
from monai_gen.visualize.figure import new_figure, save_figure
from monai_gen.visualize.images import image_slices, intensity_window, show_image

__all__ = ["plot_image_sweep", "plot_signal_sweep", "plot_sweep", "sweep_row_label"]


def sweep_row_label(name: str, value: float, unit: str = "") -> str:
    """The row label of a sweep, e.g. ``"HR = 75 bpm"``."""
    return f"{name} = {value:g} {unit}".rstrip()


def plot_sweep(samples: np.ndarray | torch.Tensor, values: Sequence[float], **kwargs: Any) -> Figure:
    """Sweep strip of signals ``(R, S, C, T)`` or images ``(R, S, C, H, W[, D])``, chosen by the rank.

    A convenience for callers that handle both kinds (the generation engine); ``kwargs`` go to
    :func:`plot_signal_sweep` (rank 4) or :func:`plot_image_sweep` (rank 5 or 6).
    """
    return (plot_signal_sweep if len(samples.shape) == 4 else plot_image_sweep)(samples, values, **kwargs)


def plot_signal_sweep(
    samples: np.ndarray | torch.Tensor,
    values: Sequence[float],
    *,
    name: str,
    unit: str = "",
    seeds: Sequence[int] | None = None,
    fs: float | None = None,
    lead: str | None = "II",
    lead_names: Sequence[str] | None = None,
    cell_inches: tuple[float, float] = (2.5, 1.4),
    dpi: float = 100,
    path: str | Path | None = None,
) -> Figure:
    """ECG sweep strip: one lead, or all leads superimposed, per cell, on one shared amplitude scale.

    Args:
        samples: ``(R, S, C, T)`` in mV: ``R`` condition values × ``S`` seeds × ``C`` leads × ``T`` samples.
        values: the ``R`` condition values, top row first.
        name: the condition's name (row labels read ``"{name} = {value} {unit}"``).
        unit: the condition's unit, e.g. ``"bpm"``, ``"ms"``.
        seeds: the ``S`` seeds (column titles); ``0 … S-1`` when None.
        fs: sampling rate in Hz (x axis in seconds); a MetaTensor's affine when None, else x is the sample index.
        lead: the lead shown (a name from ``lead_names``); None superimposes every lead (a compact 12-lead view).
        lead_names: channel names; ``meta["lead_names"]``, else the standard 12 leads when ``C == 12``.
        cell_inches: width and height of each cell in inches.
        dpi: dots per inch of the figure and of the PNG.
        path: also write the figure as a PNG here (atomically).

    Returns:
        The figure; ``figure.axes[r * S + s]`` is the cell of value ``r`` and seed ``s``.

    Raises:
        ValueError: wrong rank, values / seeds not matching the shape, unknown lead, NaN samples.
    """
    array = _checked(samples, values, seeds, rank=(4,))
    channels, names = _signal_channels(samples, array.shape[2], lead, lead_names)
    traces = array[:, :, channels]
    rate = fs if fs is not None else (ecg_sampling_rate(samples) if isinstance(samples, MetaTensor) else None)
    time = np.arange(array.shape[-1]) / rate if rate else np.arange(array.shape[-1])
    low, high = traces.min(), traces.max()
    pad = 0.05 * max(high - low, 1e-6)
    figure, cells = _cell_grid(array.shape[0], array.shape[1], cell_inches, dpi)
    colours = [colormaps["tab20"](i % 20) for i in range(len(channels))] if lead is None else ["black"]
    for ax, cell in zip(cells, traces.reshape(-1, *traces.shape[2:]), strict=True):
        for trace, colour in zip(cell, colours, strict=True):
            ax.plot(time, trace, color=colour, linewidth=0.6)
        ax.set_ylim(low - pad, high + pad)
        ax.tick_params(labelsize=6)
    _label_grid(cells, array.shape[1], values, name, unit, seeds)
    cells[-array.shape[1]].set_xlabel("time (s)" if rate else "sample", fontsize=7)
    if lead is None:
        figure.legend(cells[0].get_lines(), names, loc="upper right", fontsize=5, ncol=6, frameon=False)
    figure.suptitle(
        f"{name} sweep · {'all leads' if lead is None else f'lead {lead}'} · mV", fontsize=9, x=0.02, ha="left"
    )
    return save_figure(figure, path, dpi=dpi)


def plot_image_sweep(
    samples: np.ndarray | torch.Tensor,
    values: Sequence[float],
    *,
    name: str,
    unit: str = "",
    seeds: Sequence[int] | None = None,
    channel: int = 0,
    slice_axis: int = -1,
    slice_index: int | None = None,
    window: str | tuple[float, float] = "shared",
    percentiles: tuple[float, float] = (0.5, 99.5),
    cell_inches: tuple[float, float] = (1.6, 1.6),
    dpi: float = 100,
    path: str | Path | None = None,
) -> Figure:
    """Image sweep strip: one grayscale slice per cell, one intensity window for all cells by default.

    Args:
        samples: ``(R, S, C, H, W)`` or ``(R, S, C, H, W, D)``: condition values × seeds × image.
        values, name, unit, seeds, cell_inches, dpi, path: as in :func:`plot_signal_sweep`.
        channel, slice_axis, slice_index: which 2D image, as in :func:`~monai_gen.visualize.images.image_slices`.
        window, percentiles: as in :func:`~monai_gen.visualize.images.intensity_window`.

    Returns:
        The figure; ``figure.axes[r * S + s]`` is the cell of value ``r`` and seed ``s``.

    Raises:
        ValueError: wrong rank, values / seeds not matching the shape, a bad slice, channel or window.
    """
    array = _checked(samples, values, seeds, rank=(5, 6))
    flat = array.reshape(-1, *array.shape[2:])
    slices = image_slices(flat, channel=channel, slice_axis=slice_axis, slice_index=slice_index)
    limits = intensity_window(slices, mode=window, percentiles=percentiles)
    figure, cells = _cell_grid(array.shape[0], array.shape[1], cell_inches, dpi)
    for ax, image, (low, high) in zip(cells, slices, limits, strict=True):
        show_image(ax, image, low, high)
        ax.set_axis_on()  # keep the frame so the row label shows; hide ticks instead
        ax.set_xticks([])
        ax.set_yticks([])
    _label_grid(cells, array.shape[1], values, name, unit, seeds)
    figure.suptitle(f"{name} sweep", fontsize=9, x=0.02, ha="left")
    return save_figure(figure, path, dpi=dpi)


def _checked(
    samples: np.ndarray | torch.Tensor, values: Sequence[float], seeds: Sequence[int] | None, *, rank: tuple[int, ...]
) -> np.ndarray:
    """``samples`` as float64 after checking its rank, finiteness and agreement with ``values`` / ``seeds``."""
    array = convert_to_numpy(samples, dtype=np.float64)
    if array.ndim not in rank or 0 in array.shape[:2]:
        raise ValueError(f"samples must be a non-empty array of rank {rank} (values, seeds, ...); got {array.shape}.")
    if len(values) != array.shape[0]:
        raise ValueError(
            f"values has {len(values)} entries but samples has {array.shape[0]} rows (shape {array.shape})."
        )
    if seeds is not None and len(seeds) != array.shape[1]:
        raise ValueError(f"seeds has {len(seeds)} entries but samples has {array.shape[1]} columns.")
    if not np.isfinite(array).all():
        raise ValueError("samples contain NaN or infinite values; cannot plot them.")
    return array


def _signal_channels(
    samples: Any, count: int, lead: str | None, lead_names: Sequence[str] | None
) -> tuple[list[int], list[str]]:
    """Indices and names of the channels to draw: ``[lead]``, or every channel when ``lead`` is None."""
    meta = samples.meta if isinstance(samples, MetaTensor) else {}
    names = lead_names or meta.get(LEAD_NAMES) or (STANDARD_LEADS if count == len(STANDARD_LEADS) else None)
    names = [str(n) for n in names] if names is not None and len(names) == count else None
    if lead is None:
        return list(range(count)), names or [f"channel {i}" for i in range(count)]
    folded = [n.casefold() for n in names or ()]
    if lead.casefold() not in folded:
        raise ValueError(f"lead {lead!r} is not one of the lead names {names} of these {count} channels.")
    return [folded.index(lead.casefold())], [lead]


def _cell_grid(rows: int, cols: int, cell_inches: tuple[float, float], dpi: float) -> tuple[Figure, list[Axes]]:
    """A ``rows`` × ``cols`` grid of cells with room on the left for row labels and on top for seeds."""
    width, height = cell_inches
    figure = new_figure(cols * width + 1.2, rows * height + 0.6, dpi=dpi)
    axes = figure.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    figure.subplots_adjust(left=1.0 / (cols * width + 1.2), right=0.98, bottom=0.4 / (rows * height + 0.6) + 0.02)
    figure.subplots_adjust(top=1 - 0.45 / (rows * height + 0.6), wspace=0.08, hspace=0.12)
    return figure, list(axes.ravel())


def _label_grid(
    cells: list[Axes], cols: int, values: Sequence[float], name: str, unit: str, seeds: Sequence[int] | None
) -> None:
    """Row labels (value and unit) on the first column, seed titles on the first row."""
    for col, ax in enumerate(cells[:cols]):
        ax.set_title(f"seed {seeds[col] if seeds is not None else col}", fontsize=7)
    for row, value in enumerate(values):
        cells[row * cols].set_ylabel(sweep_row_label(name, float(value), unit), fontsize=7)
