"""Waveform measures of ECG beats on LUDB's records: power above 40 Hz and first-difference SD rise with added noise,
the delineated T-wave amplitude agrees with the cardiologists' T peaks and falls when the T wave is removed, and a
P wave is found in sinus beats but mostly not in atrial fibrillation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from monai_gen.data.ludb import read_ludb_delineation, read_ludb_signal
from monai_gen.metrics.ecg import first_difference_sd, high_frequency_power_fraction, p_wave_fraction, t_wave_amplitude
from monai_gen.transforms.ecg import RemoveBaselineWander
from monai_gen.transforms.ecg.functional import beat_windows, detect_r_peaks

FS, R_INDEX, N_SAMPLES = 500.0, 200, 576
PRECORDIAL = ("v1", "v2", "v3", "v4", "v5", "v6")


def _records(shared_data: Path, rhythm: str, count: int) -> list[Path]:
    headers = sorted((shared_data / "ecg" / "ludb" / "data").glob("*.hea"), key=lambda h: int(h.stem))
    records = [h.with_suffix("") for h in headers]
    return [r for r in records if f"Rhythm: {rhythm}" in " ".join(wfdb.rdheader(str(r)).comments)][:count]


def _beats(record: Path, count: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` R-aligned windows (mV, baseline removed as the bundle does), their R samples and the signal."""
    signal, fs = read_ludb_signal(record)
    signal = RemoveBaselineWander(fs=fs)(signal)
    windows, peaks = beat_windows(signal, detect_r_peaks(signal, fs), n_samples=N_SAMPLES, r_index=R_INDEX)
    return windows[1 : 1 + count], peaks[1 : 1 + count], signal


@pytest.fixture(scope="module")
def sinus(shared_data):
    """Beats of 12 LUDB records in sinus rhythm, the experts' signed T amplitudes in V1..V6 (T peak - QRS onset
    level), and the same beats with the experts' T waves replaced by a straight line (T wave removed); beats where
    the experts left a QRS onset or a T wave unmarked in some precordial lead are left out."""
    beats, expert, flattened = [], [], []
    for record in _records(shared_data, "Sinus rhythm", 12):
        windows, peaks, signal = _beats(record)
        marks = read_ludb_delineation(record, leads=PRECORDIAL)
        for window, r in zip(windows, peaks, strict=True):
            amplitudes, flat = [], window.copy()
            for j, lead in enumerate(PRECORDIAL):
                qrs, t = marks[lead].qrs, marks[lead].t
                onset = qrs[np.argmin(np.abs(qrs[:, 1] - r)), 0]
                t = t[(t[:, 1] > r) & (t[:, 1] < r + 0.6 * FS)]
                if not len(t) or not np.isfinite([onset, *t[0]]).all():
                    break
                amplitudes.append(signal[6 + j, int(t[0, 1])] - signal[6 + j, int(onset) - 5 : int(onset) + 1].mean())
                a, b = int(t[0, 0]) - r + R_INDEX, int(t[0, 2]) - r + R_INDEX
                flat[6 + j, a : b + 1] = np.linspace(flat[6 + j, a], flat[6 + j, b], b - a + 1)
            else:
                beats.append(window)
                expert.append(amplitudes)
                flattened.append(flat)
    return np.stack(beats), np.array(expert), np.stack(flattened)


@pytest.fixture(scope="module")
def fibrillation(shared_data) -> np.ndarray:
    """Beats of LUDB's 13 records in atrial fibrillation."""
    return np.concatenate([_beats(record)[0] for record in _records(shared_data, "Atrial fibrillation", 13)])


def test_high_frequency_power_of_sines_and_noise():
    t = np.arange(N_SAMPLES) / FS
    slow, fast = np.sin(2 * np.pi * 10 * t)[None, None], np.sin(2 * np.pi * 100 * t)[None, None]
    assert high_frequency_power_fraction(slow, FS)[0] < 0.01 and high_frequency_power_fraction(fast, FS)[0] > 0.99
    noise = np.random.default_rng(0).normal(0, 0.1, (20, 12, N_SAMPLES))
    # white noise spreads its power evenly up to fs / 2: (250 - 40) / 250 of it lies above 40 Hz
    assert np.median(high_frequency_power_fraction(noise, FS)) == pytest.approx(210 / 250, abs=0.03)
    assert np.median(first_difference_sd(noise)) == pytest.approx(np.sqrt(2) * 0.1, rel=0.03)
    assert first_difference_sd(np.tile(np.arange(50.0), (12, 1)))[0] == pytest.approx(0.0)  # a ramp's steps are equal
    flat_lead = np.concatenate([slow, np.zeros_like(slow)], axis=1)  # a flat lead has no spectrum: left out
    assert high_frequency_power_fraction(flat_lead, FS)[0] == pytest.approx(high_frequency_power_fraction(slow, FS)[0])
    assert np.isnan(high_frequency_power_fraction(np.zeros((1, 12, N_SAMPLES)), FS)[0])
    with pytest.raises(ValueError, match=r"cutoff_hz must lie in \(0, fs / 2 = 250\) Hz, got 300"):
        high_frequency_power_fraction(noise, FS, cutoff_hz=300)


def test_noise_raises_the_power_above_40_hz_of_real_beats(sinus):
    beats = sinus[0]
    noisy = beats + np.random.default_rng(1).normal(0, 0.03, beats.shape)  # the 0.03 mV
    real, degraded = high_frequency_power_fraction(beats, FS), high_frequency_power_fraction(noisy, FS)
    assert real.shape == (len(beats),) and np.median(real) < 0.05
    assert np.median(degraded) > 3 * np.median(real)
    assert np.median(first_difference_sd(noisy)) > 2 * np.median(first_difference_sd(beats))


def test_t_wave_amplitude_agrees_with_the_experts_and_falls_without_a_t_wave(sinus):
    beats, expert, flattened = sinus
    measured = t_wave_amplitude(beats, FS, r_index=R_INDEX)
    assert measured.shape == (len(beats), 6) and np.isfinite(measured).mean() > 0.95
    found = np.isfinite(measured)
    assert np.corrcoef(measured[found], expert[found])[0, 1] > 0.95
    assert np.median(np.abs(measured[found] - expert[found])) < 0.02  # mV
    removed = t_wave_amplitude(flattened, FS, r_index=R_INDEX)
    upright = np.nanmedian(measured, axis=0) > 0.1
    assert upright.sum() >= 4
    assert np.all(np.nanmedian(np.abs(removed), axis=0)[upright] < 0.5 * np.nanmedian(measured, axis=0)[upright])
    inverted = t_wave_amplitude(-beats[:6], FS, r_index=R_INDEX)  # an inverted T wave reads negative
    assert np.nanmedian(np.abs(inverted + measured[:6])) < 0.01 and np.nanmedian(inverted) < -0.1
    one_lead = t_wave_amplitude(beats[:2], FS, r_index=R_INDEX, leads=(10,))
    np.testing.assert_allclose(one_lead[:, 0], measured[:2, 4])  # V5 alone reads as among V1..V6


def test_p_waves_are_found_in_sinus_beats_and_mostly_not_in_atrial_fibrillation(sinus, fibrillation):
    in_sinus, in_af = p_wave_fraction(sinus[0], FS, r_index=R_INDEX), p_wave_fraction(fibrillation, FS, r_index=R_INDEX)
    assert in_sinus.shape == (len(sinus[0]),) and np.all((in_sinus >= 0) & (in_sinus <= 1))
    assert np.mean(in_sinus >= 0.5) > 0.9 and np.mean(in_af >= 0.5) < 0.6
    assert np.median(in_af) < np.median(in_sinus) - 0.3
    early = np.roll(sinus[0][:4], -150, axis=-1)  # R no longer at r_index: no QRS there, no P wave counted
    assert np.all(p_wave_fraction(early, FS, r_index=R_INDEX) < 0.2)
