"""A rhythm strip assembled from one median beat, and the beat's T-wave amplitude, for sweep figures.

A median-beat model generates one R-aligned window (1.152 s at 500 Hz, R at 0.4 s), so below ~90 bpm the
next beat never falls inside it and the heart rate cannot be seen on the beat. :func:`assemble_rhythm`
repeats the generated beat at a requested RR interval so the strip shows that interval; it is a display
aid **assembled from the generated beat**, not a generated rhythm (every cycle is the same beat).
"""

from __future__ import annotations

import numpy as np

__all__ = ["RHYTHM_LABEL", "assemble_rhythm", "t_wave_amplitude"]

RHYTHM_LABEL = "assembled from the generated beat"
"""What every figure that draws :func:`assemble_rhythm` output must say about it."""

_BEFORE_R = 0.4  # share of the RR drawn before R: holds the P wave and PR segment down to ~150 bpm
_EDGE_S = 0.02  # left out at both ends of the window: generated beats often step at their first / last sample
_TAIL_S = 0.05  # a cycle longer than the window is continued at the median level of its last 50 ms
_PR_SEGMENT_S = (-0.10, -0.05)  # baseline window around the PR segment, seconds from R
_T_SEARCH_START_S = 0.12  # the T wave is searched from here after R (past the QRS and the J point)
_QRS_ONSET_BEFORE_R_S = 0.04  # QT is timed from the QRS onset, typically ~40 ms before R


def assemble_rhythm(
    beat: np.ndarray, fs: float, *, r_index: int, rr_s: float, duration_s: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Repeat one beat every ``rr_s`` seconds: a ``(C, round(duration_s * fs))`` strip in the beat's units.

    One cardiac cycle ``[R - 0.4 RR, R + 0.6 RR)`` is cut from the beat, 20 ms clear of the window's ends
    (generated beats often step there); a cycle longer than that is continued at the median level of its
    last 50 ms (a longer TP segment). The linear trend between the cycle's two ends is removed so consecutive
    cycles join without a step, and the cycle is tiled. The strip starts at the first cycle's start.

    Args:
        beat: ``(C, T)`` or ``(T,)`` R-aligned beat, e.g. ``(12, 576)`` mV at 500 Hz with R at sample 200.
        fs: sampling rate in Hz.
        r_index: sample of the R peak in ``beat``.
        rr_s: RR interval in seconds (``60 / heart rate``).
        duration_s: length of the strip in seconds.

    Returns:
        ``(strip, r_peaks)``: the ``(C, N)`` strip and the sample indices of its R peaks.

    Raises:
        ValueError: a bad rate, RR, duration or R index, or non-finite samples.
    """
    beat = np.atleast_2d(np.asarray(beat, dtype=np.float64))
    if not (np.isfinite(fs) and fs > 0 and np.isfinite(rr_s) and rr_s > 0 and np.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"fs, rr_s and duration_s must be positive, got fs={fs}, rr_s={rr_s}, duration_s={duration_s}.")
    if not 0 <= r_index < beat.shape[-1]:
        raise ValueError(f"r_index must lie inside the beat's {beat.shape[-1]} samples, got {r_index}.")
    if not np.isfinite(beat).all():
        raise ValueError("beat contains NaN or infinite samples; cannot assemble a rhythm from it.")
    rr, edge = max(2, int(round(rr_s * fs))), int(round(_EDGE_S * fs))
    start = r_index - int(np.clip(round(_BEFORE_R * rr), 0, max(r_index - edge, 0)))
    cycle = beat[:, start : min(start + rr, beat.shape[-1] - edge)]
    tail = np.median(cycle[:, -max(1, int(round(_TAIL_S * fs))) :], axis=-1, keepdims=True)
    cycle = np.concatenate([cycle, np.repeat(tail, rr - cycle.shape[1], axis=-1)], axis=-1)  # a longer TP segment
    cycle = cycle - (cycle[:, -1:] - cycle[:, :1]) * np.linspace(0.0, 1.0, rr)  # ends meet: no step at the joins
    length = int(round(duration_s * fs))
    strip = np.tile(cycle, (1, -(-length // rr)))[:, :length]
    r_peaks = np.arange(r_index - start, length, rr)
    return strip, r_peaks


def t_wave_amplitude(beat: np.ndarray, fs: float, *, r_index: int, qt_ms: float) -> np.ndarray:
    """Signed T-wave amplitude of each lead in the beat's units: the extreme from R + 120 ms to the T end.

    The T end is ``R - 40 ms + qt_ms`` (QT timed from a QRS onset taken ~40 ms before R) and the baseline
    is the median over the PR segment, 100 to 50 ms before R. An approximation for figure labels, not a
    delineation.

    Args:
        beat: ``(C, T)`` or ``(T,)`` R-aligned beat.
        fs: sampling rate in Hz.
        r_index: sample of the R peak.
        qt_ms: the beat's measured QT in ms (NaN gives NaN amplitudes).

    Returns:
        ``(C,)`` amplitudes (positive for an upright T wave), NaN where the QT is unknown or too short.
    """
    beat = np.atleast_2d(np.asarray(beat, dtype=np.float64))
    stop = int(round(r_index + (qt_ms / 1000.0 - _QRS_ONSET_BEFORE_R_S) * fs)) if np.isfinite(qt_ms) else -1
    first = r_index + int(round(_T_SEARCH_START_S * fs))
    if stop <= first:
        return np.full(beat.shape[0], np.nan)
    low, high = (max(0, r_index + int(round(t * fs))) for t in _PR_SEGMENT_S)
    deviation = beat[:, first : min(stop, beat.shape[-1])] - np.median(beat[:, low:high], axis=-1, keepdims=True)
    return np.take_along_axis(deviation, np.abs(deviation).argmax(axis=-1)[:, None], axis=-1)[:, 0]
