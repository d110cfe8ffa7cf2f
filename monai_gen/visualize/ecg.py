"""12-lead ECG on clinical paper: the 3 × 4 + rhythm-strip print-out, and median beats on the same scale.

The page is drawn to true scale: paper coordinates are millimetres, 25 mm per second and 10 mm per mV,
and the figure size is computed from the page in millimetres, so a PNG printed at its DPI measures like
ECG paper (1 mm minor squares = 0.04 s × 0.1 mV, 5 mm major squares = 0.2 s × 0.5 mV).

Each lead panel is one :class:`~matplotlib.axes.Axes` (``axes.get_label()`` is the lead name) whose x axis
is the **record time** in paper millimetres (``x = 25 · t``, ``t`` in seconds from the plotted start) and
whose y axis is the signal in millimetres around the panel's baseline (``y = 10 · v``, ``v`` in mV). The
panels of a row abut and share the grid phase, so the paper looks continuous.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from monai.data import MetaTensor
from monai.utils import convert_to_numpy

from monai_gen.data.ecg_meta import LEAD_NAMES, RECORD_ID, STANDARD_LEADS, ecg_sampling_rate
from monai_gen.visualize.figure import new_figure, save_figure

__all__ = [
    "PAPER_SPEED_MM_PER_S",
    "GAIN_MM_PER_MV",
    "RHYTHM_LAYOUT",
    "BEAT_LAYOUTS",
    "plot_ecg",
    "plot_median_beats",
    "median_beats_caption",
    "standard_leads",
]

PAPER_SPEED_MM_PER_S = 25.0
GAIN_MM_PER_MV = 10.0
RHYTHM_LAYOUT: tuple[tuple[str, ...], ...] = (
    ("I", "aVR", "V1", "V4"),
    ("II", "aVL", "V2", "V5"),
    ("III", "aVF", "V3", "V6"),
)
"""The standard 3 × 4 print-out: columns are consecutive quarters of the record."""
BEAT_LAYOUTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "3x4": RHYTHM_LAYOUT,
    "2x6": (STANDARD_LEADS[:6], STANDARD_LEADS[6:]),
}
"""Median-beat layouts: the 3 × 4 print-out order, or limb leads over precordial leads."""

_CAL_MM = 10.0  # calibration zone at the start of each row: a 1 mV (10 mm) pulse, 0.2 s (5 mm) wide
_MARGIN_MM = 5.0
_CAPTION_MM = 10.0  # at least; more when the caption needs more than two lines
_CAPTION_PT, _LINE_SPACING = 9.0, 1.2
_MINOR_COLOUR, _MAJOR_COLOUR = "#f7c6cf", "#ec8fa0"
_MM_PER_INCH = 25.4


@dataclass(frozen=True)
class _Panel:
    """One lead trace on the page: ``row`` from the top, ``x0``–``x1`` its paper extent in mm."""

    name: str
    row: int
    x0: float
    x1: float
    x: np.ndarray
    y: np.ndarray


def standard_leads(ecg: np.ndarray | torch.Tensor, lead_names: Sequence[str] | None = None) -> np.ndarray:
    """The 12 standard leads of ``ecg`` as a ``(12, samples)`` float array in the order ``I … V6``.

    Lead names come from ``lead_names``, else ``ecg.meta["lead_names"]``, else the standard order is assumed
    (then exactly 12 channels are required). Names match case-insensitively (``AVR`` = ``aVR``), so a record
    stored in another order is reordered, and extra named leads (e.g. Frank ``vx, vy, vz``) are left out.

    Raises:
        ValueError: not ``(leads, samples)``; names missing, repeated or not covering the 12 standard leads;
            NaN / inf samples.
    """
    array = convert_to_numpy(ecg, dtype=np.float64)
    names = list(lead_names) if lead_names is not None else _meta(ecg).get(LEAD_NAMES) or list(STANDARD_LEADS)
    if array.ndim != 2 or array.shape[0] != len(names):
        raise ValueError(
            f"a 12-lead ECG must be (leads, samples) in mV with one name per lead; got shape {tuple(array.shape)} "
            f"for lead names {list(names)}."
        )
    folded = [str(n).casefold() for n in names]
    missing = [lead for lead in STANDARD_LEADS if folded.count(lead.casefold()) != 1]
    if missing:
        raise ValueError(
            f"lead names {list(names)} do not fit the 12-lead layout: each of {list(STANDARD_LEADS)} must appear "
            f"exactly once (missing or repeated: {missing})."
        )
    array = array[[folded.index(lead.casefold()) for lead in STANDARD_LEADS]]
    bad = [lead for lead, row in zip(STANDARD_LEADS, array, strict=True) if not np.isfinite(row).all()]
    if bad:
        raise ValueError(f"leads {bad} contain NaN or infinite samples; cannot plot them.")
    return array


def plot_ecg(
    ecg: np.ndarray | torch.Tensor,
    fs: float | None = None,
    *,
    lead_names: Sequence[str] | None = None,
    start: float = 0.0,
    duration: float | None = None,
    record_id: str | None = None,
    caption: str = "",
    row_height_mm: float = 30.0,
    dpi: float = 100,
    path: str | Path | None = None,
) -> Figure:
    """Draw a 12-lead ECG as the standard clinical print-out: 3 × 4 leads plus a lead-II rhythm strip.

    Rows are ``I aVR V1 V4 / II aVL V2 V5 / III aVF V3 V6``; column ``c`` shows the ``c``-th quarter of the
    window ``[start, start + duration)`` (2.5 s each for the usual 10 s), and the fourth row is lead II over
    the whole window. Paper speed 25 mm/s, gain 10 mm/mV, a 1 mV calibration pulse at the start of each row.

    Args:
        ecg: ``(leads, samples)`` in mV (numpy, torch or MetaTensor) holding the 12 standard leads; see
            :func:`standard_leads` for names and order.
        fs: sampling rate in Hz; read from a MetaTensor's affine (``affine[0, 0] = 1 / fs``) when None.
        lead_names: channel names, overriding ``meta["lead_names"]``.
        start: first second shown.
        duration: seconds shown; up to 10 s of what the record holds after ``start`` when None.
        record_id: caption identifier; ``meta["record_id"]`` when None.
        caption: extra caption text, e.g. ``"HR 75 bpm · QT 400 ms · synthetic"``.
        row_height_mm: height of each row of paper (mm; 30 mm = 3 mV).
        dpi: dots per inch of the figure and of the PNG.
        path: also write the figure as a PNG here (atomically).

    Returns:
        The figure: ``figure.axes[:12]`` are the grid panels row by row, ``figure.axes[12]`` the rhythm strip.

    Raises:
        ValueError: wrong lead count or names, NaN samples, no rate, or a window outside the record.

    See:
        AHA/ACCF/HRS recommendations for the standardization of the ECG, part I (Kligfield et al., 2007).
    """
    signal = standard_leads(ecg, lead_names)
    rate = _sampling_rate(ecg, fs)
    first, count = _window(signal.shape[1], rate, start, duration)
    bounds = np.linspace(first, first + count, len(RHYTHM_LAYOUT[0]) + 1).round().astype(int)
    panels = [
        _trace(name, row, signal, np.arange(bounds[col], bounds[col + 1]), rate, first)
        for row, names in enumerate(RHYTHM_LAYOUT)
        for col, name in enumerate(names)
    ]
    panels.append(_trace("II", len(RHYTHM_LAYOUT), signal, np.arange(first, first + count), rate, first))
    text = _caption(ecg, record_id, rate, f"{start:g}–{start + count / rate:g} s", caption)
    figure = _draw_page(panels, len(RHYTHM_LAYOUT) + 1, row_height_mm=row_height_mm, caption=text, dpi=dpi)
    return save_figure(figure, path, dpi=dpi)


def plot_median_beats(
    beats: np.ndarray | torch.Tensor,
    fs: float | None = None,
    *,
    layout: str = "3x4",
    lead_names: Sequence[str] | None = None,
    record_id: str | None = None,
    caption: str = "",
    row_height_mm: float = 40.0,
    dpi: float = 100,
    path: str | Path | None = None,
) -> Figure:
    """Draw 12 median (representative) beats on ECG paper, one panel per lead, at 25 mm/s and 10 mm/mV.

    Args:
        beats: ``(12, samples)`` in mV, e.g. ``(12, 576)`` at 500 Hz (1.152 s).
        fs: sampling rate in Hz; read from a MetaTensor's affine when None.
        layout: ``"3x4"`` (print-out order) or ``"2x6"`` (limb leads over precordial leads); see :data:`BEAT_LAYOUTS`.
        lead_names, record_id, caption, row_height_mm, dpi, path: as in :func:`plot_ecg`.

    Returns:
        The figure; ``figure.axes`` are the 12 panels row by row in the layout's order.

    Raises:
        ValueError: unknown layout, wrong lead count or names, NaN samples, no rate.
    """
    _check_layout(layout)
    signal = standard_leads(beats, lead_names)
    rate = _sampling_rate(beats, fs)
    samples = np.arange(signal.shape[1])
    panels = []
    for row, names in enumerate(BEAT_LAYOUTS[layout]):
        for col, name in enumerate(names):
            trace = _trace(name, row, signal, samples, rate, 0)
            shift = col * (trace.x1 - trace.x0)  # beats side by side, each on its own stretch of paper
            panels.append(_Panel(name, row, trace.x0 + shift, trace.x1 + shift, trace.x + shift, trace.y))
    text = _caption(beats, record_id, rate, "median beats", caption)
    figure = _draw_page(panels, len(BEAT_LAYOUTS[layout]), row_height_mm=row_height_mm, caption=text, dpi=dpi)
    return save_figure(figure, path, dpi=dpi)


def median_beats_caption(
    beats: np.ndarray | torch.Tensor,
    fs: float | None = None,
    *,
    layout: str = "3x4",
    record_id: str | None = None,
    caption: str = "",
) -> tuple[str, float]:
    """The caption :func:`plot_median_beats` writes on the page of these beats: its text, wrapped to the page's
    width (lines joined by ``"\\n"``), and its font size in points.

    A page drawn once can show other beats of the same length by replacing its traces and caption text only; this
    gives that text (and whether the page still fits it: the same number of lines at the same font size).

    Args:
        beats: ``(12, samples)`` in mV (only the length and a MetaTensor's record id and rate are read).
        fs, layout, record_id, caption: as in :func:`plot_median_beats`.

    Raises:
        ValueError: an unknown layout or no rate.
    """
    _check_layout(layout)
    rate = _sampling_rate(beats, fs)
    # the widest row's paper as plot_median_beats lays it out: beats side by side, the first one from 0 mm
    beat_mm = int(beats.shape[-1]) / rate * PAPER_SPEED_MM_PER_S
    paper_mm = beat_mm + (len(BEAT_LAYOUTS[layout][0]) - 1) * beat_mm
    text = _caption(beats, record_id, rate, "median beats", caption)
    lines, fontsize = _wrap_caption(text, _caption_width_pt(_page_width_mm(paper_mm)), _CAPTION_PT)
    return "\n".join(lines), fontsize


def _check_layout(layout: str) -> None:
    if layout not in BEAT_LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(BEAT_LAYOUTS)}, got {layout!r}.")


def _meta(ecg: Any) -> Mapping[str, Any]:
    return ecg.meta if isinstance(ecg, MetaTensor) else {}


def _sampling_rate(ecg: Any, fs: float | None) -> float:
    if fs is None:
        if not isinstance(ecg, MetaTensor):
            raise ValueError(f"fs (Hz) must be given for a plain {type(ecg).__name__}; only a MetaTensor carries it.")
        fs = ecg_sampling_rate(ecg)
    if not (np.isfinite(fs) and fs > 0):
        raise ValueError(f"fs must be a positive sampling rate in Hz, got {fs}.")
    return float(fs)


def _window(samples: int, fs: float, start: float, duration: float | None) -> tuple[int, int]:
    """First sample and sample count of ``[start, start + duration)``, checked against the record."""
    first = int(round(start * fs))
    count = int(round((duration if duration is not None else 10.0) * fs))
    if duration is None:
        count = min(count, samples - first)
    if first < 0 or count < 4 or first + count > samples:
        raise ValueError(
            f"window start={start} s, duration={duration} s does not fit a record of {samples} samples "
            f"({samples / fs:g} s at {fs:g} Hz)."
        )
    return first, count


def _trace(name: str, row: int, signal: np.ndarray, index: np.ndarray, fs: float, first: int) -> _Panel:
    """Samples ``index`` of lead ``name`` in paper mm: time from sample ``first`` at 25 mm/s, 10 mm/mV."""
    x = (index - first) / fs * PAPER_SPEED_MM_PER_S
    x0, x1 = (index[0] - first) / fs * PAPER_SPEED_MM_PER_S, (index[-1] + 1 - first) / fs * PAPER_SPEED_MM_PER_S
    return _Panel(name, row, x0, x1, x, signal[STANDARD_LEADS.index(name)][index] * GAIN_MM_PER_MV)


def _caption(ecg: Any, record_id: str | None, fs: float, what: str, extra: str) -> str:
    record = record_id if record_id is not None else str(_meta(ecg).get(RECORD_ID, "") or "")
    parts = [record, f"{fs:g} Hz", what, f"{PAPER_SPEED_MM_PER_S:g} mm/s", f"{GAIN_MM_PER_MV:g} mm/mV", extra]
    return " · ".join(p for p in parts if p)


def _draw_page(panels: list[_Panel], rows: int, *, row_height_mm: float, caption: str, dpi: float) -> Figure:
    """Lay the panels out on true-scale paper; the first panel of each row also gets the calibration zone."""
    if not row_height_mm > 0:
        raise ValueError(f"row_height_mm must be positive, got {row_height_mm}.")
    width_mm = _page_width_mm(max(p.x1 for p in panels))
    lines, fontsize = _wrap_caption(caption, _caption_width_pt(width_mm), _CAPTION_PT)
    caption_mm = max(_CAPTION_MM, len(lines) * fontsize * _LINE_SPACING / 72.0 * _MM_PER_INCH + 1.0)
    height_mm = 2 * _MARGIN_MM + caption_mm + rows * row_height_mm
    figure = new_figure(width_mm / _MM_PER_INCH, height_mm / _MM_PER_INCH, dpi=dpi)
    row_starts = {row: min(p.x0 for p in panels if p.row == row) for row in range(rows)}
    for panel in panels:
        left = panel.x0 - _CAL_MM if panel.x0 == row_starts[panel.row] else panel.x0
        bottom = _MARGIN_MM + (rows - 1 - panel.row) * row_height_mm
        box = (_MARGIN_MM + _CAL_MM + left, bottom, panel.x1 - left, row_height_mm)
        ax = figure.add_axes(
            [box[0] / width_mm, box[1] / height_mm, box[2] / width_mm, box[3] / height_mm], label=panel.name
        )
        ax.set_xlim(left, panel.x1)
        ax.set_ylim(-row_height_mm / 2, row_height_mm / 2)
        _paper_grid(ax)
        ax.plot(panel.x, panel.y, color="black", linewidth=0.7, clip_on=False)
        ax.text(panel.x0 + 1.0, row_height_mm / 2 - 1.0, panel.name, fontsize=8, va="top", ha="left")
        if left < panel.x0:
            _calibration_pulse(ax, panel.x0)
        else:  # the usual lead-change mark where one lead's stretch of paper ends and the next begins
            ax.plot([panel.x0, panel.x0], [-2.5, 2.5], color="black", linewidth=0.9, gid="separator")
    figure.text(
        _MARGIN_MM / width_mm, 1 - _MARGIN_MM / height_mm, "\n".join(lines), fontsize=fontsize, va="top", ha="left",
        linespacing=_LINE_SPACING,
    )
    return figure


def _page_width_mm(paper_mm: float) -> float:
    """Width of a page whose widest row of traces ends ``paper_mm`` after its calibration zone."""
    return 2 * _MARGIN_MM + _CAL_MM + paper_mm


def _caption_width_pt(width_mm: float) -> float:
    """The caption's line width (points) on a page ``width_mm`` wide: the page less its margins."""
    return (width_mm - 2 * _MARGIN_MM) / _MM_PER_INCH * 72.0


def _wrap_caption(caption: str, width_pt: float, fontsize: float) -> tuple[list[str], float]:
    """``caption`` broken into lines at most ``width_pt`` points wide, and the font size (points) that fits.

    Lines break at the `` · `` separators, a part too long for a line between its words, and the font shrinks
    only when one word is still wider than the line (e.g. a very long record id). Widths are measured with
    matplotlib's Agg text renderer (matplotlib's own ``wrap=True`` lets the last word overrun the page edge).
    """
    renderer = RendererAgg(1, 1, 72.0)  # at 72 dpi one pixel is one point

    def width(text: str) -> float:
        return renderer.get_text_width_height_descent(text, FontProperties(size=fontsize), ismath=False)[0]

    lines: list[str] = []
    for part in caption.split(" · "):
        if lines and width(f"{lines[-1]} · {part}") <= width_pt:
            lines[-1] += f" · {part}"
            continue
        words = part.split(" ")
        lines.append(words[0])
        for word in words[1:]:
            if width(f"{lines[-1]} {word}") <= width_pt:
                lines[-1] += f" {word}"
            else:
                lines.append(word)
    widest = max(width(line) for line in lines)
    return lines, fontsize * min(1.0, width_pt / widest) if widest > 0 else fontsize


def _paper_grid(ax: Axes) -> None:
    """Pink ECG paper over the axes' limits: 1 mm minor and 5 mm major lines, no ticks, transparent background.

    The lines are two :class:`~matplotlib.collections.LineCollection` (gids ``"minor_grid"``, ``"major_grid"``)
    rather than tick grid lines: tick machinery made up ~95 % of the drawing time of a 12-panel page.
    """
    ax.set_facecolor("none")  # traces that leave their row stay visible over the neighbouring panels
    (x_low, x_high), (y_low, y_high) = ax.get_xlim(), ax.get_ylim()
    for step, colour, width, gid in ((1.0, _MINOR_COLOUR, 0.3, "minor_grid"), (5.0, _MAJOR_COLOUR, 0.7, "major_grid")):
        xs = np.arange(np.ceil(x_low / step), np.floor(x_high / step) + 1) * step
        ys = np.arange(np.ceil(y_low / step), np.floor(y_high / step) + 1) * step
        segments = [((x, y_low), (x, y_high)) for x in xs] + [((x_low, y), (x_high, y)) for y in ys]
        ax.add_collection(LineCollection(segments, colors=colour, linewidths=width, gid=gid, zorder=0.5), autolim=False)
    ax.set_axis_off()


def _calibration_pulse(ax: Axes, end_mm: float) -> None:
    """The 1 mV × 0.2 s standardisation pulse, drawn in the calibration zone just before ``end_mm``."""
    x = end_mm - np.array([_CAL_MM - 1.0, _CAL_MM - 3.0, _CAL_MM - 3.0, _CAL_MM - 8.0, _CAL_MM - 8.0, 1.0])
    y = np.array([0.0, 0.0, GAIN_MM_PER_MV, GAIN_MM_PER_MV, 0.0, 0.0])
    ax.plot(x, y, color="black", linewidth=0.7, gid="calibration")
