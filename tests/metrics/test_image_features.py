"""The image feature extractor trained on real IXI T1 slices: it learns the slice position, is seeded, stores and
reloads through safetensors, is cached per training data, and refuses images unlike its training images."""

from __future__ import annotations

import os

import pytest
import torch

from monai_gen.engines.cohort import Cohort
from monai_gen.engines.weights import save_tensors
from monai_gen.metrics.evaluation import EvaluationData, ProbeFidelity
from monai_gen.metrics.image import FeatureSpace
from monai_gen.metrics.image_features import (
    ConditionTargets,
    ImageFeatureExtractor,
    cached_feature_extractor,
    train_feature_extractor,
)

TARGETS = {"continuous": ["age", "slice_position"], "categorical": {"sex": ["F", "M"]}}


@pytest.fixture(scope="module")
def cohort(ixi_slices):
    """Five axial slices of each of the first 12 of the conftest's IXI subjects."""
    return ixi_slices.subset(range(60))


@pytest.fixture(scope="module")
def split(cohort):
    """8 training subjects (40 slices), 4 held-out subjects (20 slices)."""
    return cohort.subset(range(40)), cohort.subset(range(40, 60))


@pytest.fixture(scope="module")
def extractor(split):
    return train_feature_extractor(split[0].items, split[0].rows, max_epochs=6, **TARGETS)


def test_features_of_held_out_slices_give_their_slice_position_back(split, extractor):
    train, held_out = split
    features = extractor(held_out.items)
    assert features.shape == (20, 64) and features.dtype == torch.float64 and torch.isfinite(features).all()
    probe = FeatureSpace(ProbeFidelity(continuous=["slice_position"], n_components=8), extractor)
    requested = [{k: v for k, v in row.items() if k != "subject_id"} for row in held_out.rows]
    section = probe(EvaluationData(held_out.items, requested, train, held_out, 0))
    real = section["conditions"]["slice_position"]["real"]
    # held-out subjects, not registered to a template, so one index is not one anatomy: R about 0.8 (pixels: 0.8)
    assert real["value"] > 0.7 and real["n"] == 20
    assert section["conditions"]["slice_position"]["synthetic"]["value"] == pytest.approx(real["value"])
    assert "ResNet" in section["feature_space"] and section["summary"].endswith("[on features]")
    assert FeatureSpace(ProbeFidelity(), extractor).markdown(section)[0].endswith("on features")


def test_training_is_seeded_and_leaves_the_global_rng_alone(split, extractor):
    state = torch.random.get_rng_state()
    again = train_feature_extractor(split[0].items, split[0].rows, max_epochs=6, **TARGETS)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.testing.assert_close(again(split[1].items), extractor(split[1].items))
    other = train_feature_extractor(split[0].items, split[0].rows, max_epochs=1, seed=1, **TARGETS)
    assert not torch.allclose(other(split[1].items), extractor(split[1].items))
    assert extractor.training["iterations"] == 12 and extractor.training["n_items"] == 40  # 2 batches of 16 x 6


def test_save_and_load_give_the_same_features(split, extractor, tmp_path):
    path = extractor.save(tmp_path / "extractor.safetensors")
    loaded = ImageFeatureExtractor.load(path)
    torch.testing.assert_close(loaded(split[1].items), extractor(split[1].items), rtol=0, atol=0)
    assert loaded.targets == extractor.targets and loaded.description == extractor.description
    assert loaded.targets.continuous["age"][1] > 0 and loaded.targets.categorical == {"sex": ["F", "M"]}


def test_cached_extractor_is_reused_for_the_same_data_and_retrained_for_other_data(split, tmp_path):
    path, train = tmp_path / "cache.safetensors", split[0]
    first = cached_feature_extractor(path, train, max_epochs=1, **TARGETS)
    written = os.stat(path).st_mtime_ns
    second = cached_feature_extractor(path, train, max_epochs=1, **TARGETS)
    assert os.stat(path).st_mtime_ns == written and second.fingerprint == first.fingerprint
    torch.testing.assert_close(second(split[1].items), first(split[1].items))
    fewer = cached_feature_extractor(path, train.subset(range(30)), max_epochs=1, **TARGETS)
    assert fewer.fingerprint != first.fingerprint and fewer.training["n_items"] == 30
    assert ImageFeatureExtractor.load(path).fingerprint == fewer.fingerprint


def test_a_matching_shipped_extractor_is_used_over_a_stale_cached_one(split, tmp_path, caplog):
    """The evaluation's folder may hold an extractor trained on other data (an earlier run); the shipped one that
    matches must be used (and copied there), not retrained silently, and a file that matches nothing is named in a
    warning."""
    train = split[0]
    shipped = cached_feature_extractor(tmp_path / "shipped.safetensors", train, max_epochs=1, **TARGETS)
    stale_path = tmp_path / "cache.safetensors"
    cached_feature_extractor(stale_path, train.subset(range(30)), max_epochs=1, **TARGETS)
    shipped_written = os.stat(tmp_path / "shipped.safetensors").st_mtime_ns
    used = cached_feature_extractor(stale_path, train, reuse=[tmp_path / "shipped.safetensors"], max_epochs=1,
                                    **TARGETS)
    assert used.fingerprint == shipped.fingerprint
    # the stale file is replaced by the extractor that was used; the shipped one is only read
    assert stale_path.read_bytes() == (tmp_path / "shipped.safetensors").read_bytes()
    assert os.stat(tmp_path / "shipped.safetensors").st_mtime_ns == shipped_written
    torch.testing.assert_close(used(split[1].items), shipped(split[1].items), rtol=0, atol=0)
    with caplog.at_level("WARNING", logger="monai_gen.metrics.image_features"):
        retrained = cached_feature_extractor(stale_path, train.subset(range(20)),
                                             reuse=[tmp_path / "shipped.safetensors"], max_epochs=1, **TARGETS)
    assert retrained.training["n_items"] == 20 and ImageFeatureExtractor.load(stale_path).training["n_items"] == 20
    assert str(stale_path) in caplog.text and "shipped.safetensors" in caplog.text and "other images" in caplog.text


def test_the_cache_ignores_where_the_files_live_but_not_a_target_value(split, tmp_path):
    """Rows carry bookkeeping such as file paths, which differ between checkouts (the shipped CT extractor never matched
    under another bundle root); only the items, the target values and the settings decide a match."""
    path, train = tmp_path / "cache.safetensors", split[0]
    first = cached_feature_extractor(path, train, max_epochs=1, **TARGETS)
    moved = Cohort(train.items, [{**row, "image": f"/elsewhere/{i}.nii.gz"} for i, row in enumerate(train.rows)])
    written = os.stat(path).st_mtime_ns
    assert cached_feature_extractor(path, moved, max_epochs=1, **TARGETS).fingerprint == first.fingerprint
    assert os.stat(path).st_mtime_ns == written
    older = Cohort(train.items, [{**row, "age": float(row["age"]) + 1.0} for row in train.rows])
    assert cached_feature_extractor(path, older, max_epochs=1, **TARGETS).fingerprint != first.fingerprint


def test_bad_inputs_are_refused(split, extractor, tmp_path):
    with pytest.raises(ValueError, match=r"\(N, \*\(1, 64, 64\)\)"):
        extractor(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="finite"):
        extractor(torch.full((2, 1, 64, 64), float("nan")))
    with pytest.raises(FileNotFoundError, match="train_feature_extractor"):
        ImageFeatureExtractor.load(tmp_path / "absent.safetensors")
    not_an_extractor = save_tensors({"x": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="image_feature_extractor"):
        ImageFeatureExtractor.load(not_an_extractor)
    with pytest.raises(ValueError, match="at least one"):
        ConditionTargets.fit(split[0].rows)
    with pytest.raises(ValueError, match="two categories"):
        ConditionTargets.fit(split[0].rows, categorical={"sex": ["F"]})
    with pytest.raises(ValueError, match="one row per item"):
        train_feature_extractor(split[0].items, split[0].rows[:-1], continuous=["age"])


def test_targets_skip_unknown_values():
    rows = [{"age": 30.0, "sex": "F"}, {"age": None, "sex": "unknown"}, {"age": 50.0, "sex": "M"}]
    targets = ConditionTargets.fit(rows, ["age"], {"sex": ["F", "M"]})
    encoded = targets.encode(rows)
    assert targets.continuous["age"] == [40.0, 10.0] and targets.num_outputs == 3
    torch.testing.assert_close(encoded[[0, 2]], torch.tensor([[-1.0, 0.0], [1.0, 1.0]]))
    assert torch.isnan(encoded[1]).all()
    prediction = torch.tensor([[-1.0, 5.0, 0.0], [9.0, 9.0, 9.0], [1.0, 0.0, 5.0]])
    assert float(targets.loss(prediction, encoded)) < 0.02  # the unknown row adds nothing
