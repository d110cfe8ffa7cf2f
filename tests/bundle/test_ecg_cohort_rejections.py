"""Records that must never reach a beat cohort are rejected, each with its file and its reason."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import wfdb

from monai_gen.bundle.ecg_cohort import build_beat_cohort
from monai_gen.data.ecg_meta import STANDARD_LEADS


def _write(folder, name, signal_mv, fs, *, gain=1000.0):
    """A 12-lead WFDB record of ``signal_mv`` (12, samples) in mV."""
    wfdb.wrsamp(name, fs=fs, units=["mV"] * 12, sig_name=list(STANDARD_LEADS), p_signal=np.asarray(signal_mv).T,
                fmt=["32"] * 12, adc_gain=[gain] * 12, baseline=[0] * 12, write_dir=str(folder))
    return folder / f"{name}.hea"


@pytest.fixture
def noise_records(tmp_path):
    """Ten seconds of Gaussian noise recorded at 50 Hz, at 500 Hz, and at 500 Hz scaled to +-2000 mV."""
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.3, size=(12, 5000))
    return [
        _write(tmp_path, "noise50", rng.normal(0, 0.3, size=(12, 500)), 50),
        _write(tmp_path, "noise500", noise, 500),
        _write(tmp_path, "huge", noise / np.abs(noise).max() * 2000, 500, gain=10.0),
    ]


def test_noise_yields_no_beats_and_every_file_is_named_with_its_reason(noise_records, shared_data, ecg_preparation,
                                                                       caplog):
    with caplog.at_level(logging.WARNING):
        cohort = build_beat_cohort([*noise_records, shared_data / "ecg/cinc2021/E07501.hea"], **ecg_preparation,
                                   max_beats_per_record=4)
    assert cohort.subjects() == ["E07501"]
    with pytest.raises(ValueError, match="no usable ECG beats in 3 records; every one was rejected") as info:
        build_beat_cohort(noise_records, **ecg_preparation)
    message = str(info.value)
    for path in noise_records:
        assert f"{path}: fails the ECG signal-quality gate" in message, path.name


def test_a_record_in_microvolts_labelled_millivolts_is_rejected_for_its_amplitude(shared_data, ecg_preparation, tmp_path):
    signal = wfdb.rdrecord(str(shared_data / "ecg/cinc2021/E07500")).p_signal.T * 1000.0  # uV written as mV
    path = _write(tmp_path, "E07500_uv", signal, 500, gain=1.0)
    with pytest.raises(ValueError, match=r"E07500_uv\.hea: all \d+ beats exceed \+-10 mV \(up to \d+ mV\)"):
        build_beat_cohort([path], **ecg_preparation)


def test_records_the_preparation_rejects_are_named_with_the_transform_s_own_reason(tmp_path, ecg_preparation):
    absent, not_ecg = tmp_path / "absent.hea", tmp_path / "notes.dcm"
    not_ecg.write_text("not a DICOM file")
    with pytest.raises(ValueError, match="every one was rejected") as info:
        build_beat_cohort([absent, not_ecg], **ecg_preparation)
    message = str(info.value)
    assert f"{absent}: ECG file {absent} does not exist" in message
    assert f"{not_ecg}: not an ECG file" in message and "applying transform" not in message
    assert f"{not_ecg}: {not_ecg}" not in message  # the file is named once
