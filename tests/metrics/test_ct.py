"""OrganHUHistograms, MaskAdherence and hu_wasserstein on real CT patches with TotalSegmentator's organ labels: one
subject's patches (the abdominal NIfTI) for training, another's (the DICOM series) for testing; a perfect generator,
one that is 100 or 300 HU too bright, and one that makes air, each scored as it must be."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_gen.metrics.ct import MaskAdherence, OrganHUHistograms, hu_wasserstein
from monai_gen.metrics.evaluation import EvaluationData


def test_wasserstein_of_a_shift_is_the_shift_and_of_the_same_values_zero():
    rng = np.random.default_rng(0)
    liver = rng.normal(60, 15, 20000)
    assert hu_wasserstein(liver, liver, hu_range=(-1000, 1000)) == 0.0
    assert hu_wasserstein(liver + 100, liver, hu_range=(-1000, 1000)) == pytest.approx(100, abs=5)  # one bin width
    with pytest.raises(ValueError, match="at least one value in each set"):
        hu_wasserstein(liver, np.zeros(0), hu_range=(-1000, 1000))


@pytest.fixture(scope="module")
def cohorts(ct_patch_cohorts):
    return ct_patch_cohorts((32, 32, 32), 4)


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
    assert air["liver"]["wasserstein_hu"]["synthetic_vs_test"] > 1000


def test_mask_adherence_of_real_test_volumes_is_the_real_score_and_a_range_holds_its_percentiles(cohorts):
    train, test, labels = cohorts
    measure = MaskAdherence(labels, min_voxels=20)
    section = measure(_data(test.items.clone(), train, test))
    liver = section["organs"]["liver"]
    assert liver["adherence"]["synthetic"] == liver["adherence"]["test"]  # the same voxels in the same masks
    assert liver["n_voxels"]["synthetic"] == liver["n_voxels"]["test"] > 20 and liver["n_voxels"]["train"] > 1000
    # the range is the abdominal CT's (liver ~47 HU); the contrast-enhanced DICOM liver (~74 HU) mostly lies above it
    low, high = liver["real_range_hu"]
    assert low < 47 < high and liver["adherence"]["test"] < 0.5
    assert section["overall"]["synthetic"] == section["overall"]["test"]
    assert section["per_sample"]["synthetic"] == section["per_sample"]["test"] and section["per_sample"]["n"] >= 1
    assert "adrenal" in section["not_scored"] and "adrenal" not in section["organs"]  # a few voxels at 4 mm
    # against its own subject's range, 90 % of an organ's voxels lie between its 5th and 95th percentiles
    own = measure(_data(test.items.clone(), test, test))
    for name, organ in own["organs"].items():
        assert organ["adherence"]["test"] == pytest.approx(0.9, abs=0.03), name
    assert own["overall"]["test"] == pytest.approx(0.9, abs=0.03)
    assert own["summary"].startswith("mask adherence: synthetic 0.9") and "(real test 0.9" in own["summary"]
    lines = measure.markdown(own)
    assert lines[0].startswith("## Mask adherence") and any(line.startswith("| liver |") for line in lines)


def test_mask_adherence_drops_for_organs_300_hu_too_bright_and_for_air(cohorts):
    train, test, labels = cohorts
    measure = MaskAdherence(labels, min_voxels=20)
    reference = measure(_data(test.items.clone(), test, test))
    masks = torch.cat([labels.organ_masks(labels.patch(row)[None]).amax(dim=1, keepdim=True) for row in test.rows])
    brighter = measure(_data(test.items + 300.0 * masks, test, test))  # only the organs' voxels shifted
    adherence = {name: organ["adherence"] for name, organ in brighter["organs"].items()}
    assert {name: a["test"] for name, a in adherence.items()} == {
        name: organ["adherence"]["test"] for name, organ in reference["organs"].items()}  # the real score stays
    # soft tissue spans a few tens of HU, so +300 HU leaves it; bone spans hundreds, so half of it stays in range
    assert adherence["liver"]["synthetic"] < 0.05 and adherence["spleen"]["synthetic"] < 0.05
    assert adherence["vertebra"]["synthetic"] < 0.7 * adherence["vertebra"]["test"]
    assert brighter["overall"]["synthetic"] < 0.5 * brighter["overall"]["test"]
    air = measure(_data(torch.full_like(test.items, -1000.0), test, test))
    assert all(o["adherence"]["synthetic"] == 0.0 for o in air["organs"].values())


def test_mask_adherence_scores_no_organ_without_enough_real_voxels_and_refuses_bad_percentiles(cohorts):
    train, test, labels = cohorts
    section = MaskAdherence(labels, min_voxels=10**6)(_data(test.items.clone(), train, test))
    assert section["organs"] == {} and section["not_scored"] == labels.names and section["overall"]["synthetic"] is None
    assert section["summary"] == "mask adherence: no organ scored"
    assert MaskAdherence(labels).markdown(section)[-1].startswith("Not scored (fewer than the minimum")
    with pytest.raises(ValueError, match="percentiles must be"):
        MaskAdherence(labels, percentiles=(95, 5))
