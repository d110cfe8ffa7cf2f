"""write_dicom_series(modality="CT") on TotalSegmentator's real CT: whole HU above RescaleIntercept -1024 with slope 1,
the CT Image module's tags and two VOI windows, geometry from the affine (read back by MONAI / ITK and SimpleITK), and
the synthetic marks of every series; DicomSeriesSampleWriter writes a generated volume the same way."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from monai.transforms import LoadImage

from monai_gen.data.dicom_series import LoadDICOMSeries
from monai_gen.data.dicom_writer import CT_WINDOWS, SOP_CLASSES, write_dicom_series
from monai_gen.data.sample_writers import DicomSeriesSampleWriter
from monai_gen.transforms.image import HounsfieldWindow


@pytest.fixture(scope="module")
def ct(shared_data):
    return LoadImage(image_only=True, ensure_channel_first=True)(shared_data / "ct/totalsegmentator/example_ct.nii.gz")


def _hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.T.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_a_generated_ct_in_float_hu_is_stored_as_whole_hu_with_the_ct_rescale_and_windows(ct, tmp_path):
    window = HounsfieldWindow(-1000, 1000)
    generated = window.inverse(window(ct) + 0.0003)  # float HU, as a generator returns them
    files = write_dicom_series(generated, tmp_path / "ct", modality="CT", series_description="abdomen",
                               provenance={"model_id": "test", "seed": 3})
    slices = [pydicom.dcmread(f) for f in files[:-1]]
    assert len(slices) == ct.shape[-1] and json.loads(files[-1].read_text())["seed"] == 3
    first = slices[0]
    assert first.SOPClassUID == SOP_CLASSES["CT"] and first.Modality == "CT"
    assert list(first.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"] and first.RescaleType == "HU"
    assert float(first.RescaleSlope) == 1.0 and float(first.RescaleIntercept) == -1024.0
    assert first.PixelRepresentation == 0 and first.BitsStored == 16 and first.pixel_array.dtype == np.uint16
    assert [float(c) for c in first.WindowCenter] == [40.0, -600.0] and [float(w) for w in first.WindowWidth] == [400, 1500]
    assert list(first.WindowCenterWidthExplanation) == list(CT_WINDOWS)
    assert first.SeriesDescription == "SYNTHETIC abdomen" and "SYNTHETIC" in first.ImageComments
    expected = np.round(generated[0].numpy().astype(np.float64))
    np.testing.assert_array_equal(np.stack([_hu(ds) for ds in slices], axis=-1), expected)  # whole HU, exactly
    back = LoadDICOMSeries()(tmp_path / "ct")  # MONAI / ITK: the NIfTI's RAS geometry and the HU values
    np.testing.assert_allclose(back.affine.numpy(), ct.affine.numpy(), atol=1e-4)
    np.testing.assert_array_equal(back[0].numpy(), expected)
    image = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "ct")))
    assert image.GetSpacing() == pytest.approx((3.0, 3.0, 3.0))


def test_air_below_minus_1024_hu_lowers_the_intercept_and_keeps_every_value(ct, tmp_path):
    files = write_dicom_series(ct, tmp_path / "ct", modality="CT")  # the real CT holds -1207 HU outside the body
    slices = [pydicom.dcmread(f) for f in files[:-1]]
    assert float(slices[0].RescaleIntercept) == float(ct.min()) == -1207.0
    np.testing.assert_array_equal(np.stack([_hu(ds) for ds in slices], axis=-1), ct[0].numpy())


def test_values_no_ct_series_can_hold_fail_naming_the_folder(tmp_path):
    volume = torch.zeros(1, 4, 4, 3)
    volume[0, 0, 0, 0], volume[0, 1, 1, 1] = -1024, 70000  # 71024 steps
    with pytest.raises(ValueError, match=r"ct: a CT in Hounsfield units spans -1024 to 70000 HU, more than the 65535"):
        write_dicom_series(volume, tmp_path / "ct", modality="CT")
    assert not (tmp_path / "ct").exists()


def test_the_sample_writer_writes_a_generated_volume_as_a_ct_series(tmp_path):
    volume = torch.linspace(-1000, 1000, 8 * 8 * 4).reshape(1, 8, 8, 4)
    writer = DicomSeriesSampleWriter(modality="CT", series_description="SYNTHETIC CT", spacing_mm=[4.0, 4.0, 4.0])
    files = writer(volume, tmp_path / "ct_0", {"model_id": "m", "seed": 0, "conditions": {"craniocaudal_position": 0.5}})
    assert files[0].parent.name == "ct_0_dicom" and len(files) == 5
    back = LoadDICOMSeries()(tmp_path / "ct_0_dicom")
    np.testing.assert_array_equal(back[0].numpy(), np.round(volume[0].numpy()))
    np.testing.assert_allclose(back.affine.numpy(), np.diag([4.0, 4.0, 4.0, 1.0]), atol=1e-6)
