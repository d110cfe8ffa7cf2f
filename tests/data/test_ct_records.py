"""ct_records / add_label_maps on a folder of real TotalSegmentator CTs (NIfTI files and a DICOM series folder) and
their label maps, laid out as a user's cohort would be."""

from __future__ import annotations

import logging

import pytest
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from monai_gen.data.ct_records import add_label_maps, ct_records, ct_stem
from monai_gen.data.dicom_series import DICOMSeriesReader

CT = "ct/totalsegmentator"


@pytest.fixture
def cohort(shared_data, tmp_path):
    source = shared_data / CT
    (tmp_path / "ct").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "ct" / "abdomen.nii.gz").symlink_to(source / "example_ct_sm.nii.gz")
    (tmp_path / "ct" / "thorax").symlink_to(source / "example_ct_dicom", target_is_directory=True)
    (tmp_path / "ct" / "aorta.nii.gz").symlink_to(source / "aorta_report/test_result/models/ct_cropped.nii.gz")
    (tmp_path / "ct" / "notes.txt").write_text("not a CT")
    (tmp_path / "labels" / "abdomen_seg.nii.gz").symlink_to(source / "example_seg.nii.gz")
    (tmp_path / "labels" / "thorax_seg.nii.gz").symlink_to(source / "example_seg_dicom.nii.gz")
    return tmp_path


def test_records_pair_nifti_and_dicom_cts_with_their_label_maps(cohort):
    records = ct_records(cohort / "ct", labels=cohort / "labels", subjects={"aorta": "subject_b"})
    assert [(r["subject_id"], ct_stem(r["image"]), r["organ_label_file"] and ct_stem(r["organ_label_file"])) for r in records] == [
        ("abdomen", "abdomen", "abdomen_seg"), ("subject_b", "aorta", None), ("thorax", "thorax", "thorax_seg")]
    assert "label" not in records[1] and records[0]["label"] == records[0]["organ_label_file"]
    load = Compose([LoadImaged(["image", "label"], reader=DICOMSeriesReader(), image_only=True, allow_missing_keys=True),
                    EnsureChannelFirstd(["image", "label"], allow_missing_keys=True)])
    thorax = load(records[2])  # the DICOM folder and its NIfTI label map through one LoadImaged
    assert thorax["image"].shape == thorax["label"].shape == (1, 512, 512, 20)
    assert ct_records(cohort / "ct")[0]["organ_label_file"] is None  # no label folder: no label maps


def test_unmatched_label_maps_are_logged_and_bad_folders_fail_naming_the_path(cohort, caplog):
    (cohort / "labels" / "pelvis_seg.nii.gz").symlink_to(cohort / "labels" / "abdomen_seg.nii.gz")
    with caplog.at_level(logging.WARNING):
        add_label_maps(ct_records(cohort / "ct"), cohort / "labels")
    assert "1 label map(s)" in caplog.text and "pelvis_seg" in caplog.text
    with pytest.raises(FileNotFoundError, match="CT folder .*missing does not exist"):
        ct_records(cohort / "missing")
    with pytest.raises(ValueError, match=r"subjects names CTs \['pelvis'\]"):
        ct_records(cohort / "ct", subjects={"pelvis": "x"})
    (cohort / "ct" / "empty_series").mkdir()
    with pytest.raises(ValueError, match="empty_series: a subfolder of the CT folder must hold one DICOM series"):
        ct_records(cohort / "ct")
    with pytest.raises(ValueError, match="holds no NIfTI file"):
        ct_records(cohort / "ct" / "empty_series")
