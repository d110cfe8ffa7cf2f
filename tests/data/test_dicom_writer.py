"""write_dicom_series: SimpleITK reads the written series with the source geometry; fresh UIDs, synthetic
marks, no source identifier, atomic under SIGKILL, provenance sidecar, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage

from monai_gen.data.dicom_series import LoadDICOMSeries
from monai_gen.data.dicom_writer import write_dicom_series

TCIA = "brain_mri/tcia_vs_seg_001_t1c"
CT_J2K = "ct/totalsegmentator/example_ct_dicom"
# tags whose source values must never reach a synthetic file
_IDENTIFYING = (
    "PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "StudyID", "AccessionNumber",
    "InstitutionName", "InstitutionAddress", "StationName", "ReferringPhysicianName", "OperatorsName",
    "DeviceSerialNumber", "StudyDescription", "SeriesDescription",
)


def _sitk_series(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _assert_same_geometry(written, ref):
    assert written.GetSize() == ref.GetSize()
    np.testing.assert_allclose(written.GetSpacing(), ref.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetDirection(), ref.GetDirection(), atol=1e-6)


def _source_identifiers(folder):
    values = set()
    for f in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        for element in ds.iterall():
            if element.VR == "UI" and not str(element.value).startswith("1.2.840.10008"):  # not standard UIDs
                values.add(str(element.value))
        values.update(str(ds[t].value) for t in _IDENTIFYING if t in ds and str(ds[t].value).strip())
    return values


def test_tcia_written_back_identical_geometry_no_source_identifier(shared_data, tmp_path):
    source = shared_data / TCIA
    volume = LoadDICOMSeries()(source)
    files = write_dicom_series(volume, tmp_path / "synthetic", provenance={"model_id": "none", "seed": 0})
    slices, sidecar = files[:-1], files[-1]
    assert len(slices) == 120 and sidecar == tmp_path / "synthetic.json"
    ref, written = _sitk_series(source), _sitk_series(tmp_path / "synthetic")
    _assert_same_geometry(written, ref)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(ref))  # int16: exact
    secret = _source_identifiers(source)
    assert len(secret) > 5
    uids = set()
    for f in slices[::7]:
        raw = f.read_bytes()
        assert not [s for s in secret if s.encode() in raw], f"{f.name} contains a source identifier"
        ds = pydicom.dcmread(f)
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.SeriesDescription.startswith("SYNTHETIC")
        assert "SYNTHETIC" in ds.ImageComments and str(ds.PatientName) == "SYNTHETIC^DATA"
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        uids.add(ds.SOPInstanceUID)
        assert len({ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID, ds.SOPInstanceUID}) == 4
    assert len(uids) == len(slices[::7])
    record = json.loads(sidecar.read_text())
    assert record["synthetic"] is True and record["model_id"] == "none" and record["output"] == "synthetic"


def test_fresh_uids_for_every_write(shared_data, tmp_path):
    volume = LoadDICOMSeries()(shared_data / CT_J2K)
    first = write_dicom_series(volume, tmp_path / "a", modality="CT")[0]
    second = write_dicom_series(volume, tmp_path / "b", modality="CT")[0]
    a, b = pydicom.dcmread(first), pydicom.dcmread(second)
    for tag in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPInstanceUID"):
        assert a[tag].value != b[tag].value
    assert a.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and a.RescaleType == "HU"
    np.testing.assert_array_equal(  # HU stored exactly as int16
        sitk.GetArrayFromImage(_sitk_series(tmp_path / "a")), sitk.GetArrayFromImage(_sitk_series(shared_data / CT_J2K))
    )


def test_float_volume_with_left_handed_nifti_affine(shared_data, tmp_path):
    """IXI (sagittal, left-handed): every voxel keeps its world position; float intensities within half a step."""
    path = sorted((shared_data / "brain_mri/ixi10_2mm/nifti").glob("*.nii.gz"))[0]
    image = LoadImage(image_only=True, ensure_channel_first=True)(path) * 0.37 - 5.0
    write_dicom_series(image, tmp_path / "ixi")
    back = LoadDICOMSeries()(tmp_path / "ixi")
    tolerance = float(image.max() - image.min()) / 131070
    np.testing.assert_allclose(back[0].numpy(), image[0].numpy()[:, :, ::-1], atol=tolerance * 1.01, rtol=0)
    n = image.shape[-1]
    expected = image.affine.numpy().copy()
    expected[:3, 3] += (n - 1) * expected[:3, 2]  # slices reversed: same voxels, right-handed order
    expected[:3, 2] *= -1
    np.testing.assert_allclose(back.affine.numpy(), expected, atol=1e-4)


def test_array_with_lps_affine_matches_simpleitk_geometry(tmp_path):
    data = np.arange(6 * 5 * 4, dtype=np.float32).reshape(1, 6, 5, 4)
    lps = np.array([[0.0, 0, -2.5, -30], [0.8, 0, 0, 12], [0, -0.6, 0, 40], [0, 0, 0, 1]])  # right-handed
    write_dicom_series(data, tmp_path / "arr", affine=lps, space="LPS")
    written = _sitk_series(tmp_path / "arr")
    assert written.GetSize() == (6, 5, 4)
    np.testing.assert_allclose(written.GetSpacing(), [0.8, 0.6, 2.5])
    np.testing.assert_allclose(written.GetOrigin(), [-30, 12, 40])
    np.testing.assert_allclose(np.reshape(written.GetDirection(), (3, 3)), lps[:3, :3] / [0.8, 0.6, 2.5], atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written).transpose(2, 1, 0), data[0])


_KILL_SCRIPT = """
import sys, numpy as np
from monai_gen.data.dicom_writer import write_dicom_series
write_dicom_series(np.random.default_rng(0).normal(size=(1, 256, 256, 400)), sys.argv[1])
"""


def test_sigkill_mid_write_leaves_no_partial_series(tmp_path):
    out = tmp_path / "series"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(out)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob(".staging-*/*.dcm")):
        time.sleep(0.01)
    staged = len(list(out.glob(".staging-*/*.dcm")))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < staged < 400, "the writer was not caught mid-write"
    assert list(out.glob("*.dcm")) == [] and not (tmp_path / "series.json").exists()
    assert [f for f in out.iterdir() if not f.name.startswith(".staging-")] == []


def test_errors_name_the_problem(tmp_path):
    good = MetaTensor(torch.zeros(1, 4, 4, 3))
    with pytest.raises(ValueError, match=r"\(1, x, y, z\) volume, got shape \(4, 4, 3\)"):
        write_dicom_series(np.zeros((4, 4, 3)), tmp_path / "a")
    with pytest.raises(ValueError, match="NaN"):
        write_dicom_series(np.full((1, 2, 2, 2), np.nan), tmp_path / "b")
    with pytest.raises(ValueError, match="orthogonal"):
        write_dicom_series(good, tmp_path / "c", affine=np.array([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]))
    with pytest.raises(ValueError, match="PET"):
        write_dicom_series(good, tmp_path / "d", modality="PET")
    with pytest.raises(TypeError, match="'bad'"):
        write_dicom_series(good, tmp_path / "e", provenance={"bad": object()})
    assert list(tmp_path.iterdir()) == []
    write_dicom_series(good, tmp_path / "f")
    with pytest.raises(ValueError, match="already holds .dcm files"):
        write_dicom_series(good, tmp_path / "f")
