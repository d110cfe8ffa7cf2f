"""OrganHUHistograms and hu_wasserstein on real CT patches with TotalSegmentator's organ labels: one subject's patches
(the abdominal NIfTI) for training, another's (the DICOM series) for testing; a perfect generator, one that is 100 HU
too bright, and one that makes air, each scored as it must be."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    Orientationd,
    RandSpatialCropSamplesd,
    ScaleIntensityRanged,
    Spacingd,
    SpatialPadd,
)

from monai_gen.data.dicom_series import DICOMSeriesReader
from monai_gen.engines.cohort import build_cohort
from monai_gen.metrics.ct import OrganHUHistograms, hu_wasserstein
from monai_gen.metrics.evaluation import EvaluationData
from monai_gen.transforms.ct import CraniocaudalPatchesd, OrganLabelMaps

CT = "ct/totalsegmentator"
KEYS = ["image", "label"]
PATCH = (32, 32, 32)
ORGANS = {"liver": [5], "spleen": [1], "vertebra": list(range(25, 51)), "adrenal": [8, 9]}


def test_wasserstein_of_a_shift_is_the_shift_and_of_the_same_values_zero():
    rng = np.random.default_rng(0)
    liver = rng.normal(60, 15, 20000)
    assert hu_wasserstein(liver, liver, hu_range=(-1000, 1000)) == 0.0
    assert hu_wasserstein(liver + 100, liver, hu_range=(-1000, 1000)) == pytest.approx(100, abs=5)  # one bin width
    with pytest.raises(ValueError, match="at least one value in each set"):
        hu_wasserstein(liver, np.zeros(0), hu_range=(-1000, 1000))


@pytest.fixture(scope="module")
def cohorts(shared_data):
    volume = Compose([
        LoadImaged(KEYS, reader=DICOMSeriesReader(), image_only=True, allow_missing_keys=True),
        EnsureChannelFirstd(KEYS, allow_missing_keys=True),
        Orientationd(KEYS, "RAS", labels=None, allow_missing_keys=True),
        Spacingd(KEYS, (4.0, 4.0, 4.0), mode=["bilinear", "nearest"], allow_missing_keys=True),
        ScaleIntensityRanged("image", -1000, 1000, -1000, 1000, clip=True, allow_missing_keys=True),
        SpatialPadd("image", PATCH, value=-1000, allow_missing_keys=True),
        SpatialPadd("label", PATCH, allow_missing_keys=True),
    ])
    patches = Compose([volume, CraniocaudalPatchesd("image", RandSpatialCropSamplesd(
        KEYS, PATCH, num_samples=4, random_size=False))]).set_random_state(0)
    source = shared_data / CT
    train = build_cohort([{"image": str(source / "example_ct_sm.nii.gz"), "label": str(source / "example_seg.nii.gz"),
                           "organ_label_file": str(source / "example_seg.nii.gz"), "subject_id": "a"}],
                         patches, fields=["organ_label_file", "patch_start"])
    test = build_cohort([{"image": str(source / "example_ct_dicom"), "label": str(source / "example_seg_dicom.nii.gz"),
                          "organ_label_file": str(source / "example_seg_dicom.nii.gz"), "subject_id": "c"}],
                        patches, fields=["organ_label_file", "patch_start"])
    labels = OrganLabelMaps(ORGANS, patch_size=PATCH, compression=4, load=volume)
    return train, test, labels


def _data(synthetic, train, test):
    requested = [{k: v for k, v in row.items() if k != "subject_id"} for row in test.rows]
    return EvaluationData(synthetic, requested, train, test, seed=0)


def test_a_perfect_generator_scores_zero_and_the_real_reference_is_positive(cohorts):
    train, test, labels = cohorts
    measure = OrganHUHistograms(labels, min_voxels=20)
    section = measure(_data(test.items.clone(), train, test))
    liver = section["organs"]["liver"]
    assert liver["wasserstein_hu"]["synthetic_vs_test"] == 0.0
    # two subjects' livers differ: about 47 HU in the abdominal CT, 74 HU in the contrast-enhanced DICOM series
    assert liver["wasserstein_hu"]["train_vs_test"] > 15 and liver["mean_hu"]["train"] < liver["mean_hu"]["test"] - 15
    assert 60 < liver["mean_hu"]["test"] < 120 and liver["n_voxels"]["synthetic"] == liver["n_voxels"]["test"]
    assert liver["adherence"]["synthetic"] == liver["adherence"]["test"] < 0.5  # outside the other subject's range
    own = measure(_data(test.items.clone(), test, test))["organs"]["liver"]  # the range of the test subject itself
    assert own["adherence"]["test"] == pytest.approx(0.9, abs=0.02)  # its 5th to 95th percentile
    assert "adrenal" in section["not_scored"]  # a few voxels at 4 mm: not scored
    assert section["summary"].startswith("organ HU Wasserstein-1, synthetic vs test: liver 0 HU")
    lines = measure.markdown(section)
    assert lines[0].startswith("## Organ HU distributions") and any(line.startswith("| liver |") for line in lines)


def test_a_too_bright_generator_is_off_by_its_shift_and_one_making_air_leaves_the_organs_range(cohorts):
    train, test, labels = cohorts
    measure = OrganHUHistograms(labels, min_voxels=20)
    brighter = measure(_data(test.items + 100.0, train, test))["organs"]["liver"]
    assert brighter["wasserstein_hu"]["synthetic_vs_test"] == pytest.approx(100, abs=5)
    assert brighter["mean_hu"]["synthetic"] == pytest.approx(brighter["mean_hu"]["test"] + 100, abs=1e-3)
    air = measure(_data(torch.full_like(test.items, -1000.0), train, test))["organs"]
    assert air["liver"]["adherence"]["synthetic"] == 0.0 and air["liver"]["wasserstein_hu"]["synthetic_vs_test"] > 1000
