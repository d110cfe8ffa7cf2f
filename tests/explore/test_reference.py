"""ReferenceSet: the bundle's own training split, searched for the nearest real item to a sample."""

from __future__ import annotations

import math

import pytest

from monai_gen.explore.reference import ReferenceSet

from ..conftest import REPO_ROOT

ECG_BUNDLE = REPO_ROOT / "bundles" / "ecg_generative_diffusion"


@pytest.mark.slow
def test_nearest_of_a_shifted_training_beat_is_that_beat(tmp_path, shared_data):
    reference = ReferenceSet(ECG_BUNDLE, cache_dir=tmp_path / "cache", dataset_dir=shared_data / "ecg" / "cpsc2018")
    with pytest.raises(RuntimeError, match="still being built"):
        reference.nearest(None)
    assert reference.wait(600)["state"] == "ready"
    train = reference._train
    beat = train.items[5]
    found = reference.nearest(beat + 0.01)  # a constant shift of every sample by 0.01 mV
    assert found.index == 5 and found.row == train.rows[5] and found.count == len(train)
    assert found.distance == pytest.approx(0.01 * math.sqrt(beat.numel()), rel=1e-6)
    with pytest.raises(ValueError, match="differ in size"):
        reference.nearest(beat[:, :100])


def test_a_missing_data_folder_is_reported_not_raised(tmp_path):
    reference = ReferenceSet(ECG_BUNDLE, cache_dir=tmp_path / "cache", dataset_dir=tmp_path / "absent")
    status = reference.wait(120)
    assert status["state"] == "failed" and "could not be built" in status["message"]


def test_cache_inside_the_bundle_is_refused():
    with pytest.raises(ValueError, match="cache_dir"):
        ReferenceSet(ECG_BUNDLE, cache_dir=ECG_BUNDLE / "cache")
