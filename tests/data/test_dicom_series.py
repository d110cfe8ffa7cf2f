"""DICOMSeriesReader / dicom_series_files on the real TCIA and TotalSegmentator series and pydicom's test files."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from monai.data import MetaTensor
from monai.transforms import LoadImage, LoadImaged
from pydicom.data import get_testdata_file

from monai_gen.data.dicom_series import DICOMSeriesReader, LoadDICOMSeries, LoadDICOMSeriesd, dicom_series_files

TCIA = "brain_mri/tcia_vs_seg_001_t1c"
CT_J2K = "ct/totalsegmentator/example_ct_dicom"


def _load(path, **kwargs):
    return LoadDICOMSeries(**kwargs)(path)


def _sitk_series(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _lps_geometry(affine: np.ndarray):
    """spacing, origin, direction (row-major, as SimpleITK) of an LPS affine."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return spacing, affine[:3, 3], (affine[:3, :3] / spacing).ravel()


def test_tcia_series_matches_simpleitk(shared_data):
    ref = _sitk_series(shared_data / TCIA)
    for lps_to_ras in (False, True):
        volume = _load(shared_data / TCIA, affine_lps_to_ras=lps_to_ras)
        assert isinstance(volume, MetaTensor) and volume.shape == (1, 512, 512, 120)
        affine = volume.affine.numpy()
        if lps_to_ras:  # RAS = diag(-1, -1, 1) @ LPS
            affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
        spacing, origin, direction = _lps_geometry(affine)
        np.testing.assert_allclose(spacing, ref.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(origin, ref.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(direction, ref.GetDirection(), atol=1e-6)
    # SimpleITK arrays are (z, y, x); MONAI's ITKReader gives (x, y, z)
    np.testing.assert_array_equal(volume[0].numpy(), sitk.GetArrayFromImage(ref).transpose(2, 1, 0))


def test_jpeg2000_ct_series_decodes_in_hounsfield_units(shared_data):
    folder = shared_data / CT_J2K
    assert str(pydicom.dcmread(next(folder.iterdir())).file_meta.TransferSyntaxUID) == pydicom.uid.JPEG2000Lossless
    volume = _load(folder)
    assert volume.shape[-1] == 20
    assert volume.min() == -1024 and volume.max() > 1000  # air and bone in HU: rescale applied
    reference = sitk.GetArrayFromImage(_sitk_series(folder)).transpose(2, 1, 0)
    np.testing.assert_array_equal(volume[0].numpy(), reference)


def test_multiframe_file_frames_and_geometry():
    path = get_testdata_file("rtdose.dcm")  # 15 frames of 10 x 10, GridFrameOffsetVector 0..70 mm step 5
    ds = pydicom.dcmread(path)
    volume = _load(path, affine_lps_to_ras=False)
    assert volume.shape == (1, 10, 10, 15)
    np.testing.assert_allclose(_lps_geometry(volume.affine.numpy())[0], [10.0, 10.0, 5.0])
    np.testing.assert_allclose(volume.affine[:3, 3].numpy(), [float(v) for v in ds.ImagePositionPatient])
    # stored values (ITK does not apply DoseGridScaling), frames in order
    np.testing.assert_array_equal(volume[0].numpy().transpose(2, 1, 0), ds.pixel_array)


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm"])
def test_compressed_and_big_endian_files_equal_the_uncompressed(name):
    expected = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    volume = _load(get_testdata_file(name))
    np.testing.assert_array_equal(volume[0, :, :, 0].numpy().T, expected)


def test_dictionary_loading_and_suffix_claims(shared_data, tmp_path):
    data = LoadDICOMSeriesd("image")({"image": shared_data / CT_J2K})
    assert data["image"].shape[0] == 1 and data["image"].shape[-1] == 20
    text = tmp_path / "notes.txt"
    text.write_text("not dicom")
    assert DICOMSeriesReader().verify_suffix(shared_data / CT_J2K)
    assert not DICOMSeriesReader().verify_suffix(text)


def _copy_series(src, dst, files=None):
    dst.mkdir(parents=True, exist_ok=True)
    for f in files or sorted(src.iterdir()):
        shutil.copy(f, dst / f.name)
    return dst


def test_two_series_in_one_folder_lists_both_and_can_pick_one(shared_data, tmp_path):
    ct = sorted((shared_data / CT_J2K).iterdir())
    mr = get_testdata_file("MR_small.dcm")
    folder = _copy_series(shared_data / CT_J2K, tmp_path / "mixed", ct[:3])
    shutil.copy(mr, folder / "mr.dcm")
    ct_uid = pydicom.dcmread(ct[0], stop_before_pixels=True).SeriesInstanceUID
    mr_uid = pydicom.dcmread(mr, stop_before_pixels=True).SeriesInstanceUID
    with pytest.raises(ValueError, match="holds 2 series") as info:
        dicom_series_files(folder)
    assert ct_uid in str(info.value) and mr_uid in str(info.value)
    assert dicom_series_files(folder, series_uid=mr_uid) == [folder / "mr.dcm"]
    assert _load(folder, series_uid=ct_uid).shape[-1] == 3
    with pytest.raises(ValueError, match="no series '1.2.3'"):
        dicom_series_files(folder, series_uid="1.2.3")


def test_missing_slice_names_the_gap(shared_data, tmp_path):
    files = dicom_series_files(shared_data / CT_J2K)  # sorted along the normal
    folder = _copy_series(shared_data / CT_J2K, tmp_path / "gap", files[:7] + files[8:])
    with pytest.raises(ValueError, match="inconsistent slice spacing") as info:
        _load(folder)
    assert files[6].name in str(info.value) and files[8].name in str(info.value)


def test_duplicate_slice_and_mixed_orientation(shared_data, tmp_path):
    files = dicom_series_files(shared_data / CT_J2K)
    folder = _copy_series(shared_data / CT_J2K, tmp_path / "dup", files[:4])
    ds = pydicom.dcmread(files[4])
    ds.ImagePositionPatient = pydicom.dcmread(files[2]).ImagePositionPatient
    ds.save_as(folder / "duplicate.dcm")
    with pytest.raises(ValueError, match="inconsistent slice spacing"):
        dicom_series_files(folder)
    ds.ImagePositionPatient = pydicom.dcmread(files[4]).ImagePositionPatient
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(folder / "duplicate.dcm")
    with pytest.raises(ValueError, match="mixes orientations: .*duplicate.dcm"):
        dicom_series_files(folder)


def test_missing_geometry_tag_names_tag_and_file(shared_data, tmp_path):
    files = dicom_series_files(shared_data / CT_J2K)
    folder = _copy_series(shared_data / CT_J2K, tmp_path / "tag", files[:3])
    ds = pydicom.dcmread(folder / files[1].name)
    del ds.PixelSpacing
    ds.save_as(folder / files[1].name)
    with pytest.raises(ValueError, match=f"{files[1].name} has no PixelSpacing tag"):
        _load(folder)


def test_truncated_and_corrupt_files_are_named(tmp_path):
    truncated = get_testdata_file("MR_truncated.dcm")
    with pytest.raises(ValueError, match="MR_truncated.dcm is truncated: 8130 bytes .* 8192 expected"):
        _load(truncated)
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(open(get_testdata_file("MR_small.dcm"), "rb").read()[:400])
    with pytest.raises(ValueError, match="corrupt.dcm"):
        dicom_series_files(corrupt)
    with pytest.raises(FileNotFoundError, match="absent"):
        dicom_series_files(tmp_path / "absent")


def test_transfer_syntax_without_decoder_names_the_syntax(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.9.9999.1"  # a private syntax no plugin decodes
    path = tmp_path / "private_syntax.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ValueError, match=r"private_syntax.dcm: transfer syntax 1.2.826.0.1.3680043.9.9999.1 .*not supported"):
        _load(path)


def test_monai_loadimage_with_the_reader_raises_instead_of_loading_a_broken_series(shared_data, tmp_path):
    """``LoadImage(reader=DICOMSeriesReader())``: MONAI falls back to ITK when a designated reader raises in read,
    which loaded 19 of 20 slices of a series with a gap, and one of two series; both must raise our error."""
    files = dicom_series_files(shared_data / CT_J2K)
    gap = _copy_series(shared_data / CT_J2K, tmp_path / "gap", files[:7] + files[8:])
    with pytest.raises(ValueError, match=f"inconsistent slice spacing: .* between {files[6].name} and {files[8].name}"):
        LoadImage(reader=DICOMSeriesReader())(gap)
    mixed = _copy_series(shared_data / CT_J2K, tmp_path / "mixed", files[:3])
    shutil.copy(get_testdata_file("MR_small.dcm"), mixed / "mr.dcm")
    with pytest.raises(ValueError, match="holds 2 series"):
        LoadImaged("image", reader=DICOMSeriesReader())({"image": mixed})
    with pytest.raises(FileNotFoundError, match="absent does not exist"):
        LoadImage(reader=DICOMSeriesReader())(tmp_path / "absent")
    volume = LoadImage(reader=DICOMSeriesReader(), image_only=True)(shared_data / CT_J2K)
    np.testing.assert_array_equal(volume.numpy(), _load(shared_data / CT_J2K)[0].numpy())
