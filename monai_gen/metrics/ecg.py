"""ECG-specific checks of synthetic beats: QRS alignment, limb-lead consistency and an independent R-R reading."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.signal import find_peaks

from monai_gen.data.ecg_meta import STANDARD_LEADS
from monai_gen.transforms.ecg.array import LIMB_LEAD_COEFFICIENTS, DeriveLimbLeads

__all__ = ["qrs_alignment", "limb_lead_residual", "next_beat_rr_ms"]

# channels of the derived limb leads (III, aVR, aVL, aVF) in the standard order
_DERIVED = [STANDARD_LEADS.index(name) for name in LIMB_LEAD_COEFFICIENTS]


def qrs_alignment(beats: np.ndarray, fs: float, *, r_index: int, tolerance_ms: float = 30.0) -> np.ndarray:
    """Per beat, how strongly the QRS sits at ``r_index``: the 12-lead slope energy within ``tolerance_ms`` of it
    divided by the beat's maximum slope energy (1: the steepest deflection is the QRS at R).

    The slope energy is the sum over leads of ``|dx/dt|`` smoothed over 18 ms; the QRS is the steepest part of a
    beat. Real R-aligned beats score >= 0.5 (a second QRS later in the window can match the first); a generator
    that puts QRS complexes anywhere scores lower.

    Args:
        beats: ``(N, leads, samples)`` or ``(leads, samples)``.
        fs: sampling rate in Hz.
        r_index: the sample where R belongs.
    """
    beats = np.asarray(beats, dtype=np.float64)
    beats = beats[None] if beats.ndim == 2 else beats
    if beats.ndim != 3 or not 0 <= r_index < beats.shape[-1]:
        raise ValueError(f"beats must be (N, leads, samples) holding r_index={r_index}, got shape {beats.shape}.")
    slope = uniform_filter1d(np.abs(np.diff(beats, axis=-1)).sum(axis=1), size=max(1, round(0.018 * fs)), axis=-1)
    half = int(round(tolerance_ms / 1000.0 * fs))
    near = slope[:, max(0, r_index - half) : r_index + half + 1].max(axis=1)
    return near / np.maximum(slope.max(axis=1), 1e-12)


def limb_lead_residual(beats: np.ndarray) -> np.ndarray:
    """Relative violation of Einthoven's and Goldberger's laws per beat.

    III = II - I, aVR = -(I + II) / 2, aVL = I - II / 2, aVF = II - I / 2 hold exactly for a recorded ECG
    (up to quantisation and filtering). Returns, per beat, the RMS of (recorded - derived) over leads III, aVR,
    aVL, aVF divided by the RMS of those leads: ~0 for real ECGs, larger when a generator treats the limb leads
    as independent.

    Args:
        beats: ``(N, 12, samples)`` or ``(12, samples)`` in standard lead order.
    """
    beats = np.asarray(beats, dtype=np.float64)
    beats = beats[None] if beats.ndim == 2 else beats
    if beats.ndim != 3 or beats.shape[1] != len(STANDARD_LEADS):
        raise ValueError(f"beats must be (N, 12, samples) in standard lead order, got shape {beats.shape}.")
    recorded = beats[:, _DERIVED]
    residual = recorded - DeriveLimbLeads()(beats)[:, _DERIVED]
    return np.sqrt((residual**2).mean(axis=(1, 2))) / np.maximum(np.sqrt((recorded**2).mean(axis=(1, 2))), 1e-9)


def next_beat_rr_ms(beat: np.ndarray, fs: float, *, r_index: int) -> float | None:
    """RR interval in ms read from a second QRS inside an R-aligned window, or None when there is none.

    The second QRS is the first peak of the 12-lead RMS magnitude at least 250 ms after R that reaches half of
    R's magnitude. Used so a synthetic beat's measurement needs nothing from the requested conditions.
    """
    magnitude = np.sqrt((np.asarray(beat, dtype=np.float64) ** 2).mean(axis=0))
    start = r_index + int(round(0.25 * fs))
    if start >= magnitude.size:
        return None
    peaks, _ = find_peaks(magnitude[start:], height=0.5 * magnitude[r_index], distance=int(0.2 * fs))
    return float((peaks[0] + start - r_index) / fs * 1000.0) if peaks.size else None
