"""R-peak detection and median beats on real records and on neurokit2 simulations at known heart rates."""

from __future__ import annotations

import neurokit2 as nk
import numpy as np
import pytest
import wfdb.processing

from monai_gen.transforms.ecg.functional import beat_windows, detect_r_peaks, median_beat


def test_r_peaks_agree_with_an_independent_detector_on_real_records(cinc_signals):
    offsets = []
    for signal in cinc_signals.values():
        ours = detect_r_peaks(signal, 500)
        xqrs = wfdb.processing.xqrs_detect(signal[1], 500, verbose=False)
        if xqrs.size < 3:
            continue  # xqrs misses some low-amplitude lead-II records entirely; ours must still find beats
        assert abs(ours.size - xqrs.size) <= 3
        offsets.append(np.median([np.abs(xqrs - p).min() for p in ours]))
    # ours is aligned on the 12-lead QRS magnitude, xqrs on lead II alone: within 30 ms per record
    assert len(offsets) >= 45 and max(offsets) <= 15


@pytest.mark.parametrize("heart_rate", [40, 75, 150])
def test_detected_heart_rate_of_simulated_ecgs(heart_rate):
    signal = nk.ecg_simulate(duration=12, sampling_rate=500, heart_rate=heart_rate, method="multileads", random_state=1)
    peaks = detect_r_peaks(signal.to_numpy().T, 500)
    assert 60 * 500 / np.median(np.diff(peaks)) == pytest.approx(heart_rate, abs=2)


def test_median_beat_on_every_record_is_aligned_on_r(cinc_signals):
    for name, signal in cinc_signals.items():
        beat, used, rr_ms = median_beat(signal, 500, where=name)
        assert beat.shape == (12, 576) and used.size >= 5 and 350 < rr_ms < 1600
        magnitude = np.sqrt((beat**2).mean(axis=0))
        assert abs(int(np.argmax(magnitude)) - 200) <= 5, name


def test_median_of_a_tiled_real_beat_is_that_beat(cinc_signals):
    signal = cinc_signals["E07500"]
    peaks = detect_r_peaks(signal, 500)
    rr = int(np.median(np.diff(peaks)))
    one_cycle = signal[:, peaks[2] - 200 : peaks[2] - 200 + rr]
    tiled = np.tile(one_cycle, 10)
    beat, used, rr_ms = median_beat(tiled, 500, r_peaks=np.arange(10) * rr + 200)
    expected = np.tile(one_cycle, 2)[:, :576]
    np.testing.assert_allclose(beat, expected, atol=1e-12)
    assert rr_ms == pytest.approx(rr * 2.0)


def test_window_scales_with_rate_and_windows_stay_inside(cinc_signals):
    signal = np.repeat(cinc_signals["E07501"], 2, axis=1)  # a crude 1000 Hz copy
    beat, _, _ = median_beat(signal, 1000)
    assert beat.shape == (12, 1152)
    windows, kept = beat_windows(np.zeros((2, 1000)), np.array([10, 300, 990]), n_samples=100, r_index=40)
    assert kept.tolist() == [300] and windows.shape == (1, 2, 100)


def test_errors_name_the_problem(cinc_signals):
    signal = cinc_signals["E07500"].copy()
    with pytest.raises(ValueError, match="rec.hea: .* under 2 s"):
        median_beat(signal[:, :600], 500, where="rec.hea")
    signal[3, 10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        detect_r_peaks(signal, 500)
    with pytest.raises(ValueError, match="no R peaks"):
        detect_r_peaks(np.zeros((12, 5000)), 500)
    with pytest.raises(ValueError, match="only 2 complete beats"):
        median_beat(cinc_signals["E07500"], 500, r_peaks=np.array([1000, 2000]))
