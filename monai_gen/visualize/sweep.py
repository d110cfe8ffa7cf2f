"""Phenotype-sweep strips: rows are values of one condition, columns are seeds (the same noise per column).

Reading a column top to bottom shows what changing only the condition does to one synthetic subject; reading
a row shows the spread across subjects. Every cell shares one amplitude scale (signals) or one intensity
window (images), so a change between rows is a change in the data, not in the display. :func:`plot_signal_grid`
draws the same cells for a plain list of signals (a generation job's contact sheet), one title per cell.

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
from monai_gen.visualize.rhythm import RHYTHM_LABEL, assemble_rhythm, t_wave_amplitude

__all__ = ["plot_image_sweep", "plot_signal_grid", "plot_signal_sweep", "plot_sweep", "sweep_row_label"]

_RHYTHM_GAP_INCHES = 0.35
_CELL_WSPACE = 0.08  # gap between cells, as a fraction of a cell's width
_LABEL_BOX = {"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1.0}  # labels stay legible over traces
_RHYTHM_COLOUR = "#1f4e8c"  # assembled rhythms are drawn in blue, the generated beats in black


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
    r_index: int | None = None,
    rr_s: Sequence[float | None] | None = None,
    rhythm_seconds: float = 3.0,
    cell_inches: tuple[float, float] = (2.5, 1.4),
    dpi: float = 100,
    path: str | Path | None = None,
) -> Figure:
    """ECG sweep strip: one lead, or all leads superimposed, per cell, on one shared amplitude scale.

    A median beat (1.152 s) cannot show a heart rate below ~90 bpm: the next beat is outside its window. With
    ``rr_s`` the strip gains a column, at the cells' time scale, of a rhythm **assembled from the generated
    beat** of the first seed repeated at each row's RR (:func:`~monai_gen.visualize.rhythm.assemble_rhythm`),
    labelled as such; with ``r_index`` every cell shows its measured QT
    (:func:`~monai_gen.transforms.ecg.measurements.measure_median_beat` over all leads, at the row's RR when
    given) and the T-wave amplitude of the drawn lead, so what a condition changes on the beat can be read.

    Args:
        samples: ``(R, S, C, T)`` in mV: ``R`` condition values × ``S`` seeds × ``C`` leads × ``T`` samples.
        values: the ``R`` condition values, top row first.
        name: the condition's name (row labels read ``"{name} = {value} {unit}"``).
        unit: the condition's unit, e.g. ``"bpm"``, ``"ms"``.
        seeds: the ``S`` seeds (column titles); ``0 … S-1`` when None.
        fs: sampling rate in Hz (x axis in seconds); a MetaTensor's affine when None, else x is the sample index.
        lead: the lead shown (a name from ``lead_names``); None superimposes every lead (a compact 12-lead view).
        lead_names: channel names; ``meta["lead_names"]``, else the standard 12 leads when ``C == 12``.
        r_index: sample of the R peak in every beat; when given, each cell is labelled with its measured QT
            (ms) and T-wave amplitude (mV, drawn lead only).
        rr_s: RR interval in seconds of each row (``60 / heart rate``; None for a row without one); when
            given, adds the assembled-rhythm column (needs ``r_index`` and a rate).
        rhythm_seconds: length of each assembled rhythm in seconds.
        cell_inches: width and height of each cell in inches.
        dpi: dots per inch of the figure and of the PNG.
        path: also write the figure as a PNG here (atomically).

    Returns:
        The figure; ``figure.axes[r * S + s]`` is the cell of value ``r`` and seed ``s``, and with ``rr_s``
        ``figure.axes[R * S + r]`` is the assembled rhythm of row ``r``.

    Raises:
        ValueError: wrong rank, values / seeds / rr_s not matching the shape, unknown lead, NaN samples,
            ``rr_s`` without ``r_index`` or a rate.
    """
    array = _checked(samples, values, seeds, rank=(4,))
    channels, names = _signal_channels(samples, array.shape[2], lead, lead_names)
    traces = array[:, :, channels]
    rate = fs if fs is not None else (ecg_sampling_rate(samples) if isinstance(samples, MetaTensor) else None)
    time = np.arange(array.shape[-1]) / rate if rate else np.arange(array.shape[-1])
    _check_rhythm(rr_s, array.shape[0], r_index, rate)
    low, high = traces.min(), traces.max()
    pad = 0.05 * max(high - low, 1e-6)
    rhythm_inches = cell_inches[0] * rhythm_seconds * rate / array.shape[-1] if rr_s is not None else 0.0
    figure, cells, rhythms = _cell_grid(array.shape[0], array.shape[1], cell_inches, dpi, rhythm_inches)
    colours = [colormaps["tab20"](i % 20) for i in range(len(channels))] if lead is None else ["black"]
    for ax, cell in zip(cells, traces.reshape(-1, *traces.shape[2:]), strict=True):
        for trace, colour in zip(cell, colours, strict=True):
            ax.plot(time, trace, color=colour, linewidth=0.6)
        ax.set_ylim(low - pad, high + pad)
        ax.tick_params(labelsize=6)
    cells[0].set_xlim(0.0, array.shape[-1] / rate if rate else array.shape[-1])  # no margins: time scales compare
    _label_grid(cells, array.shape[1], values, name, unit, seeds)
    cells[-array.shape[1]].set_xlabel("time (s)" if rate else "sample", fontsize=7)
    if r_index is not None:
        _write_measurements(cells, array, rate, r_index, rr_s, channels[0] if lead is not None else None)
    if rr_s is not None:
        seed = seeds[0] if seeds is not None else 0
        _draw_rhythms(rhythms, traces[:, 0], rr_s, rate, r_index, rhythm_seconds, colours, seed)
    if lead is None:
        figure.legend(cells[0].get_lines(), names, loc="upper right", fontsize=5, ncol=6, frameon=False)
    shown = "all leads" if lead is None else f"lead {lead}"
    measured = " · QT measured on each generated beat (all leads)" if r_index is not None else ""
    measured += f", T-wave amplitude in lead {lead}" if r_index is not None and lead is not None else ""
    figure.suptitle(f"{name} sweep · {shown} · mV{measured}", fontsize=9, x=0.02, ha="left")
    return save_figure(figure, path, dpi=dpi)


def plot_signal_grid(
    samples: np.ndarray | torch.Tensor,
    *,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    fs: float | None = None,
    lead: str | None = "II",
    lead_names: Sequence[str] | None = None,
    cell_inches: tuple[float, float] = (2.2, 1.2),
    title: str = "",
    dpi: float = 100,
    path: str | Path | None = None,
) -> Figure:
    """Signals as a grid of small cells on one amplitude scale; signal ``i`` in row ``i // ncols``, col ``i % ncols``.

    Args:
        samples: ``(N, C, T)`` in mV.
        titles: one title per signal (e.g. its name and conditions).
        ncols: columns of the grid; ``min(N, 4)`` when None.
        fs, lead, lead_names, cell_inches, dpi, path: as in :func:`plot_signal_sweep`.
        title: the figure's title; the lead and unit are appended.

    Returns:
        The figure; ``figure.axes[i]`` is the cell of signal ``i`` (cells after the last signal are hidden).

    Raises:
        ValueError: not ``(N, C, T)`` or empty, titles of the wrong length, ``ncols < 1``, unknown lead, NaN samples.
    """
    array = convert_to_numpy(samples, dtype=np.float64)
    if array.ndim != 3 or array.shape[0] == 0:
        raise ValueError(f"samples must be a non-empty (N, C, T) array of signals, got shape {array.shape}.")
    if titles is not None and len(titles) != array.shape[0]:
        raise ValueError(f"titles has {len(titles)} entries for {array.shape[0]} signals.")
    ncols = min(array.shape[0], 4) if ncols is None else int(ncols)
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}.")
    if not np.isfinite(array).all():
        raise ValueError("samples contain NaN or infinite values; cannot plot them.")
    channels, names = _signal_channels(samples, array.shape[1], lead, lead_names)
    traces = array[:, channels]
    rate = fs if fs is not None else (ecg_sampling_rate(samples) if isinstance(samples, MetaTensor) else None)
    time = np.arange(array.shape[-1]) / rate if rate else np.arange(array.shape[-1])
    rows = -(-array.shape[0] // ncols)
    titled = titles is not None
    figure, cells, _ = _cell_grid(rows, ncols, cell_inches, dpi, hspace=0.45 if titled else 0.12,
                                  margins_inches=(0.45, 0.75 if titled else 0.45))
    colours = [colormaps["tab20"](i % 20) for i in range(len(channels))] if lead is None else ["black"]
    low, high = traces.min(), traces.max()
    pad = 0.05 * max(high - low, 1e-6)
    for index, ax in enumerate(cells):
        if index >= len(traces):
            ax.set_visible(False)
            continue
        for trace, colour in zip(traces[index], colours, strict=True):
            ax.plot(time, trace, color=colour, linewidth=0.6)
        ax.set_ylim(low - pad, high + pad)
        ax.tick_params(labelsize=6)
        if titles is not None:
            ax.set_title(str(titles[index]), fontsize=6)
    cells[0].set_xlim(0.0, array.shape[-1] / rate if rate else array.shape[-1])
    cells[(rows - 1) * ncols].set_xlabel("time (s)" if rate else "sample", fontsize=7)
    shown = "all leads" if lead is None else f"lead {lead}"
    figure.suptitle(" · ".join(part for part in (title, shown, "mV") if part), fontsize=9, x=0.02, ha="left")
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
    figure, cells, _ = _cell_grid(array.shape[0], array.shape[1], cell_inches, dpi)
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


def _cell_grid(
    rows: int, cols: int, cell_inches: tuple[float, float], dpi: float, rhythm_inches: float = 0.0,
    hspace: float = 0.12, margins_inches: tuple[float, float] = (1.0, 0.45),
) -> tuple[Figure, list[Axes], list[Axes]]:
    """A ``rows`` × ``cols`` grid of cells with room on the left for row labels and on top for seeds.

    With ``rhythm_inches`` > 0 a column follows the grid (one axes per row, created after the cells so
    ``figure.axes`` keeps the cells first), ``rhythm_inches / cell_inches[0]`` times as wide as a cell, so a
    strip drawn at the cells' seconds per inch keeps their time scale; it shares the cells' amplitude scale.
    ``margins_inches`` are the room left of the cells (row labels) and above them (titles).
    """
    width, height = cell_inches
    gap = _RHYTHM_GAP_INCHES if rhythm_inches else 0.0
    left, top = margins_inches
    figure_width, figure_height = cols * width + gap + rhythm_inches + left + 0.2, rows * height + top + 0.15
    figure = new_figure(figure_width, figure_height, dpi=dpi)
    shrink = cols / (cols + _CELL_WSPACE * (cols - 1))  # a cell's share of its column once the gaps are taken
    outer = figure.add_gridspec(
        1, 2 if rhythm_inches else 1, width_ratios=[cols * width, rhythm_inches * shrink] if rhythm_inches else None,
        wspace=2 * gap / (cols * width + rhythm_inches), left=left / figure_width, right=0.98,
        bottom=0.4 / figure_height + 0.02, top=1 - top / figure_height,
    )
    cells = outer[0].subgridspec(rows, cols, wspace=_CELL_WSPACE, hspace=hspace)
    cells = cells.subplots(sharex=True, sharey=True, squeeze=False)
    if not rhythm_inches:
        return figure, list(cells.ravel()), []
    rhythms = list(outer[1].subgridspec(rows, 1, hspace=0.12).subplots(sharex=True, squeeze=False).ravel())
    for ax in rhythms:
        ax.sharey(cells[0, 0])
        ax.tick_params(labelsize=6, labelleft=False)
    return figure, list(cells.ravel()), rhythms


def _check_rhythm(rr_s: Sequence[float | None] | None, rows: int, r_index: int | None, rate: float | None) -> None:
    """``rr_s`` has one entry per row and comes with ``r_index``; either needs a sampling rate."""
    if rr_s is not None and len(rr_s) != rows:
        raise ValueError(f"rr_s has {len(rr_s)} entries but samples has {rows} rows.")
    if rr_s is not None and r_index is None:
        raise ValueError("rr_s (assembled rhythms) needs r_index, the R peak's sample in the beats.")
    if (rr_s is not None or r_index is not None) and not rate:
        raise ValueError("measurements and assembled rhythms need the sampling rate fs (or a MetaTensor).")


def _write_measurements(
    cells: list[Axes], beats: np.ndarray, fs: float, r_index: int, rr_s: Sequence[float | None] | None,
    channel: int | None,
) -> None:
    """Each cell's measured QT (all leads, at its row's RR) and T-wave amplitude of ``channel``, in its corner."""
    from monai_gen.transforms.ecg.measurements import measure_median_beat  # neurokit2 loads slowly: only here

    for index, (ax, beat) in enumerate(zip(cells, beats.reshape(-1, *beats.shape[2:]), strict=True)):
        rr = rr_s[index // beats.shape[1]] if rr_s is not None else None
        qt = measure_median_beat(beat, fs, r_index=r_index, rr_ms=None if rr is None else 1000.0 * rr).qt_ms
        text = f"QT {qt:.0f} ms" if np.isfinite(qt) else "QT not measurable"
        if channel is not None and np.isfinite(qt):
            text += f" · T {t_wave_amplitude(beat[channel], fs, r_index=r_index, qt_ms=qt)[0]:+.2f} mV"
        ax.text(0.02, 0.96, text, transform=ax.transAxes, fontsize=6, va="top", ha="left", gid="measurement",
                bbox=_LABEL_BOX)


def _draw_rhythms(
    axes: list[Axes], beats: np.ndarray, rr_s: Sequence[float | None], fs: float, r_index: int, seconds: float,
    colours: list[Any], seed: int,
) -> None:
    """Row ``r``: ``beats[r]`` ``(C, T)`` repeated at ``rr_s[r]`` seconds, in a colour unlike the generated cells."""
    for ax, beat, rr in zip(axes, beats, rr_s, strict=True):
        if rr is None:
            ax.text(0.5, 0.5, "no heart rate requested: no RR to assemble", transform=ax.transAxes, fontsize=6,
                    ha="center", va="center")
            continue
        strip, _ = assemble_rhythm(beat, fs, r_index=r_index, rr_s=rr, duration_s=seconds)
        time = np.arange(strip.shape[-1]) / fs
        for trace, colour in zip(strip, colours if len(colours) > 1 else [_RHYTHM_COLOUR], strict=True):
            ax.plot(time, trace, color=colour, linewidth=0.6)
        ax.text(0.01, 0.96, f"RR {1000 * rr:.0f} ms = {60 / rr:.0f} bpm", transform=ax.transAxes, fontsize=6,
                va="top", ha="left", gid="rr", bbox=_LABEL_BOX)
    axes[0].set_title(f"seed {seed}, {RHYTHM_LABEL} at the row's RR (not a generated rhythm)", fontsize=7,
                      color=_RHYTHM_COLOUR)
    axes[0].set_xlim(0.0, seconds)
    axes[-1].set_xlabel("time (s)", fontsize=7)


def _label_grid(
    cells: list[Axes], cols: int, values: Sequence[float], name: str, unit: str, seeds: Sequence[int] | None
) -> None:
    """Row labels (value and unit) on the first column, seed titles on the first row."""
    for col, ax in enumerate(cells[:cols]):
        ax.set_title(f"seed {seeds[col] if seeds is not None else col}", fontsize=7)
    for row, value in enumerate(values):
        cells[row * cols].set_ylabel(sweep_row_label(name, float(value), unit), fontsize=7)
