"""WFDB writer: round trip with wfdb on a real record, synthetic marker, sidecar, atomicity, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import wfdb
from monai.transforms import LoadImage

from monai_gen.data.ecg_meta import STANDARD_LEADS, ecg_sampling_rate
from monai_gen.data.ecg_readers import WFDBReader
from monai_gen.data.wfdb_writer import write_wfdb


def test_round_trip_of_a_real_record_within_half_an_adc_step(shared_data, tmp_path):
    ecg = LoadImage(reader=WFDBReader(), image_only=True)(shared_data / "ecg/cinc2021/E07501.hea")
    header, data, sidecar = write_wfdb(ecg, tmp_path / "synthetic_0001", provenance={"model_id": "m", "seed": 7, "conditions": {"qt": 400}})
    assert header.name == "synthetic_0001.hea" and data.is_file()
    record = wfdb.rdrecord(str(tmp_path / "synthetic_0001"))
    assert record.fs == 500 and record.sig_name == list(STANDARD_LEADS) and record.units == ["mV"] * 12
    half_step = 0.5 / np.asarray(record.adc_gain)
    assert (np.abs(record.p_signal.T - ecg.numpy()).max(axis=1) <= half_step + 1e-9).all()
    assert any("SYNTHETIC" in c for c in record.comments)
    meta = json.loads(sidecar.read_text())
    assert meta["synthetic"] is True and meta["seed"] == 7 and meta["conditions"] == {"qt": 400}
    again = LoadImage(reader=WFDBReader(), image_only=True)(header)
    assert ecg_sampling_rate(again) == 500.0


def test_plain_tensor_needs_a_rate_and_matching_lead_names(tmp_path):
    beat = torch.randn(3, 100)
    with pytest.raises(ValueError, match="pass fs"):
        write_wfdb(beat, tmp_path / "x")
    with pytest.raises(ValueError, match="3 leads but 2 lead names"):
        write_wfdb(beat, tmp_path / "x", fs=500, lead_names=["I", "II"])
    beat[1, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        write_wfdb(beat, tmp_path / "x", fs=500, lead_names=["I", "II", "V1"])
    assert not list(tmp_path.iterdir())


def test_bad_arguments_are_rejected_before_anything_is_written(tmp_path):
    ramp = np.ones((2, 50)) * np.arange(50)
    with pytest.raises(ValueError, match=r"bad: fs must be a positive sampling rate in Hz, got -1"):
        write_wfdb(ramp, tmp_path / "bad", fs=-1, lead_names=["I", "II"])
    with pytest.raises(ValueError, match=r"record name 'bad name' may hold only letters"):
        write_wfdb(ramp, tmp_path / "bad name", fs=500, lead_names=["I", "II"])
    with pytest.raises(TypeError, match="seed"):
        write_wfdb(ramp, tmp_path / "bad", fs=500, lead_names=["I", "II"], provenance={"seed": object()})
    assert list(tmp_path.iterdir()) == []


def test_a_crash_while_committing_leaves_no_header(tmp_path):
    (tmp_path / "rec.dat").mkdir()  # the signal file cannot be moved into place: the commit fails midway
    with pytest.raises(OSError):
        write_wfdb(np.ones((2, 50)) * np.arange(50), tmp_path / "rec", fs=500, lead_names=["I", "II"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.dat"]  # no header, no sidecar, no staging folder
    assert (tmp_path / "rec.dat").is_dir()


def test_numpy_input_with_a_flat_lead_round_trips(tmp_path):
    signal = np.stack([np.sin(np.linspace(0, 20, 1000)) * 2.5, np.zeros(1000), np.linspace(-0.1, 0.3, 1000)])
    header, _, sidecar = write_wfdb(signal, tmp_path / "rec.hea", fs=250, lead_names=["II", "V1", "V5"])
    record = wfdb.rdrecord(str(tmp_path / "rec"))
    assert record.fs == 250 and record.sig_name == ["II", "V1", "V5"] and header.name == "rec.hea"
    np.testing.assert_allclose(record.p_signal.T, signal, atol=0.5 / min(record.adc_gain) + 1e-12)
    assert json.loads(sidecar.read_text())["output"] == "rec.hea"
