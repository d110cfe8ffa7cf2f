"""Sample writers as config components: a real IXI slice and volume, a real ECG beat; files read back by other tools."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
import wfdb
from monai.transforms import LoadImage
from PIL import Image

from monai_gen.data.sample_writers import (
    DicomSeriesSampleWriter,
    NiftiSampleWriter,
    PNGSampleWriter,
    SampleWriters,
    WFDBSampleWriter,
)

PROVENANCE = {"model_id": "m-1", "seed": 3, "conditions": {"age": 70.0, "sex": "female"}}


@pytest.fixture(scope="module")
def ixi_volume(shared_data):
    path = sorted((shared_data / "brain_mri/ixi10_2mm/nifti").glob("*.nii.gz"))[0]
    return LoadImage(image_only=True, ensure_channel_first=True)(path)  # (1, x, y, z) at 2 mm


def test_nifti_and_png_of_a_real_slice_with_its_2mm_spacing_and_one_sidecar(ixi_volume, tmp_path):
    axial = ixi_volume[..., ixi_volume.shape[-1] // 2].as_tensor()  # (1, x, y)
    writer = SampleWriters([NiftiSampleWriter(spacing_mm=(2.0, 2.0)), PNGSampleWriter()])
    files = writer(axial, tmp_path / "slice_0", PROVENANCE)
    assert [f.name for f in files] == ["slice_0.nii.gz", "slice_0.json", "slice_0.png"]
    back = nib.load(files[0])
    np.testing.assert_allclose(back.header.get_zooms()[:2], (2.0, 2.0))
    np.testing.assert_array_equal(np.squeeze(back.get_fdata(dtype=np.float32)), axial[0].numpy())
    png = np.asarray(Image.open(files[2]))
    assert png.shape == (axial.shape[2], axial.shape[1]) and png.dtype == np.uint8 and png.std() > 20  # anatomy, not flat
    record = json.loads(files[1].read_text())
    assert record["synthetic"] is True and record["conditions"] == PROVENANCE["conditions"]
    with pytest.raises(ValueError, match=r"spacing_mm \[2.0, 2.0, 2.0, 2.0\] does not match a sample of shape \(1, "):
        NiftiSampleWriter(spacing_mm=(2, 2, 2, 2))(axial, tmp_path / "bad", PROVENANCE)


def test_a_slice_with_its_thickness_is_a_2mm_one_slice_volume_marked_synthetic_with_its_conditions(ixi_volume, tmp_path):
    axial = ixi_volume[..., 40].as_tensor()  # (1, x, y) of a 2 mm volume
    provenance = {**PROVENANCE, "conditions": {"age": 70.0, "sex": "F", "slice_position": 0.6}}
    nifti, sidecar = NiftiSampleWriter(spacing_mm=(2.0, 2.0, 2.0))(axial, tmp_path / "slice_0", provenance)
    back = nib.load(nifti)
    assert back.shape == (*axial.shape[1:], 1) and back.header.get_zooms() == (2.0, 2.0, 2.0)
    np.testing.assert_array_equal(back.affine, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert nib.aff2axcodes(back.affine) == ("R", "A", "S")
    assert back.header["descrip"].item().decode() == "SYNTHETIC age=70 sex=F slice_position=0.6"
    np.testing.assert_array_equal(back.get_fdata(dtype=np.float32)[..., 0], axial[0].numpy())
    assert json.loads(sidecar.read_text())["conditions"]["slice_position"] == 0.6
    long = {"conditions": {f"condition_{i}": 1000.0 + i for i in range(8)}}
    nifti, _ = NiftiSampleWriter(spacing_mm=(2.0, 2.0))(axial, tmp_path / "slice_1", long)
    description = nib.load(nifti).header["descrip"].item().decode()
    assert len(description) == 80 and description.startswith("SYNTHETIC condition_0=1000 condition_1=1001")


def test_a_slice_as_dicom_has_its_spacing_and_thickness_and_synthetic_marks(ixi_volume, tmp_path):
    axial = ixi_volume[..., 40].as_tensor()
    writer = DicomSeriesSampleWriter(series_description="T1 axial slice", spacing_mm=(2.0, 2.0, 2.0))
    files = writer(axial, tmp_path / "slice_0", PROVENANCE)
    assert [f.name for f in files] == ["slice_0001.dcm", "slice_0_dicom.json"]
    ds = pydicom.dcmread(files[0])
    assert [float(v) for v in ds.PixelSpacing] == [2.0, 2.0] and float(ds.SliceThickness) == 2.0
    assert ds.SeriesDescription == "SYNTHETIC T1 axial slice" and "SYNTHETIC" in ds.ImageComments
    assert (ds.Rows, ds.Columns) == (axial.shape[2], axial.shape[1])
    np.testing.assert_allclose(ds.pixel_array.T * float(ds.RescaleSlope) + float(ds.RescaleIntercept), axial[0].numpy(),
                               atol=float(axial.max() - axial.min()) / 65535)
    with pytest.raises(ValueError, match="an affine or spacing_mm, not both"):
        DicomSeriesSampleWriter(affine=np.eye(4), spacing_mm=(2.0, 2.0))


def test_dicom_series_of_a_real_volume_keeps_its_geometry_and_png_shows_three_planes(ixi_volume, tmp_path):
    volume = ixi_volume[:, 20:60, 30:70, 30:40]
    files = SampleWriters([DicomSeriesSampleWriter(modality="MR"), PNGSampleWriter(sidecar=True)])(
        volume, tmp_path / "vol_0", PROVENANCE
    )
    slices = [f for f in files if f.suffix == ".dcm"]
    assert len(slices) == 10 and (tmp_path / "vol_0_dicom.json").is_file() and (tmp_path / "vol_0.png").is_file()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "vol_0_dicom")))
    image = reader.Execute()
    np.testing.assert_allclose(image.GetSpacing(), nib.load(ixi_volume.meta["filename_or_obj"]).header.get_zooms(), atol=1e-4)
    assert np.asarray(Image.open(tmp_path / "vol_0.png")).shape == (40, 40 + 40 + 40)  # axial | coronal | sagittal


def test_wfdb_writer_puts_conditions_in_the_header_and_nothing_else(shared_data, tmp_path):
    record = wfdb.rdrecord(str(shared_data / "ecg/cinc2021/E07500"))
    beat = torch.as_tensor(record.p_signal.T[:, :576], dtype=torch.float32)
    files = WFDBSampleWriter(fs=record.fs, lead_names=record.sig_name)(
        beat, tmp_path / "ecg_0", {**PROVENANCE, "pass_through": {"subject_id": "S017"}}
    )
    header = files[0].read_text()
    assert "# age: 70.0" in header and "# sex: female" in header and "S017" not in header and "m-1" not in header
    back = wfdb.rdrecord(str(tmp_path / "ecg_0"))
    np.testing.assert_allclose(back.p_signal.T, beat.numpy(), atol=1e-3)
    assert json.loads(files[2].read_text())["pass_through"] == {"subject_id": "S017"}


def test_png_refuses_a_1d_sample_and_sample_writers_needs_one_writer(tmp_path):
    with pytest.raises(ValueError, match="needs a 2D or 3D image"):
        PNGSampleWriter()(torch.zeros(12, 576), tmp_path / "x", {})
    with pytest.raises(ValueError, match="at least one writer"):
        SampleWriters([])
