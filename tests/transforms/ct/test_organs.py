"""OrganLabelMaps on TotalSegmentator's real label maps: label patches by reference (file + start voxel) through the
same preprocessing as their CTs, organ fractions per latent voxel, the batch a generator hands the denoiser."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, Spacingd, SpatialPadd

from monai_gen.data.dicom_series import DICOMSeriesReader
from monai_gen.engines.requests import SampleRequest
from monai_gen.transforms.ct import OrganLabelMaps

CT = "ct/totalsegmentator"
ORGANS = {"spleen": [1], "liver": [5], "vertebra": list(range(25, 51))}  # TotalSegmentator "total" v2 ids


@pytest.fixture(scope="module")
def preprocess():
    keys = ["image", "label"]
    return Compose([
        LoadImaged(keys, reader=DICOMSeriesReader(), image_only=True, allow_missing_keys=True),
        EnsureChannelFirstd(keys, allow_missing_keys=True),
        Orientationd(keys, "RAS", labels=None, allow_missing_keys=True),
        Spacingd(keys, (4.0, 4.0, 4.0), mode=["bilinear", "nearest"], allow_missing_keys=True),
        SpatialPadd(keys, (16, 16, 16), allow_missing_keys=True),
    ])


@pytest.fixture(scope="module")
def seg(shared_data):
    return str(shared_data / CT / "example_seg.nii.gz")


def test_a_patch_by_reference_is_the_preprocessed_label_volume_at_its_start_voxel(preprocess, seg, shared_data):
    maps = OrganLabelMaps(ORGANS, patch_size=(16, 16, 16), compression=4, load=preprocess)
    both = preprocess({"image": str(shared_data / CT / "example_ct_sm.nii.gz"), "label": seg})
    volume = maps.volume(seg)
    np.testing.assert_array_equal(volume.numpy(), both["label"].numpy())  # label alone: the same voxels as with its CT
    patch = maps.patch({"organ_label_file": seg, "patch_start": [40, 30, 4]})
    np.testing.assert_array_equal(patch.numpy(), volume[:, 40:56, 30:46, 4:20].numpy())
    assert maps.patch({"craniocaudal_position": 0.5}) is None  # names no label map
    with pytest.raises(ValueError, match=r"example_seg.nii.gz: a patch of \[16, 16, 16\] voxels at \[85, 30, 4\] does "
                                         r"not fit inside its preprocessed volume of \[92, 76, 23\] voxels"):
        maps.patch({"organ_label_file": seg, "patch_start": [85, 30, 4]})


def test_organ_fractions_are_each_organs_share_of_the_voxels_under_a_latent_voxel(preprocess, seg):
    maps = OrganLabelMaps(ORGANS, patch_size=(16, 16, 16), compression=4, load=preprocess)
    patch = maps.patch({"organ_label_file": seg, "patch_start": [40, 30, 4]})
    fractions = maps.encode(patch[None])
    assert fractions.shape == (1, 3, 4, 4, 4) and maps.latent_shape == (3, 4, 4, 4)
    liver = (patch[0] == 5).float().reshape(4, 4, 4, 4, 4, 4).mean(dim=(1, 3, 5))
    torch.testing.assert_close(fractions[0, 1], liver)
    assert fractions[0, 1].max() > 0.5  # the patch holds liver
    assert float(fractions.sum(dim=1).max()) <= 1.0 + 1e-6  # organs do not overlap


def test_requests_become_the_spatial_condition_batch_with_a_mask(preprocess, seg, shared_data):
    dicom_seg = str(shared_data / CT / "example_seg_dicom.nii.gz")
    maps = OrganLabelMaps(ORGANS, patch_size=(16, 16, 16), compression=4, load=preprocess)
    requests = [SampleRequest("a", 0, {"organ_label_file": seg, "patch_start": [40, 30, 4]}), SampleRequest("b", 1, {}),
                SampleRequest("c", 2, {"organ_label_file": dicom_seg})]  # c: the whole map, centre-cropped to 16^3
    cond = maps(requests)
    assert cond["spatial_condition"].shape == (3, 3, 4, 4, 4)
    assert cond["spatial_condition_mask"].tolist() == [1.0, 0.0, 1.0]
    assert float(cond["spatial_condition"][1].abs().sum()) == 0.0  # unconditioned: zeros
    default = OrganLabelMaps(ORGANS, patch_size=(16, 16, 16), compression=4, load=preprocess, label_file=dicom_seg)
    torch.testing.assert_close(default([SampleRequest("d", 0, {})])["spatial_condition"][0], cond["spatial_condition"][2])


def test_bad_configurations_fail_before_anything_is_read(preprocess):
    with pytest.raises(ValueError, match="label value 5 is in both 'liver' and 'also_liver'"):
        OrganLabelMaps({"liver": [5], "also_liver": [5]}, patch_size=(16, 16, 16), compression=4, load=preprocess)
    with pytest.raises(ValueError, match=r"patch_size \[16, 16, 12\] must be divisible by the compression factor 8"):
        OrganLabelMaps(ORGANS, patch_size=(16, 16, 12), compression=8, load=preprocess)
    with pytest.raises(ValueError, match="organ 'liver' has no label values"):
        OrganLabelMaps({"liver": []}, patch_size=(16, 16, 16), compression=4, load=preprocess)


def test_a_per_class_mask_in_another_scheme_is_read_through_its_value_map(preprocess, shared_data):
    """TotalSegmentator's per-class output (``aorta.nii.gz``, 1 = aorta) said in the bundle's ``total`` scheme (52)."""
    aorta = str(shared_data / CT / "aorta_report" / "test_result" / "models" / "aorta.nii.gz")
    maps = OrganLabelMaps({"spleen": [1], "aorta": [52]}, patch_size=(16, 16, 16), compression=4, load=preprocess)
    volume = maps.volume(aorta)
    start = [int(i) for i in torch.nonzero(volume[0])[len(torch.nonzero(volume[0])) // 2]]  # a voxel of the aorta
    start = [max(0, min(s - 8, n - 16)) for s, n in zip(start, volume.shape[1:], strict=True)]
    row = {"organ_label_file": aorta, "patch_start": start}
    mapped = maps.conditions([{**row, "organ_label_values": {"1": 52}}])["spatial_condition"][0]
    unmapped = maps.conditions([row])["spatial_condition"][0]  # read as the scheme's 1: spleen
    assert mapped[1].sum() > 0 and mapped[0].sum() == 0
    torch.testing.assert_close(mapped[1], unmapped[0])  # the same voxels, now in the aorta channel
    with pytest.raises(ValueError, match=r"aorta\.nii\.gz: its value map \{2: 52\} does not say what the values \[1\]"):
        maps.patch({**row, "organ_label_values": {2: 52}})
    with pytest.raises(ValueError, match="organ_label_values of .*aorta.nii.gz: expected"):
        maps.patch({**row, "organ_label_values": {"aorta": 52}})
    for_request = OrganLabelMaps({"aorta": [52]}, patch_size=(16, 16, 16), compression=4, load=preprocess,
                                 label_file=aorta, label_values={1: 52})
    assert for_request.conditions([{}])["spatial_condition"][0, 0].sum() > 0  # a user's --label-map with its values
