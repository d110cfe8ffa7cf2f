"""ECG interval measurements (heart rate, PR, QRS, QT, QTc) validated against LUDB's cardiologists.

Intervals are measured on a *median beat* with a small learned per-lead delineator trained on LUDB's expert
marks (:mod:`monai_gen.transforms.ecg.delineation`): the beat is detrended (linear ramp to zero at both ends)
and tiled into a short rhythm (one cardiac cycle ``[R - 0.3 RR, R + 0.7 RR)`` when a second QRS lies in the
window, else the whole window), each lead is delineated, and the intervals are computed as LUDB's experts'
are: per lead QRS = offset - onset, QT = T offset - QRS onset, PR = QRS onset - P onset, the median over the
interior copies, then the median over the leads. Heart rate comes from the rhythm's R peaks. Agreement with
the experts under 5-fold subject-wise cross-validation on 160 LUDB records is in ``docs/ecg_measurement.md``
(``python -m benchmarks.ecg_measurement``). Implausible values are NaN, never silently wrong: QRS 40-250 ms,
PR 60-400 ms, PR and QT only with a plausible QRS, and a heart-rate dependent QT gate (Bazett-corrected QT
250-600 ms).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from monai_gen.data.ludb import WaveMarks, expert_intervals
from monai_gen.transforms.ecg.delineation import WaveSegmenter, delineate
from monai_gen.transforms.ecg.functional import detect_r_peaks, median_beat

__all__ = ["ECGMeasurements", "measure_median_beat", "measure_ecg"]

_TILES = 6
_QRS_RANGE_MS = (40.0, 250.0)
_QTC_RANGE_MS = (250.0, 600.0)
_PR_RANGE_MS = (60.0, 400.0)


@dataclass(frozen=True)
class ECGMeasurements:
    """Intervals of one record in ms (heart rate in bpm); NaN where a value could not be measured reliably.

    ``qtc_ms`` uses ``qtc_formula``: ``"bazett"`` (QT / sqrt(RR in s), the clinical default) or
    ``"fridericia"`` (QT / cbrt(RR in s), less biased at high heart rates).
    """

    heart_rate_bpm: float
    rr_ms: float
    pr_ms: float
    qrs_ms: float
    qt_ms: float
    qtc_ms: float
    qtc_formula: str = "bazett"

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def _detrended(beat: np.ndarray) -> np.ndarray:
    ramp = np.linspace(beat[:, :1], beat[:, -1:], beat.shape[1], axis=1)[..., 0]
    return beat - ramp


def _cycle(beat: np.ndarray, r_index: int, rr_samples: float | None) -> tuple[np.ndarray, int]:
    """The part of the window to tile: the whole window, or one cycle when the next QRS falls inside it."""
    if rr_samples is not None and np.isfinite(rr_samples) and r_index + 0.85 * rr_samples < beat.shape[1]:
        start = max(0, int(round(r_index - 0.3 * rr_samples)))
        stop = min(beat.shape[1], int(round(r_index + 0.7 * rr_samples)))
        return beat[:, start:stop], r_index - start
    return beat, r_index


def _interior(marks: WaveMarks, low: float, high: float) -> WaveMarks:
    """Only the QRS complexes whose middle lies in ``[low, high)`` (the P and T waves pair with them later)."""
    keep = (marks.qrs[:, 1] >= low) & (marks.qrs[:, 1] < high)
    return WaveMarks(p=marks.p, qrs=marks.qrs[keep], t=marks.t)


def _beat_intervals(beat: np.ndarray, fs: float, r_index: int, rr_samples: float | None, segmenter) -> dict[str, float]:
    """Experts'-style intervals (ms) of a ``(leads, samples)`` median beat: tile, delineate, median per lead and over leads."""
    cycle, r_in_cycle = _cycle(_detrended(beat), r_index, rr_samples)
    cycle = _detrended(cycle)
    n = cycle.shape[1]
    marks = delineate(np.tile(cycle, _TILES), fs, model=segmenter)
    # interior copies only: the band-pass filter and the network see the signal's ends differently
    low, high = n + r_in_cycle - 0.5 * n, (_TILES - 1) * n + r_in_cycle - 0.5 * n
    leads = {k: _interior(m, low, high) for k, m in enumerate(marks) if np.ptp(cycle[k]) > 0}
    return expert_intervals(leads, fs) if leads else dict.fromkeys(("pr_ms", "qrs_ms", "qt_ms"), float("nan"))


def _gate(value: float, low: float, high: float) -> float:
    return value if np.isfinite(value) and low <= value <= high else float("nan")


def measure_median_beat(
    beat: np.ndarray,
    fs: float,
    *,
    r_index: int,
    rr_ms: float | None = None,
    qtc_formula: str = "bazett",
    segmenter: WaveSegmenter | None = None,
) -> ECGMeasurements:
    """Measure PR, QRS, QT (and QTc when the RR is known) on a ``(leads, samples)`` median beat in mV.

    Args:
        beat: the median beat, e.g. ``(12, 576)`` at 500 Hz.
        fs: sampling rate in Hz.
        r_index: sample of the R peak in the window.
        rr_ms: RR interval of the rhythm the beat came from (sets the heart rate, QTc, and the tiled cycle);
            ``None`` when unknown (then heart rate and QTc are NaN, and the whole window is tiled).
        qtc_formula: ``"bazett"`` or ``"fridericia"``.
        segmenter: the delineator network (default: the shipped LUDB-trained weights).

    See: docs/ecg_measurement.md (method and agreement with LUDB's cardiologists).
    """
    if qtc_formula not in ("bazett", "fridericia"):
        raise ValueError(f"qtc_formula must be 'bazett' or 'fridericia', got {qtc_formula!r}.")
    beat = np.atleast_2d(np.asarray(beat, dtype=np.float64))
    if not np.isfinite(beat).all():
        raise ValueError("median beat contains NaN or infinite samples.")
    rr_samples = None if rr_ms is None or not np.isfinite(rr_ms) else rr_ms * fs / 1000.0
    intervals = _beat_intervals(beat, fs, int(r_index), rr_samples, segmenter)
    rr = float(rr_ms) if rr_samples is not None else float("nan")
    qrs = _gate(intervals["qrs_ms"], *_QRS_RANGE_MS)
    # PR and QT start at the QRS onset: without a plausible QRS they are not measured either
    pr = _gate(intervals["pr_ms"], *_PR_RANGE_MS) if np.isfinite(qrs) else float("nan")
    qt = intervals["qt_ms"] if np.isfinite(qrs) else float("nan")
    qtc = qt / (rr / 1000.0) ** (0.5 if qtc_formula == "bazett" else 1 / 3) if np.isfinite(rr) else float("nan")
    # heart-rate dependent plausibility: gate QT through its Bazett correction (plain range when RR unknown)
    bazett = qt / math.sqrt(rr / 1000.0) if np.isfinite(rr) else qt
    if not np.isfinite(_gate(bazett, *_QTC_RANGE_MS)):
        qt, qtc = float("nan"), float("nan")
    heart_rate = 60000.0 / rr if np.isfinite(rr) else float("nan")
    return ECGMeasurements(heart_rate, rr, pr, qrs, float(qt), float(qtc), qtc_formula)


def measure_ecg(
    signal: np.ndarray,
    fs: float,
    *,
    qtc_formula: str = "bazett",
    where: str = "signal",
    segmenter: WaveSegmenter | None = None,
) -> ECGMeasurements:
    """Measure a ``(leads, samples)`` rhythm in mV: heart rate from its R peaks, intervals on its median beat.

    Raises:
        ValueError: NaN, too short, or too few beats (the message names ``where``).
    """
    peaks = detect_r_peaks(signal, fs, where=where)
    beat, _, rr_ms = median_beat(signal, fs, r_peaks=peaks, where=where)
    r_index = int(round(200 * fs / 500.0))
    return measure_median_beat(beat, fs, r_index=r_index, rr_ms=rr_ms, qtc_formula=qtc_formula, segmenter=segmenter)
