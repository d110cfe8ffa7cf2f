"""ECG-specific checks of synthetic beats: QRS alignment, limb-lead consistency, window-edge artefacts and an
independent R-R reading."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.signal import find_peaks

from monai_gen.data.ecg_meta import STANDARD_LEADS
from monai_gen.transforms.ecg.array import LIMB_LEAD_COEFFICIENTS, DeriveLimbLeads

__all__ = ["qrs_alignment", "limb_lead_residual", "edge_step_ratio", "edge_deviation", "next_beat_rr_ms"]

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


def _as_beats(beats: np.ndarray, min_samples: int) -> np.ndarray:
    beats = np.asarray(beats, dtype=np.float64)
    beats = beats[None] if beats.ndim == 2 else beats
    if beats.ndim != 3 or beats.shape[-1] < min_samples:
        raise ValueError(f"beats must be (N, leads, samples) with at least {min_samples} samples, got shape {beats.shape}.")
    return beats


def edge_step_ratio(
    beats: np.ndarray,
    fs: float,
    *,
    r_index: int,
    edge_samples: int = 3,
    qrs_half_width_ms: float = 60.0,
    per_lead: bool = False,
) -> np.ndarray:
    """Per beat, the steepest step at the window's first / last samples relative to the steepest step of its QRS.

    A step is ``|x[i + 1] - x[i]|``; the edge step is the largest over the first and the last ``edge_samples``
    steps, the QRS step the largest within ``qrs_half_width_ms`` of ``r_index``, both over all leads (or lead by
    lead with ``per_lead``). A window cut from a recording continues smoothly into its neighbours, so real
    R-aligned beats score far below 1 (median about 0.07); a value above 1 is a beat that jumps more at its border
    than at its QRS, an artefact of the generator at the window border. Issue 10's "88 % of beats" is
    ``(edge_step_ratio(b, fs, r_index=r, edge_samples=1, per_lead=True) > 1).any(axis=1).mean()`` (per lead, a
    lead with a small QRS counts too, so some real beats score above 1 in one lead).

    Args:
        beats: ``(N, leads, samples)`` or ``(leads, samples)``.
        fs: sampling rate in Hz.
        r_index: the sample where R sits.
        edge_samples: steps counted at each end.
        qrs_half_width_ms: half-width of the QRS search window around ``r_index``.
        per_lead: one ratio per lead (the lead's edge step / the lead's QRS step) instead of one per beat.

    Returns:
        ``(N,)`` ratios (edge step / QRS step), ``(N, leads)`` with ``per_lead``.
    """
    beats = _as_beats(beats, 2 * edge_samples + 2)
    if not edge_samples >= 1 or not 0 <= r_index < beats.shape[-1]:
        raise ValueError(f"need edge_samples >= 1 and 0 <= r_index < {beats.shape[-1]}, got {edge_samples}, {r_index}.")
    steps = np.abs(np.diff(beats, axis=-1))
    axes = -1 if per_lead else (1, 2)
    edge = np.maximum(steps[..., :edge_samples].max(axis=axes), steps[..., -edge_samples:].max(axis=axes))
    half = max(1, int(round(qrs_half_width_ms / 1000.0 * fs)))
    qrs = steps[..., max(0, r_index - half) : r_index + half].max(axis=axes)
    return edge / np.maximum(qrs, 1e-12)


def edge_deviation(beats: np.ndarray, *, edge_samples: int = 10) -> np.ndarray:
    """Per beat, how far the first / last ``edge_samples`` samples stray from where the window's interior begins.

    For the start, the largest ``|x[i] - x[edge_samples]|`` over ``i < edge_samples`` and all leads; for the end,
    the same against ``x[-edge_samples - 1]``. In the units of ``beats`` (mV for the bundle's beats); a dip at the
    first samples or a spike at the last shows as a large value, a smooth continuation (real beats) as a small one.

    Args:
        beats: ``(N, leads, samples)`` or ``(leads, samples)``.
        edge_samples: samples at each end (10 = 20 ms at 500 Hz).

    Returns:
        ``(N, 2)``: the deviation at the start and at the end of each beat.
    """
    if not edge_samples >= 1:
        raise ValueError(f"edge_samples must be >= 1, got {edge_samples}.")
    beats = _as_beats(beats, 2 * edge_samples + 2)
    n = edge_samples
    start = np.abs(beats[..., :n] - beats[..., n : n + 1]).max(axis=(1, 2))
    end = np.abs(beats[..., -n:] - beats[..., -n - 1 : -n]).max(axis=(1, 2))
    return np.stack([start, end], axis=1)


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
