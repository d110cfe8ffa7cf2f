"""The CT bundles' input checks, in their preprocessing order, on real TotalSegmentator files and bad copies of them:
an MR volume (not HU), a 2D slice, a label map on another grid (TotalSegmentator's own heart mask of the un-cropped
thorax next to the cropped CT), a label map moved by 6 mm. Each fails naming the file; a DICOM series with its label map
stored in another voxel order passes once both are in RAS."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd

from monai_gen.data.dicom_series import DICOMSeriesReader
from monai_gen.engines.cohort import build_cohort, innermost_cause
from monai_gen.transforms.image import CheckHounsfieldUnitsd, CheckImageValuesd

CT = "ct/totalsegmentator"
KEYS = ["image", "label"]
CHECKS = Compose([
    LoadImaged(KEYS, reader=DICOMSeriesReader(), image_only=True, allow_missing_keys=True),
    EnsureChannelFirstd(KEYS, allow_missing_keys=True),
    CheckImageValuesd(KEYS, allow_missing_keys=True),
    Orientationd(KEYS, "RAS", labels=None, allow_missing_keys=True),  # a label map may store its voxels in another order
    CheckHounsfieldUnitsd("image", label_key="label"),
])


def _error(record: dict) -> str:
    """The innermost error of running the checks on ``record`` (MONAI's Compose wraps it)."""
    with pytest.raises(Exception) as raised:
        CHECKS(record)
    return innermost_cause(raised.value)


def test_a_dicom_series_and_its_label_map_in_another_voxel_order_pass(shared_data):
    data = CHECKS({"image": str(shared_data / CT / "example_ct_dicom"),
                   "label": str(shared_data / CT / "example_seg_dicom.nii.gz")})  # LAS on disk, the series LPS
    assert data["image"].shape == data["label"].shape == (1, 512, 512, 20)


def test_non_hu_intensities_fail_naming_the_file(shared_data):
    assert re.search(r"example_mr_sm.nii.gz: intensities -47 to 833 are not Hounsfield units",
                     _error({"image": str(shared_data / CT / "example_mr_sm.nii.gz")}))


def test_a_2d_image_fails_naming_the_file(shared_data, tmp_path):
    source = nib.load(shared_data / CT / "example_ct.nii.gz")
    path = tmp_path / "one_slice.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(source.dataobj)[:, :, 50].astype(np.int16), source.affine), path)
    assert re.search(r"one_slice.nii.gz: a CT volume is one channel and 3 spatial axes \(1, x, y, z\), "
                     r"got shape \(1, 122, 101\)",
                     _error({"image": str(path)}))


def test_a_label_map_on_another_grid_fails_naming_both_files(shared_data):
    pulmonary = shared_data / CT / "pulmonary_report/models"
    assert re.search(r"label map .*heart.nii.gz of image .*ct_cropped.nii.gz: shape \(1, 233, 167, 191\) "
                     r"does not match the image's \(1, 122, 102, 112\)",
                     _error({"image": str(pulmonary / "ct_cropped.nii.gz"), "label": str(pulmonary / "heart.nii.gz")}))


def test_a_label_map_moved_off_the_grid_fails_and_a_cohort_build_names_it(shared_data, tmp_path):
    seg = nib.load(shared_data / CT / "example_seg.nii.gz")
    moved = seg.affine.copy()
    moved[2, 3] += 6.0  # two slices up
    path = tmp_path / "moved_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(seg.dataobj), moved), path)
    record = {"image": str(shared_data / CT / "example_ct_sm.nii.gz"), "label": str(path), "subject_id": "a"}
    assert re.search(r"moved_seg.nii.gz of image .*example_ct_sm.nii.gz: the affines differ by up to 6 mm",
                     _error(dict(record)))
    with pytest.raises(ValueError, match=r"no usable item in 1 records; .*moved_seg.nii.gz .*the affines differ by up to 6 mm"):
        build_cohort([record], CHECKS, fields=[])
