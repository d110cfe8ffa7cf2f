"""CheckImageValues / CheckVolumeGeometry (+ d) on real IXI T1 volumes and bad copies of them written to disk;
CheckHounsfieldUnits(d) on TotalSegmentator's real CT, MR and label map.

Every bad input is made from a real 2 mm IXI volume: a 4D stack, a NaN- or inf-poisoned copy, a zeroed copy, a copy
with no voxels, a copy whose voxel axes were swapped without its header, a copy resampled to 3 mm, a copy whose header
lost its spacing, and a copy keeping only a small cube of the head. Each must fail with a message naming the file.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage, Spacing

from monai_gen.bundle.registry import bundle_component
from monai_gen.engines.cohort import build_cohort
from monai_gen.transforms.image import (
    CheckHounsfieldUnits,
    CheckHounsfieldUnitsd,
    CheckImageValues,
    CheckImageValuesd,
    CheckVolumeGeometry,
    CheckVolumeGeometryd,
)

IXI = "brain_mri/ixi_t1_2mm/t1"
IXI10 = "brain_mri/ixi10_2mm/nifti"
HEAD_MM = [[110, 190], [140, 240], [120, 260]]  # the tiny brain bundle's head_extent_mm
BRAIN = CheckVolumeGeometry(spacing_mm=[2, 2, 2], foreground_mm=HEAD_MM, mirror_axis="left-right")
LOAD = LoadImage(image_only=True, ensure_channel_first=True)
TINY_BRAIN_BUNDLE = Path(__file__).resolve().parents[2] / "bundle" / "tiny_brain_bundle"


@pytest.fixture(scope="module")
def source(shared_data):
    path = shared_data / IXI / "IXI052-HH-1343_T1.nii.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return nib.load(path)


def _save(array: np.ndarray, affine: np.ndarray, path) -> str:
    nib.save(nib.Nifti1Image(array, affine), path)
    return str(path)


@pytest.fixture(scope="module")
def bad_files(source, tmp_path_factory):
    """name -> (file, message the checks give): copies of a real volume, each wrong in one way."""
    folder = tmp_path_factory.mktemp("bad_nifti")
    data, affine = np.asarray(source.get_fdata(dtype=np.float32)), source.affine
    nan, inf = data.copy(), data.copy()
    nan[40:50, 40:50, 40:50] = np.nan
    inf[0, 0, 0] = np.inf
    resampled = Spacing(pixdim=(3.0, 3.0, 3.0))(LOAD(source.get_filename()))
    cube = np.zeros_like(data)
    cube[50:70, 50:70, 35:55] = data[50:70, 50:70, 35:55]
    files = {
        "4d": (np.stack([data] * 3, axis=-1), affine, r"expected 1 channel\(s\) of a 3D volume.* got shape \(3, 120, 120, 90\)"),
        "nan": (nan, affine, "1000 of 1296000 voxels are NaN or infinite"),
        "inf": (inf, affine, "1 of 1296000 voxels are NaN or infinite"),
        "zeroed": (np.zeros_like(data), affine, "every voxel has the value 0; the image is empty"),
        "no_voxels": (np.zeros((0, 120, 90), np.float32), affine, r"the image holds no voxels"),
        "axes_swapped": (np.swapaxes(data, 0, 2).copy(), affine,
                         "most mirror-symmetric along the anterior-posterior axis .* expected left-right"),
        "resampled_3mm": (resampled[0].numpy(), resampled.affine.numpy(), r"voxel size 3 x 3 x 3 mm .* expected 2 x 2 x 2 mm"),
        "spacing_lost": (data, np.eye(4), r"voxel size 1 x 1 x 1 mm"),
        "cube": (cube, affine, r"the foreground spans .* expected left-right 110-190, anterior-posterior 140-240"),
    }
    return {name: (_save(array, a, folder / f"{name}.nii.gz"), message) for name, (array, a, message) in files.items()}


def test_real_ixi_volumes_pass_unchanged(shared_data):
    paths = sorted((shared_data / IXI).glob("*.nii.gz"))[::50] + sorted((shared_data / IXI10).glob("*.nii.gz"))[:2]
    for path in paths:
        volume = LOAD(path)
        assert CheckImageValues()(volume) is volume and BRAIN(volume) is volume
    d = {"image": volume, "age": 30.0}
    checked = CheckVolumeGeometryd("image", spacing_mm=[2, 2, 2], mirror_axis="left-right")(CheckImageValuesd("image")(d))
    assert checked["image"] is volume and checked["age"] == 30.0


@pytest.mark.parametrize("name", ["4d", "nan", "inf", "zeroed", "no_voxels", "axes_swapped", "resampled_3mm",
                                  "spacing_lost", "cube"])
def test_each_bad_copy_fails_naming_its_file_and_problem(bad_files, name):
    path, message = bad_files[name]
    volume = LOAD(path)
    with pytest.raises(ValueError, match=message) as caught:
        BRAIN(CheckImageValues()(volume))
    assert str(caught.value).startswith(f"{path}: ")


def test_a_header_that_lost_its_affine_fails_each_geometry_check_on_its_own(bad_files):
    lost = LOAD(bad_files["spacing_lost"][0])  # 2 mm PSR voxels whose header says 1 mm RAS: a half-sized, turned head
    with pytest.raises(ValueError, match=r"foreground spans [0-9.]+ x [0-9.]+ x [0-9.]+ mm.*wrong voxel size"):
        CheckVolumeGeometry(foreground_mm=HEAD_MM)(lost)
    with pytest.raises(ValueError, match="most mirror-symmetric along the inferior-superior axis"):
        CheckVolumeGeometry(mirror_axis="left-right")(lost)
    CheckVolumeGeometry(mirror_axis="inferior-superior")(lost)  # what the voxels show under the identity affine


def test_the_tiny_bundle_preprocessing_skips_bad_volumes_naming_each(bad_files):
    """The bundle's own preprocessing ``Compose``: build_cohort reports the checks' messages, no MONAI traceback."""
    preprocessing = bundle_component(TINY_BRAIN_BUNDLE, "preprocessing")
    names = ["4d", "nan", "zeroed", "axes_swapped", "resampled_3mm"]
    records = [{"image": bad_files[n][0], "subject_id": n} for n in names]
    with pytest.raises(ValueError, match="no usable item in 5 records") as caught:
        build_cohort(records, preprocessing, fields=["slice_position"])
    for name in names:
        path, message = bad_files[name]
        assert f"{path}: ValueError: {path}: " in str(caught.value), name
    assert "NaN or infinite" in str(caught.value) and "mirror-symmetric" in str(caught.value)


def test_arguments_and_array_inputs():
    with pytest.raises(ValueError, match="spacing_mm needs one entry per world axis"):
        CheckVolumeGeometry(spacing_mm=[2, 2])
    with pytest.raises(ValueError, match="foreground_threshold must be in"):
        CheckVolumeGeometry(foreground_threshold=1.5)
    with pytest.raises(ValueError, match="left-right"):
        CheckVolumeGeometry(mirror_axis="sideways")
    with pytest.raises(ValueError, match="^image: .* NaN"):
        CheckImageValues()(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="needs a MetaTensor"):
        CheckVolumeGeometry()(torch.ones(1, 4, 4, 4))
    oblique = MetaTensor(torch.rand(1, 4, 4, 4), affine=torch.tensor([[1.0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    with pytest.raises(ValueError, match="does not give each voxel axis its own world axis"):
        CheckVolumeGeometry()(oblique)


CT = "ct/totalsegmentator"


def _load(path):
    return LoadImage(image_only=True, ensure_channel_first=True)(str(path))


def test_real_ct_in_hounsfield_units_passes_and_an_mr_or_a_rescaled_ct_does_not(shared_data):
    ct = _load(shared_data / CT / "example_ct.nii.gz")  # -1207 to 3382 HU
    assert CheckHounsfieldUnits()(ct) is ct
    mr = _load(shared_data / CT / "example_mr_sm.nii.gz")
    with pytest.raises(ValueError, match=r"example_mr_sm.nii.gz: intensities .* are not Hounsfield units \(a CT's minimum"):
        CheckHounsfieldUnits()(mr)
    scaled = (ct - ct.min()) / (ct.max() - ct.min())
    with pytest.raises(ValueError, match="not an MR image or a rescaled volume"):
        CheckHounsfieldUnits()(scaled)
    without_intercept = ct + 1024  # stored values before RescaleIntercept -1024
    with pytest.raises(ValueError, match=r"intensities -183 to 4406 are not Hounsfield units"):
        CheckHounsfieldUnits()(without_intercept)
    with pytest.raises(ValueError, match=r"one channel and 3 spatial axes \(1, x, y, z\), got shape \(1, 122, 101\)"):
        CheckHounsfieldUnits()(ct[..., 50])


def test_a_label_map_must_lie_on_the_cts_voxel_grid(shared_data):
    check = CheckHounsfieldUnitsd("image", label_key="label")
    small_ct, labels = _load(shared_data / CT / "example_ct_sm.nii.gz"), _load(shared_data / CT / "example_seg.nii.gz")
    data = {"image": small_ct, "label": labels}
    assert check(data)["label"] is labels  # TotalSegmentator's labels of this CT: same grid, whole numbers
    with pytest.raises(ValueError, match=r"example_seg.nii.gz of image .*example_ct.nii.gz: shape \(1, 122, 101, 30\) does "
                                         r"not match the image's \(1, 122, 101, 112\)"):
        check({"image": _load(shared_data / CT / "example_ct.nii.gz"), "label": labels})
    shifted = labels.clone()
    shifted.affine[0, 3] += 1.5
    with pytest.raises(ValueError, match="the affines differ by up to 1.5 mm"):
        check({"image": small_ct, "label": shifted})
    with pytest.raises(ValueError, match="labels must be whole non-negative numbers"):
        check({"image": small_ct, "label": labels * 0.5})
    assert check({"image": small_ct}) == {"image": small_ct}  # no label map: the CT alone is checked
