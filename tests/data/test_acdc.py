"""ACDC Info.cfg reader and records: the 10 real studies, and each kind of malformed study with its message."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from monai_gen.data.acdc import acdc_records, read_acdc_info
from monai_gen.transforms.image import CineToFrames


@pytest.fixture()
def acdc(shared_data):
    return shared_data / "cardiac_mri/acdc_subset"


def _copy_patient(acdc, tmp_path, patient="patient001"):
    target = tmp_path / "acdc" / patient
    shutil.copytree(acdc / patient, target)
    return target


def test_real_studies_read_with_bmi_groups_and_zero_based_frames(acdc):
    records = acdc_records(acdc, missing_spacing="keep")
    assert [r["subject_id"] for r in records][:3] == ["patient001", "patient002", "patient021"]
    assert len(records) == 10 and sorted({r["group"] for r in records}) == ["DCM", "HCM", "MINF", "NOR", "RV"]
    first = records[0]
    assert first["image"].endswith("patient001_4d.nii.gz")
    assert (first["ed_frame"], first["es_frame"], first["num_frames"]) == (0, 11, 30)
    assert first["bmi"] == pytest.approx(95.0 / 1.84**2)
    assert all(0 <= r["ed_frame"] < r["es_frame"] < r["num_frames"] for r in records)
    # three of these copies lost their voxel spacing (header 1 x 1 x 1, unit unknown): said, never invented
    assert [r["subject_id"] for r in records if r["spacing_mm"] is None] == ["patient041", "patient081", "patient082"]
    assert first["spacing_mm"] == (1.5625, 1.5625, 10.0)
    assert len(acdc_records(acdc, missing_spacing="skip")) == 7
    with pytest.raises(ValueError, match=r"patient041_4d.nii.gz records no voxel spacing \(1 x 1 x 1, spatial unit unknown\)"):
        acdc_records(acdc)
    conditions = [{"name": "group", "kind": "categorical", "categories": ["NOR", "DCM", "HCM", "MINF", "RV"]},
                  {"name": "bmi", "unit": "kg/m^2", "valid_range": [12, 60]}]
    assert len(acdc_records(acdc, patients=["patient001", "patient022"], conditions=conditions)) == 2
    strict = [dict(conditions[0], categories=["NOR", "DCM"]), conditions[1]]
    with pytest.raises(ValueError, match=r"patient021/Info.cfg \(group\): condition 'group' = 'HCM' is not one of"):
        acdc_records(acdc, patients=["patient021"], conditions=strict)


def test_a_cine_reads_as_frames_with_its_phase_and_ed_es_flags_and_lost_spacing_is_said(acdc):
    from monai.transforms import EnsureChannelFirst, LoadImage

    record = acdc_records(acdc, patients=["patient041"], missing_spacing="keep")[0]
    cine = EnsureChannelFirst(channel_dim=-1)(LoadImage(image_only=True)(record["image"]))  # (T, x, y, slice)
    with pytest.warns(UserWarning, match="patient041_4d.nii.gz has a voxel spacing of 1 mm on every axis"):
        frames = CineToFrames(record["ed_frame"], record["es_frame"], slices=[2])(cine)
    assert len(frames) == record["num_frames"] == 17
    assert [f.meta["is_es"] for f in frames].index(True) == record["es_frame"] == 10
    assert frames[0].meta["is_ed"] and frames[5].meta["phase"] == pytest.approx(5 / 17)


@pytest.mark.parametrize(
    "info, match",
    [
        ("ED: 1\nES: 12\nGroup: DCM\nHeight: 184.0\nNbFrame: 30\n", r"has no value for \['Weight'\]"),
        ("ED: 1\nES: 31\nGroup: DCM\nHeight: 184.0\nNbFrame: 30\nWeight: 95.0\n", r"ES = 31 is outside the cine's frames 1..30"),
        ("ED: 0\nES: 12\nGroup: DCM\nHeight: 184.0\nNbFrame: 30\nWeight: 95.0\n", r"ED = 0 is outside"),
        ("ED: 1\nES: 12\nGroup: XYZ\nHeight: 184.0\nNbFrame: 30\nWeight: 95.0\n", r"Group = 'XYZ' is not one of the ACDC groups"),
        ("ED: 1\nES: 12\nGroup: DCM\nHeight: 1.84\nNbFrame: 30\nWeight: 95.0\n", r"Height = 1.84 cm is outside the plausible range 50-250 cm"),
        ("ED: 1\nES: 12\nGroup: DCM\nHeight: 184.0\nNbFrame: 30\nWeight: heavy\n", r"Weight = 'heavy' is not a number"),
        ("ED: 1\nES: 12.5\nGroup: DCM\nHeight: 184.0\nNbFrame: 30\nWeight: 95.0\n", r"ES = '12.5' is not a whole number"),
        ("ED 1\n", r"line 1 is not 'Key: value'"),
    ],
)
def test_malformed_info_names_the_file_and_field(acdc, tmp_path, info, match):
    patient = _copy_patient(acdc, tmp_path)
    (patient / "Info.cfg").write_text(info)
    with pytest.raises(ValueError, match=match) as error:
        acdc_records(tmp_path / "acdc")
    assert str(patient / "Info.cfg") in str(error.value)
    assert read_acdc_info(acdc / "patient001/Info.cfg")["group"] == "DCM"


def test_cines_with_one_frame_or_another_frame_count_are_refused(acdc, tmp_path):
    patient = _copy_patient(acdc, tmp_path)
    cine = nib.load(patient / "patient001_4d.nii.gz")
    voxels = np.asarray(cine.dataobj)  # read before the file is overwritten
    one_frame = nib.Nifti1Image(voxels[..., :1], cine.affine, cine.header)
    nib.save(one_frame, patient / "patient001_4d.nii.gz")
    with pytest.raises(ValueError, match=r"patient001_4d.nii.gz has shape \(100, 95, 7, 1\): a cine is 4D .* at least 2 frames"):
        acdc_records(tmp_path / "acdc")
    nib.save(nib.Nifti1Image(voxels[..., :20], cine.affine, cine.header), patient / "patient001_4d.nii.gz")
    with pytest.raises(ValueError, match="has 20 frames but its Info.cfg says NbFrame = 30"):
        acdc_records(tmp_path / "acdc")
    (patient / "patient001_4d.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="ACDC cine .*patient001_4d.nii.gz does not exist"):
        acdc_records(tmp_path / "acdc")
    with pytest.raises(ValueError, match="holds no patient\\* folders"):
        acdc_records(tmp_path)
