"""CraniocaudalPatchesd on TotalSegmentator's real CTs: MONAI's crops cut the patches, each carries its craniocaudal
position (from its affine, checked against the voxel index it was cut at) and its start voxel; a seeded Compose cuts
the same patches again; what is not a 3D CT fails naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    Orientationd,
    RandCropByLabelClassesd,
    RandRotated,
    RandSpatialCropSamplesd,
    SpatialCropd,
)

from monai_gen.data.dicom_series import DICOMSeriesReader
from monai_gen.transforms.ct import CraniocaudalPatchesd, craniocaudal_position, patch_start

CT = "ct/totalsegmentator"
PATCH = (16, 16, 16)


def _load(**records):
    keys = list(records)
    load = Compose([
        LoadImaged(keys, reader=DICOMSeriesReader(), image_only=True),
        EnsureChannelFirstd(keys),
        Orientationd(keys, "RAS", labels=None),
    ])
    return load({k: str(v) for k, v in records.items()})


@pytest.fixture(scope="module")
def small_ct(shared_data):
    return _load(image=shared_data / CT / "example_ct_sm.nii.gz", label=shared_data / CT / "example_seg.nii.gz")


def test_random_patches_carry_their_position_along_the_s_axis_and_their_start_voxel(small_ct):
    volume = small_ct["image"]  # RAS, 30 axial slices at 3 mm
    cut = CraniocaudalPatchesd("image", RandSpatialCropSamplesd(["image", "label"], PATCH, num_samples=6, random_size=False))
    cut.set_random_state(0)
    patches = cut(small_ct)
    assert len(patches) == 6
    for p in patches:
        i, j, k = p["patch_start"]
        np.testing.assert_array_equal(p["image"][0].numpy(), volume[0, i : i + 16, j : j + 16, k : k + 16].numpy())
        np.testing.assert_array_equal(p["label"].numpy(), small_ct["label"][:, i : i + 16, j : j + 16, k : k + 16].numpy())
        # RAS: S is the third voxel axis, so the position is the centre slice's index over the last index
        assert p["craniocaudal_position"] == pytest.approx((k + 7.5) / 29)
    assert len({p["craniocaudal_position"] for p in patches}) > 1


def test_a_seeded_compose_cuts_the_same_patches_again(small_ct):
    def cut(seed):
        pipeline = Compose([CraniocaudalPatchesd(
            "image", RandSpatialCropSamplesd(["image", "label"], PATCH, num_samples=3, random_size=False))])
        pipeline.set_random_state(seed)
        return [p["patch_start"] for p in pipeline(dict(small_ct))]

    assert cut(3) == cut(3) and cut(3) != cut(4)


def test_patches_of_the_bottom_and_top_slabs_lie_at_0_and_1_and_organ_sampling_keeps_positions(small_ct, shared_data):
    data = _load(image=shared_data / CT / "example_ct.nii.gz")  # 112 slices at 3 mm
    for start, expected in ((0, 7.5 / 111), (96, 103.5 / 111)):
        slab = CraniocaudalPatchesd("image", SpatialCropd("image", roi_start=(0, 0, start), roi_end=(122, 101, start + 16)))
        (patch,) = slab(data)
        assert patch["craniocaudal_position"] == pytest.approx(expected) and patch["patch_start"] == [0, 0, start]
    liver = CraniocaudalPatchesd("image", RandCropByLabelClassesd(
        ["image", "label"], "label", PATCH, ratios=[0, 1], num_classes=2, num_samples=4))
    liver.set_random_state(1)
    labels = small_ct["label"]
    patches = liver({"image": small_ct["image"], "label": (labels == 5).float()})  # TotalSegmentator 5: liver
    for p in patches:
        k = p["patch_start"][2]
        assert p["label"].sum() > 0  # every patch holds liver
        assert p["craniocaudal_position"] == pytest.approx((k + 7.5) / 29)


def test_position_reads_the_world_s_axis_whatever_the_voxel_order(shared_data):
    raw = LoadImaged("image", image_only=True, ensure_channel_first=True)(
        {"image": str(shared_data / CT / "aorta_report/test_result/models/ct_cropped.nii.gz")})["image"]  # LPS on disk
    flipped = MetaTensor(raw.as_tensor().flip(-1), affine=raw.affine @ torch.tensor(
        [[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, raw.shape[-1] - 1], [0, 0, 0, 1]], dtype=raw.affine.dtype))
    top = flipped[:, :16, :16, :16]  # the first slices of the flipped array are the most superior ones
    top.affine[:3, 3] = flipped.affine[:3, 3]
    assert craniocaudal_position(top.affine, (16, 16, 16), flipped.affine, flipped.shape[1:]) == pytest.approx(
        1 - 7.5 / (raw.shape[-1] - 1))
    assert patch_start(top.affine, flipped.affine) == [0, 0, 0]


def test_a_region_field_places_the_volume_on_a_common_scale(small_ct):
    cut = CraniocaudalPatchesd("image", SpatialCropd("image", roi_start=(0, 0, 15), roi_end=(122, 101, 30)),
                               region_key="body_region")
    (upper,) = cut({**small_ct, "body_region": [0.4, 0.6]})
    assert upper["craniocaudal_position"] == pytest.approx(0.4 + 0.2 * 22 / 29)
    (relative,) = cut({**small_ct, "body_region": None})  # no region: relative to the volume
    assert relative["craniocaudal_position"] == pytest.approx(22 / 29)
    with pytest.raises(ValueError, match=r"example_ct_sm.nii.gz: body_region must satisfy 0 <= low < high <= 1"):
        cut({**small_ct, "body_region": [0.6, 0.4]})


def test_bad_input_fails_naming_the_file(small_ct):
    single_slice = small_ct["image"][..., :1]
    cut = CraniocaudalPatchesd("image", RandSpatialCropSamplesd("image", (16, 16, 1), num_samples=1, random_size=False))
    with pytest.raises(ValueError, match=r"example_ct_sm.nii.gz: a volume of shape \(122, 101, 1\) has no extent along"):
        cut({"image": single_slice})
    with pytest.raises(ValueError, match=r"example_ct_sm.nii.gz: CraniocaudalPatchesd needs a 3D MetaTensor"):
        CraniocaudalPatchesd("image", lambda d: d)({"image": small_ct["image"][..., 0]})
    rotate = Compose([RandSpatialCropSamplesd("image", PATCH, num_samples=1, random_size=False),
                      RandRotated("image", range_x=0.5, prob=1.0)])
    with pytest.raises(ValueError, match="the transform did not only crop"):
        CraniocaudalPatchesd("image", rotate)({"image": small_ct["image"]})
