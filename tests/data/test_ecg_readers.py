"""ECG readers on the real records: WFDB (CinC 2021, PTB), DICOM waveform (pydicom's 12-lead ECG), CPSC .mat."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pydicom
import pytest
import scipy.io
import torch
import wfdb
from monai.data import MetaTensor
from monai.transforms import LoadImage, LoadImaged
from pydicom.data import get_testdata_file

from monai_gen.data.ecg_meta import STANDARD_LEADS, ecg_sampling_rate, make_ecg, normalise_sex
from monai_gen.data.ecg_readers import CPSCMatReader, DICOMECGReader, WFDBReader, canonical_lead_name


def test_every_cinc2021_record_loads_as_the_ecg_contract(shared_data):
    headers = sorted((shared_data / "ecg" / "cinc2021").glob("*.hea"))
    assert len(headers) == 50
    loader = LoadImage(reader=WFDBReader(), image_only=True)
    for header in headers:
        ecg = loader(header)
        assert isinstance(ecg, MetaTensor) and ecg.shape == (12, 5000) and ecg.dtype == torch.float32
        assert ecg_sampling_rate(ecg) == 500.0
        assert ecg.meta["lead_names"] == list(STANDARD_LEADS) and ecg.meta["units"] == "mV"
        assert ecg.meta["record_id"] == header.stem
        comments = wfdb.rdheader(str(header.with_suffix(""))).comments
        assert ecg.meta["sex"] in ("male", "female")
        assert str(ecg.meta["sex"]).lower() in comments[1].lower()
        assert ecg.meta["dx_codes"] == comments[2].split(":")[1].strip().split(",")
        assert comments[0].startswith("Age:") and ecg.meta["age"] == float(comments[0].split(":")[1])
        expected = wfdb.rdrecord(str(header.with_suffix(""))).p_signal.T
        np.testing.assert_allclose(ecg.numpy(), expected, atol=1e-6)


def test_ptb_record_at_1000_hz_with_frank_leads(shared_data):
    data = LoadImaged(keys="ecg", reader=WFDBReader(), image_only=True)({"ecg": shared_data / "ecg/ptb_s0010_re/s0010_re.hea"})
    ecg = data["ecg"]
    assert ecg.shape == (15, 38400) and ecg_sampling_rate(ecg) == 1000.0
    assert ecg.meta["lead_names"][:12] == list(STANDARD_LEADS) and ecg.meta["lead_names"][12:] == ["vx", "vy", "vz"]
    assert ecg.meta["age"] == 81.0 and ecg.meta["sex"] == "female" and "dx_codes" not in ecg.meta


def test_dicom_waveform_ecg_in_mv_matches_pydicom_scaled_by_sensitivity():
    path = get_testdata_file("waveform_ecg.dcm")
    ecg = LoadImage(reader=DICOMECGReader(), image_only=True)(path)
    ds = pydicom.dcmread(path)
    group = ds.WaveformSequence[0]
    raw = np.frombuffer(group.WaveformData, dtype="<i2").reshape(-1, group.NumberOfWaveformChannels)
    sensitivity = np.array([float(c.ChannelSensitivity) * float(c.ChannelSensitivityCorrectionFactor) for c in group.ChannelDefinitionSequence])
    baseline = np.array([float(c.ChannelBaseline) for c in group.ChannelDefinitionSequence])
    expected_mv = ((raw + baseline) * sensitivity / 1000.0).T  # sensitivity unit is uV
    assert ecg.shape == (12, 10000) and ecg_sampling_rate(ecg) == 1000.0
    assert ecg.meta["lead_names"] == list(STANDARD_LEADS)
    np.testing.assert_allclose(ecg.numpy(), expected_mv, atol=1e-5)
    np.testing.assert_allclose(ecg.numpy(), ds.waveform_array(0).T / 1000.0, atol=1e-5)  # pydicom's own scaling
    assert 0.5 < float(ecg[1].abs().max()) < 5  # a QRS of a few mV, not uV


def test_dicom_reader_claims_only_ecg_dicoms_and_rejects_files_without_waveforms(tmp_path):
    assert DICOMECGReader().verify_suffix(get_testdata_file("waveform_ecg.dcm"))
    assert not DICOMECGReader().verify_suffix(get_testdata_file("CT_small.dcm"))
    with pytest.raises(ValueError, match=r"CT_small\.dcm holds no waveform data"):
        DICOMECGReader().read(get_testdata_file("CT_small.dcm"))
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not a dicom file at all")
    with pytest.raises(ValueError, match="broken.dcm cannot be read"):
        DICOMECGReader().read(broken)


def test_cpsc_mat_files_load_and_are_not_confused_with_cinc_mat_signals(shared_data):
    files = sorted((shared_data / "ecg" / "cpsc2018").glob("*.mat"))
    assert len(files) == 10
    loader = LoadImage(reader=[WFDBReader(), CPSCMatReader()], image_only=True)
    for path in files:
        ecg = loader(path)
        assert ecg.shape[0] == 12 and ecg.shape[1] >= 5000 and ecg_sampling_rate(ecg) == 500.0
        assert ecg.meta["sex"] in ("male", "female") and 0 < ecg.meta["age"] < 110
    assert not CPSCMatReader().verify_suffix(shared_data / "ecg/cinc2021/E07500.mat")


def _write_record(folder, name="rec", n=2000):
    t = np.arange(n) / 500.0
    signal = np.stack([np.sin(2 * np.pi * 1.2 * t), 0.5 * np.cos(2 * np.pi * 1.2 * t), np.sin(2 * np.pi * 3 * t)], axis=1)
    wfdb.wrsamp(name, fs=500, units=["mV"] * 3, sig_name=["I", "II", "V1"], p_signal=signal, fmt=["16"] * 3, write_dir=str(folder))
    return folder / f"{name}.hea"


def test_wfdb_errors_name_the_file(tmp_path, shared_data):
    """Through MONAI's own LoadImage(reader=...), which used to bury them under "cannot find a suitable reader"."""
    with pytest.raises(FileNotFoundError, match="nothere.hea does not exist"):
        LoadImage(reader=WFDBReader())(tmp_path / "nothere.hea")
    header = _write_record(tmp_path)
    data = (tmp_path / "rec.dat").read_bytes()
    (tmp_path / "rec.dat").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"rec\.hea: its signal file is truncated"):
        LoadImage(reader=WFDBReader())(header)
    (tmp_path / "rec.dat").unlink()
    with pytest.raises(FileNotFoundError, match=r"signal file .*rec\.dat is missing"):
        LoadImage(reader=WFDBReader())(header)
    shutil.copy(shared_data / "ecg/cinc2021/E07500.hea", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"E07500\.mat is missing"):
        LoadImage(reader=WFDBReader())(tmp_path / "E07500.hea")


def test_nan_and_flat_signals_are_rejected_with_the_lead_named():
    signal = np.random.default_rng(0).normal(size=(3, 100))
    signal[1, 5] = np.nan
    with pytest.raises(ValueError, match=r"x\.hea: leads \['II'\] contain NaN"):
        make_ecg(signal, 500, ["I", "II", "III"], source="x.hea")
    with pytest.raises(ValueError, match="every lead is flat"):
        make_ecg(np.zeros((3, 100)), 500, ["I", "II", "III"])
    with pytest.raises(ValueError, match="3 leads but 2 lead names"):
        make_ecg(np.ones((3, 100)), 500, ["I", "II"])


def test_canonical_lead_names():
    assert [canonical_lead_name(n) for n in ("avr", "Lead I (Einthoven)", "V1", "vx", "AVF")] == ["aVR", "I", "V1", "vx", "aVF"]


def test_sampling_rate_lives_in_the_affine_only():
    ecg = make_ecg(np.ones((2, 10)) * np.arange(10), 250, ["I", "II"])
    assert ecg.affine.tolist() == [[0.004, 0.0], [0.0, 1.0]] and ecg_sampling_rate(ecg) == 250.0
    assert "fs" not in ecg.meta
    with pytest.raises(TypeError, match="MetaTensor"):
        ecg_sampling_rate(torch.zeros(2, 10))


def test_nan_and_flat_records_on_disk_are_rejected_naming_the_file(tmp_path):
    signal = np.random.default_rng(0).normal(size=(1000, 3))
    signal[100:120, 2] = np.nan  # WFDB stores NaN as its invalid-sample code; rdrecord gives NaN back
    wfdb.wrsamp("gap", fs=500, units=["mV"] * 3, sig_name=["I", "II", "V1"], p_signal=signal, fmt=["16"] * 3,
                write_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"gap\.hea: leads \['V1'\] contain NaN"):
        LoadImage(reader=WFDBReader())(tmp_path / "gap.hea")
    wfdb.wrsamp("flat", fs=500, units=["mV"] * 2, sig_name=["I", "II"], p_signal=np.full((1000, 2), 0.25),
                fmt=["16"] * 2, adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"flat\.hea: every lead is flat"):
        LoadImage(reader=WFDBReader())(tmp_path / "flat.hea")


def test_cpsc_file_with_the_wrong_lead_count_or_no_struct(tmp_path):
    scipy.io.savemat(tmp_path / "eight.mat", {"ECG": {"sex": "Male", "age": 60, "data": np.ones((8, 5000))}})
    with pytest.raises(ValueError, match=r"eight\.mat: data must be 12 x samples, got shape \(8, 5000\)"):
        LoadImage(reader=CPSCMatReader())(tmp_path / "eight.mat")
    scipy.io.savemat(tmp_path / "other.mat", {"val": np.ones((12, 5000))})
    assert not CPSCMatReader().verify_suffix(tmp_path / "other.mat")
    with pytest.raises(ValueError, match=r"other\.mat cannot be read \(expected a struct ECG"):
        CPSCMatReader().read(tmp_path / "other.mat")


def test_ludb_headers_give_age_and_sex_for_every_record(shared_data):
    """LUDB writes ``#<age>: 51`` / ``#<sex>: F``; ages and sexes must equal the database's own ludb.csv."""
    folder = shared_data / "ecg" / "ludb"
    with open(folder / "ludb.csv", newline="", encoding="utf-8") as handle:
        expected = {row["ID"]: (row["Age"].strip(), normalise_sex(row["Sex"])) for row in csv.DictReader(handle)}
    headers = sorted((folder / "data").glob("*.hea"))
    assert len(headers) == len(expected) == 160
    loader = LoadImage(reader=WFDBReader(), image_only=True)
    for header in headers:
        ecg = loader(header)
        age, sex = expected[header.stem]
        assert ecg.meta["sex"] == sex, header.name
        assert ecg.meta["age"] == (float(age) if age.isdigit() else pytest.approx(90)), header.name  # ">89" is 90


def test_loadimage_with_a_designated_reader_raises_the_readers_own_error(tmp_path, shared_data):
    """A recognised file's error reaches LoadImage's caller; a file of another format is left to MONAI's readers."""
    reader = WFDBReader()
    record = reader.read(tmp_path / "nothere.hea")  # the error travels to get_data, outside LoadImage's fallback
    with pytest.raises(FileNotFoundError, match="nothere.hea does not exist"):
        reader.get_data(record)
    with pytest.raises(FileNotFoundError, match="nothere.hea does not exist"):
        LoadImaged("ecg", reader=WFDBReader())({"ecg": tmp_path / "nothere.hea"})
    nifti = shared_data / "ct/totalsegmentator/example_ct_sm.nii.gz"
    with pytest.raises(ValueError):
        reader.read(nifti)  # not a WFDB file: raised by read, so LoadImage tries its other readers
    assert LoadImage(reader=WFDBReader(), image_only=True)(nifti).ndim == 3
