"""ECG measurements against LUDB's cardiologists (held-out records), a device (pydicom's 12-lead ECG), physiology and
test-retest on real records."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from scipy.signal import resample_poly

from monai_gen.data.ecg_readers import DICOMECGReader
from monai_gen.data.ludb import (
    cross_validation_folds,
    expert_intervals,
    ludb_record_ids,
    read_ludb_delineation,
    read_ludb_signal,
)
from monai_gen.transforms.ecg.delineation import load_segmenter
from monai_gen.transforms.ecg.functional import median_beat
from monai_gen.transforms.ecg.measurements import measure_ecg, measure_median_beat


@pytest.fixture(scope="module")
def ludb_held_out(shared_data):
    """(measured, experts) of 16 LUDB records of fold 0, which the shipped delineator never saw (trained on folds 1-4)."""
    folder = shared_data / "ecg" / "ludb" / "data"
    held_out = cross_validation_folds(ludb_record_ids(folder))[0][:16]
    measured = [measure_ecg(read_ludb_signal(folder / str(i))[0], 500.0).as_dict() for i in held_out]
    experts = [expert_intervals(read_ludb_delineation(folder / str(i)), 500.0) for i in held_out]
    return measured, experts


@pytest.mark.parametrize(
    ("field", "max_mae", "min_r"),
    [("qrs_ms", 10, 0.85), ("qt_ms", 15, 0.9), ("pr_ms", 12, 0.8), ("heart_rate_bpm", 2, 0.95)],
)
def test_agrees_with_ludb_cardiologists_on_held_out_records(ludb_held_out, field, max_mae, min_r):
    # the neurokit2 prominence method this replaced: QRS MAE 34 ms, R -0.38; QT MAE 18 ms, R 0.85 on these records
    measured = np.array([m[field] for m in ludb_held_out[0]])
    experts = np.array([e[field] for e in ludb_held_out[1]])
    has_expert = np.isfinite(experts)
    assert np.isfinite(measured[has_expert]).mean() >= 0.9
    ok = has_expert & np.isfinite(measured)
    assert np.mean(np.abs(measured[ok] - experts[ok])) <= max_mae
    assert np.corrcoef(measured[ok], experts[ok])[0, 1] >= min_r


def test_wide_qrs_is_read_wide(ludb_held_out):
    # records 13, 44, 51: experts 161, 134, 158 ms; today's method read 43 ms, NaN, 52 ms. Still read somewhat short
    # (130-142 ms): the widest complexes are rare in the 128 training records.
    wide = [(m["qrs_ms"], e["qrs_ms"]) for m, e in zip(*ludb_held_out, strict=True) if e["qrs_ms"] >= 120]
    assert len(wide) == 3
    for ours, expert in wide:
        assert ours >= 120 and ours == pytest.approx(expert, abs=30)


def test_unmeasurable_beats_are_nan_and_missing_weights_are_named(tmp_path):
    noise = np.random.default_rng(0).normal(0, 0.02, (12, 576))
    measured = measure_median_beat(noise, 500, r_index=200, rr_ms=1000.0)
    assert np.isnan(measured.qrs_ms) and np.isnan(measured.qt_ms) and np.isnan(measured.pr_ms)
    flat = measure_median_beat(np.zeros((12, 576)), 500, r_index=200, rr_ms=1000.0)
    assert np.isnan(flat.qrs_ms) and np.isnan(flat.qt_ms) and flat.heart_rate_bpm == pytest.approx(60)
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors: no delineator weights"):
        load_segmenter(tmp_path / "nowhere.safetensors")


def device_measurements(path) -> dict[str, float]:
    ds = pydicom.dcmread(path)
    values = {}
    for item in ds.WaveformAnnotationSequence:
        if "ConceptNameCodeSequence" in item and "NumericValue" in item:
            values[item.ConceptNameCodeSequence[0].CodeMeaning] = float(item.NumericValue)
    return values


@pytest.mark.parametrize("rate", [500, 1000])
def test_against_the_device_measurements_of_a_real_dicom_ecg(rate):
    path = get_testdata_file("waveform_ecg.dcm")
    device = device_measurements(path)
    signal = DICOMECGReader().read(path)[0].numpy()
    if rate == 500:
        signal = resample_poly(signal, 1, 2, axis=1)
    ours = measure_ecg(signal, rate)
    # tolerances reached (the LUDB-validated measurement reads QRS +9 ms, QT +12-14 ms, PR -13 ms against this device)
    assert ours.rr_ms == pytest.approx(device["RR Interval"], abs=10)
    assert ours.heart_rate_bpm == pytest.approx(60000 / device["RR Interval"], abs=1)
    assert ours.qrs_ms == pytest.approx(device["QRS Duration"], abs=10)
    assert ours.qt_ms == pytest.approx(device["QT Interval"], abs=35)
    assert ours.pr_ms == pytest.approx(device["PR Interval"], abs=20)
    assert ours.qtc_ms == pytest.approx(ours.qt_ms / np.sqrt(ours.rr_ms / 1000))


def test_qt_shortens_with_heart_rate_and_qtc_removes_most_of_it(cinc_signals):
    measured = [measure_ecg(signal, 500) for signal in list(cinc_signals.values())[::2]]
    hr = np.array([m.heart_rate_bpm for m in measured])
    qt = np.array([m.qt_ms for m in measured])
    qtc = np.array([m.qtc_ms for m in measured])
    ok = np.isfinite(qt)
    assert ok.mean() >= 0.95
    r_qt, r_qtc = np.corrcoef(hr[ok], qt[ok])[0, 1], np.corrcoef(hr[ok], qtc[ok])[0, 1]
    assert r_qt < -0.7 and abs(r_qtc) < abs(r_qt) - 0.3
    qrs = np.array([m.qrs_ms for m in measured])
    assert np.nanmin(qrs) >= 40 and np.nanmax(qrs) <= 250 and np.isfinite(qrs).mean() >= 0.8


@pytest.mark.slow
def test_first_and_last_five_seconds_agree(cinc_signals):
    halves = [(measure_ecg(s[:, :2500], 500), measure_ecg(s[:, 2500:], 500)) for s in cinc_signals.values()]
    for field, floor in (("qrs_ms", 0.8), ("qt_ms", 0.85), ("heart_rate_bpm", 0.9)):
        a = np.array([getattr(x, field) for x, _ in halves])
        b = np.array([getattr(y, field) for _, y in halves])
        ok = np.isfinite(a) & np.isfinite(b)
        assert ok.mean() >= 0.85, field
        assert np.corrcoef(a[ok], b[ok])[0, 1] >= floor, field


def test_median_beat_measurement_without_rr_and_errors(cinc_signals):
    beat, _, rr_ms = median_beat(cinc_signals["E07500"], 500)  # 57 bpm: no second QRS in the window
    with_rr = measure_median_beat(beat, 500, r_index=200, rr_ms=rr_ms)
    without = measure_median_beat(beat, 500, r_index=200)
    assert np.isnan(without.heart_rate_bpm) and np.isnan(without.qtc_ms)
    assert without.qrs_ms == with_rr.qrs_ms and without.qt_ms == with_rr.qt_ms
    fridericia = measure_median_beat(beat, 500, r_index=200, rr_ms=rr_ms, qtc_formula="fridericia")
    assert fridericia.qtc_ms == pytest.approx(with_rr.qt_ms / np.cbrt(rr_ms / 1000))
    with pytest.raises(ValueError, match="qtc_formula"):
        measure_median_beat(beat, 500, r_index=200, qtc_formula="hodges")
    with pytest.raises(ValueError, match="NaN"):
        measure_median_beat(np.full((12, 576), np.nan), 500, r_index=200)
