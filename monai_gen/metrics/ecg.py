"""ECG-specific checks of synthetic beats: limb-lead consistency and an independent R-R reading."""

from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks

from monai_gen.data.ecg_meta import STANDARD_LEADS
from monai_gen.transforms.ecg.array import LIMB_LEAD_COEFFICIENTS

__all__ = ["limb_lead_residual", "next_beat_rr_ms"]

# channel of each derived limb lead (III, aVR, aVL, aVF) in the standard order -> (a, b) of a * I + b * II
_DERIVED = {STANDARD_LEADS.index(name): ab for name, ab in LIMB_LEAD_COEFFICIENTS.items()}


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
    if beats.ndim != 3 or beats.shape[1] < 6:
        raise ValueError(f"beats must be (N, 12, samples) in standard lead order, got shape {beats.shape}.")
    lead_i, lead_ii = beats[:, 0], beats[:, 1]
    residual = np.stack([beats[:, k] - (a * lead_i + b * lead_ii) for k, (a, b) in _DERIVED.items()], axis=1)
    recorded = beats[:, list(_DERIVED)]
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
