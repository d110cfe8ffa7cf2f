"""write_nifti: nibabel / SimpleITK read back the same array and geometry; sidecar; errors."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage

from monai_gen.data.dicom_series import LoadDICOMSeries
from monai_gen.data.nifti_writer import write_nifti

IXI = "brain_mri/ixi10_2mm/nifti"


def _first_ixi(shared_data):
    return sorted((shared_data / IXI).glob("*.nii.gz"))[0]


def test_round_trip_real_volume_same_array_and_affine(shared_data, tmp_path):
    source = _first_ixi(shared_data)
    image = LoadImage(image_only=True, ensure_channel_first=True)(source)
    out, sidecar = write_nifti(image, tmp_path / "synth.nii.gz", provenance={"model_id": "m1", "seed": np.int64(7)})
    back = nib.load(out)
    np.testing.assert_array_equal(back.get_fdata(dtype=np.float32), image[0].numpy())
    np.testing.assert_allclose(back.affine, nib.load(source).affine, atol=1e-5)
    assert back.header["sform_code"] == 1 and back.header["qform_code"] == 1
    record = json.loads(sidecar.read_text())
    assert sidecar == tmp_path / "synth.json" and record["synthetic"] is True and record["seed"] == 7
    assert record["output"] == "synth.nii.gz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth.json", "synth.nii.gz"]  # no temporary left


@pytest.mark.parametrize("lps_to_ras", [True, False])
def test_dicom_volume_keeps_its_physical_geometry(shared_data, tmp_path, lps_to_ras):
    """A DICOM series loaded in RAS or LPS is written to the same NIfTI: SimpleITK sees the DICOM geometry."""
    folder = shared_data / "ct/totalsegmentator/example_ct_dicom"
    volume = LoadDICOMSeries(affine_lps_to_ras=lps_to_ras)(folder)
    out, _ = write_nifti(volume, tmp_path / "ct.nii", output_dtype=np.int16)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    ref, written = reader.Execute(), sitk.ReadImage(str(out))
    assert written.GetSize() == ref.GetSize()
    np.testing.assert_allclose(written.GetSpacing(), ref.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(written.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetDirection(), ref.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(ref))


def test_array_with_explicit_affine_and_4d_channels(tmp_path):
    affine = np.array([[0, -2.0, 0, 10], [1.5, 0, 0, -4], [0, 0, 3, 7], [0, 0, 0, 1]])
    data = torch.arange(2 * 4 * 5 * 3, dtype=torch.float32).reshape(2, 4, 5, 3)
    out, _ = write_nifti(data, tmp_path / "two.nii.gz", affine=affine)
    back = nib.load(out)
    np.testing.assert_allclose(back.affine, affine)
    np.testing.assert_array_equal(back.get_fdata(), np.moveaxis(data.numpy(), 0, -1))  # channels last (MONAI)


def test_errors_name_the_problem(tmp_path):
    image = MetaTensor(torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match=r"bad.png must end with .nii"):
        write_nifti(image, tmp_path / "bad.png")
    nan = image.clone()
    nan[0, 1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        write_nifti(nan, tmp_path / "nan.nii.gz")
    with pytest.raises(ValueError, match="invertible"):
        write_nifti(image, tmp_path / "sing.nii.gz", affine=np.zeros((4, 4)))
    with pytest.raises(TypeError, match="'model'"):
        write_nifti(image, tmp_path / "prov.nii.gz", provenance={"model": object()})
    with pytest.raises(ValueError, match="description must be ASCII of at most 80 bytes"):
        write_nifti(image, tmp_path / "long.nii.gz", description="x" * 81)
    assert list(tmp_path.iterdir()) == []  # nothing written by any failed call


def test_description_and_dtype_in_the_header_and_a_2d_image_keeps_its_slice_axis(tmp_path):
    image = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4)
    out, _ = write_nifti(image, tmp_path / "s.nii.gz", affine=np.diag([2.0, 2.0, 3.0, 1.0]), output_dtype=np.int16,
                         description="SYNTHETIC slice_position=0.6")
    back = nib.load(out)
    assert back.header["descrip"].item() == b"SYNTHETIC slice_position=0.6" and back.get_data_dtype() == np.int16
    assert back.shape == (3, 4, 1) and back.header.get_zooms() == (2.0, 2.0, 3.0)  # the slice thickness survives
    np.testing.assert_array_equal(np.asarray(back.dataobj)[..., 0], image[0].numpy())


def test_a_cine_slice_is_written_as_x_y_1_t_with_its_frame_time(shared_data, tmp_path):
    source = nib.load(shared_data / "cardiac_mri/acdc_subset/patient001/patient001_4d.nii.gz")
    frames = np.asarray(source.dataobj, dtype=np.float32)[:, :, 3].transpose(2, 0, 1)  # (T, x, y): one slice
    frame_time = float(source.header.get_zooms()[3])  # ACDC's time step, about 117 ms
    written, _ = write_nifti(frames, tmp_path / "cine.nii.gz", affine=source.affine, frame_time_ms=frame_time,
                             description="SYNTHETIC test cine")
    back = nib.load(written)
    assert back.shape == (100, 95, 1, 30) and back.header.get_xyzt_units() == ("mm", "msec")
    np.testing.assert_allclose(back.header.get_zooms(), (*source.header.get_zooms()[:3], frame_time), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(back.dataobj)[:, :, 0].transpose(2, 0, 1), frames)
    np.testing.assert_allclose(back.affine, source.affine, atol=1e-5)
    assert back.header["descrip"].tobytes().rstrip(b"\0") == b"SYNTHETIC test cine"
    with pytest.raises(ValueError, match=r"a time series is \(T, x, y\) or \(T, x, y, z\) with T >= 2 frames"):
        write_nifti(frames[:1], tmp_path / "one.nii.gz", frame_time_ms=frame_time)
    with pytest.raises(ValueError, match="frame_time_ms must be a positive number of milliseconds, got 0"):
        write_nifti(frames, tmp_path / "zero.nii.gz", frame_time_ms=0)
    assert not (tmp_path / "one.nii.gz").exists() and not (tmp_path / "zero.nii.gz").exists()
