from __future__ import annotations

import numpy as np
import pytest
import wfdb
from scipy.signal import find_peaks

from monai_gen.transforms.ecg.functional import median_beat
from monai_gen.visualize.rhythm import assemble_rhythm, t_wave_amplitude

FS = 500
R_INDEX = 200


@pytest.fixture(scope="module")
def beat(shared_data):
    """The (12, 576) median beat of the real record E07500 (R at sample 200)."""
    signal = wfdb.rdrecord(str(shared_data / "ecg/cinc2021/E07500")).p_signal.T
    return median_beat(signal, FS)[0]


@pytest.mark.parametrize("heart_rate", [40.0, 50.0, 70.0, 120.0, 150.0])
def test_r_peaks_every_rr_whatever_the_window(beat, heart_rate):
    rr_s = 60.0 / heart_rate
    strip, peaks = assemble_rhythm(beat, FS, r_index=R_INDEX, rr_s=rr_s, duration_s=4.0)
    assert strip.shape == (12, 4 * FS)
    assert np.diff(peaks) == pytest.approx(round(rr_s * FS))
    magnitude = np.sqrt(np.mean((strip - np.median(strip, axis=1, keepdims=True)) ** 2, axis=0))  # QRS dominates
    found, _ = find_peaks(magnitude, height=0.6 * magnitude.max(), distance=int(0.2 * FS))  # an independent R detector
    np.testing.assert_allclose(found, peaks, atol=0.01 * FS)
    rise = np.abs(np.diff(beat[:, 20:-20], axis=1)).max(axis=1)
    assert (np.abs(np.diff(strip, axis=1)).max(axis=1) <= 1.05 * rise).all()  # no step at the joins: QRS is steepest


def test_one_cycle_of_the_beat_is_kept(beat):
    strip, peaks = assemble_rhythm(beat, FS, r_index=R_INDEX, rr_s=0.8, duration_s=3.0)
    start = R_INDEX - peaks[0]
    cycle = beat[:, start : start + 400]
    ramp = (cycle[:, -1:] - cycle[:, :1]) * np.linspace(0.0, 1.0, 400)
    np.testing.assert_allclose(strip[:, :400], cycle - ramp)
    np.testing.assert_allclose(strip[:, 400:800], strip[:, :400])  # every cycle is the same beat


def test_t_wave_amplitude_of_a_known_wave():
    time = np.arange(576) / FS - R_INDEX / FS
    t_wave = 0.3 * np.exp(-0.5 * ((time - 0.3) / 0.04) ** 2)
    qrs = 1.2 * np.exp(-0.5 * (time / 0.01) ** 2)
    beat = np.stack([0.1 + qrs + t_wave, 0.1 + qrs - t_wave])  # upright and inverted T on a 0.1 mV offset
    np.testing.assert_allclose(t_wave_amplitude(beat, FS, r_index=R_INDEX, qt_ms=420.0), [0.3, -0.3], atol=1e-3)
    assert np.isnan(t_wave_amplitude(beat, FS, r_index=R_INDEX, qt_ms=float("nan"))).all()


def test_errors(beat):
    with pytest.raises(ValueError, match="rr_s"):
        assemble_rhythm(beat, FS, r_index=R_INDEX, rr_s=0.0)
    with pytest.raises(ValueError, match="r_index must lie inside"):
        assemble_rhythm(beat, FS, r_index=600, rr_s=1.0)
    broken = beat.copy()
    broken[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        assemble_rhythm(broken, FS, r_index=R_INDEX, rr_s=1.0)
