"""2.5D slices of RAS volumes, the slice feature extractor and SliceFrechetDistance on real CT patches.

The slicing is checked on a volume whose voxel values spell their own (x, y, z) index; the extractor and the measure on
32 x 32 x 16 patches (4 mm, HU) of two TotalSegmentator subjects: the abdominal CT trains the extractor and is the real
training cohort, the DICOM series is the real test cohort. A copy of the test patches shifted by one voxel must lie far
closer to them than a copy 300 HU too bright, a blurred copy or noise.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import GaussianSmooth

from monai_gen.metrics.evaluation import EvaluationData
from monai_gen.metrics.image import SliceFrechetDistance
from monai_gen.metrics.image_features import ImageFeatureExtractor
from monai_gen.metrics.slice_features import (
    SLICE_OFFSET,
    SLICE_PLANE,
    cached_slice_feature_extractor,
    central_slice_indices,
    slice_items,
    volume_slices,
)

PATCH = (32, 32, 16)
PLANES = ("axial", "coronal", "sagittal")


def _index_volume(shape=(6, 5, 4)) -> torch.Tensor:
    """(1, 1, X, Y, Z) holding 100 x + 10 y + z at voxel (x, y, z)."""
    x, y, z = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in shape), indexing="ij")
    return (100 * x + 10 * y + z)[None, None]


def test_central_slices_are_centred_and_stepped():
    assert central_slice_indices(32, 8) == list(range(12, 20))
    assert central_slice_indices(32, 8, 2) == list(range(8, 23, 2))
    assert central_slice_indices(5, None) == [0, 1, 2, 3, 4] and central_slice_indices(5, None, 2) == [0, 2, 4]
    with pytest.raises(ValueError, match="more than the axis's 16"):
        central_slice_indices(16, 9, 2)
    with pytest.raises(ValueError, match="n_slices and slice_step must be >= 1"):
        central_slice_indices(16, 0)


def test_slices_cut_the_ras_planes_and_pad_to_one_square():
    volume = _index_volume()  # X 6, Y 5, Z 4
    axial = volume_slices(volume, "axial", n_slices=2, slice_size=(6, 5))
    assert axial.shape == (2, 1, 6, 5)
    torch.testing.assert_close(axial[0, 0], volume[0, 0, :, :, 1])  # z = 1, 2: the central two of four
    torch.testing.assert_close(axial[1, 0], volume[0, 0, :, :, 2])
    coronal = volume_slices(volume, "coronal", n_slices=1, slice_size=(6, 4))
    torch.testing.assert_close(coronal[0, 0], volume[0, 0, :, 2, :])  # y = 2 of five; in-plane (X, Z)
    sagittal = volume_slices(volume, "sagittal", n_slices=3, slice_step=2, slice_size=(5, 4))
    torch.testing.assert_close(sagittal[:, 0], volume[0, 0, [0, 2, 4]])  # x = 0, 2, 4; in-plane (Y, Z)
    # default size: a square of the longest side (6), padded symmetrically with the pad value
    padded = volume_slices(volume, "sagittal", n_slices=1, pad_value=-1000.0)
    assert padded.shape == (1, 1, 6, 6) and int((padded == -1000).sum()) == 36 - 20
    torch.testing.assert_close(padded[0, 0, :5, 1:5], volume[0, 0, 2])  # Y 5 -> 6: one row after; Z 4 -> 6: one each side
    batch = torch.cat([volume, volume + 1])  # volume-major order
    torch.testing.assert_close(volume_slices(batch, "axial", n_slices=2)[2:], volume_slices(volume + 1, "axial", n_slices=2))


def test_slices_refuse_other_ranks_and_unknown_planes():
    with pytest.raises(ValueError, match=r"\(N, C, X, Y, Z\), got shape \(1, 6, 5, 4\)"):
        volume_slices(_index_volume()[0], "axial")
    with pytest.raises(ValueError, match="axial"):
        volume_slices(_index_volume(), "transverse")
    with pytest.raises(ValueError, match="did you mean .coronal."):
        SliceFrechetDistance(lambda s: s.flatten(1), planes=["axial", "frontal"])


def test_slice_items_carry_the_volume_row_the_plane_and_the_offset():
    volumes = torch.cat([_index_volume(), _index_volume() + 1])
    rows = [{"subject_id": "a", "craniocaudal_position": 0.2}, {"subject_id": "b", "craniocaudal_position": 0.7}]
    sliced = slice_items(volumes, rows, n_slices=2)
    assert sliced.items.shape == (12, 1, 6, 6) and len(sliced.rows) == 12  # 2 volumes x 3 planes x 2 slices
    assert [r[SLICE_PLANE] for r in sliced.rows] == ["axial"] * 4 + ["coronal"] * 4 + ["sagittal"] * 4
    assert [r[SLICE_OFFSET] for r in sliced.rows[:4]] == [1 / 3, 2 / 3, 1 / 3, 2 / 3]  # z = 1, 2 of 0..3
    assert [r["craniocaudal_position"] for r in sliced.rows[:4]] == [0.2, 0.2, 0.7, 0.7]
    with pytest.raises(ValueError, match="one row per volume"):
        slice_items(volumes, rows[:1])


@pytest.fixture(scope="module")
def ct(ct_patch_cohorts, tmp_path_factory):
    train, test, _ = ct_patch_cohorts(PATCH, 12)
    path = tmp_path_factory.mktemp("slice_features") / "slice_features.safetensors"
    settings = {"continuous": ["craniocaudal_position", SLICE_OFFSET], "widths": (4, 8, 8, 16), "max_epochs": 5}
    extractor = cached_slice_feature_extractor(path, train, **settings)
    return train, test, extractor, path, settings


def test_the_slice_extractor_is_trained_on_every_plane_and_reloaded_from_its_file(ct):
    train, _, extractor, path, settings = ct
    assert extractor.image_shape == (1, 32, 32) and extractor.training["n_items"] == 12 * 3 * 8
    assert extractor.targets.categorical == {SLICE_PLANE: list(PLANES)}
    assert list(extractor.targets.continuous) == ["craniocaudal_position", SLICE_OFFSET]
    stamp = path.stat().st_mtime_ns
    again = cached_slice_feature_extractor(path, train, **settings)  # same slices and settings: read, not retrained
    assert path.stat().st_mtime_ns == stamp and again.fingerprint == extractor.fingerprint
    slices = volume_slices(train.items[:2], "coronal")
    torch.testing.assert_close(again(slices), extractor(slices))
    other = cached_slice_feature_extractor(path, train, n_slices=4, **settings)  # other slices: trained again
    assert other.fingerprint != extractor.fingerprint and other.training["n_items"] == 12 * 3 * 4
    assert ImageFeatureExtractor.load(path).fingerprint == other.fingerprint


def _score(measure, synthetic, train, test):
    requested = [{k: v for k, v in row.items() if k != "subject_id"} for row in test.rows]
    return measure(EvaluationData(synthetic.float(), requested, train, test, seed=0))


def test_real_test_volumes_score_zero_beside_a_positive_real_reference(ct):
    train, test, extractor, _, _ = ct
    measure = SliceFrechetDistance(extractor)
    section = _score(measure, test.items.clone(), train, test)
    distances = section["frechet_distance"]
    assert list(distances) == [*PLANES, "mean"] and section["planes"] == list(PLANES)
    for plane in PLANES:
        assert abs(distances[plane]["synthetic_vs_test"]) < 1e-6 and distances[plane]["n_slices"] == 12 * 8
        assert distances[plane]["train_vs_test"] > 1.0  # another subject's anatomy
    reference = np.mean([distances[p]["train_vs_test"] for p in PLANES])
    assert distances["mean"]["train_vs_test"] == pytest.approx(reference)
    assert section["n"] == {"synthetic": 12, "real_test": 12, "real_train": 12}
    assert section["summary"].startswith("2.5D Fréchet (slice features): mean 0.00 (real ")
    lines = measure.markdown(section)
    assert lines[0].startswith("## 2.5D realism") and any(line.startswith("| sagittal |") for line in lines)
    assert lines[-1].startswith("| mean | 0.000 |")


def test_a_one_voxel_shift_stays_far_closer_than_a_brighter_blurred_or_noise_copy(ct):
    train, test, extractor, _, _ = ct
    measure = SliceFrechetDistance(extractor)
    x, generator = test.items, torch.Generator().manual_seed(0)
    copies = {
        "shifted": torch.roll(x, 1, dims=2),  # one voxel (4 mm) to the right
        "brighter": (x + 300).clamp(-1000, 1000),
        "blurred": torch.stack([GaussianSmooth(2.0)(v) for v in x]),
        "noise": (300 * torch.randn(x.shape, generator=generator)).clamp(-1000, 1000),
    }
    scores = {name: _score(measure, v, train, test)["frechet_distance"] for name, v in copies.items()}
    shifted = scores["shifted"]["mean"]["synthetic_vs_test"]
    for name in ("brighter", "blurred", "noise"):
        assert shifted < 0.2 * scores[name]["mean"]["synthetic_vs_test"], name
    for plane in PLANES:  # blur changes every plane
        assert scores["blurred"][plane]["synthetic_vs_test"] > 2 * scores["shifted"][plane]["synthetic_vs_test"], plane
