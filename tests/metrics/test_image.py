"""Image measures on real IXI T1 slices: realism on trained features (real vs degraded), MS-SSIM diversity (a
collapsed generator), autoencoder reconstruction (identity vs blur vs an untrained MONAI AutoencoderKL), feature
views."""

from __future__ import annotations

import math

import pytest
import torch
from monai.transforms import GaussianSmooth

from monai_gen.diffusion.latent import LatentSpace
from monai_gen.metrics.evaluation import EvaluationData, Memorisation
from monai_gen.metrics.image import (
    MS_SSIM_WEIGHTS,
    AutoencoderReconstruction,
    FeatureSpace,
    ImageRealism,
    MSSSIMDiversity,
    ms_ssim_weights,
    pairwise_ms_ssim,
    random_pairs,
    reconstruction_scores,
)
from monai_gen.metrics.image_features import train_feature_extractor
from monai_gen.networks.autoencoders import kl_autoencoder
from monai_gen.transforms.normalisation import LinearNormalisation


@pytest.fixture(scope="module")
def cohort(ixi_slices):
    """Five axial slices of each of 16 IXI subjects (conftest)."""
    return ixi_slices


@pytest.fixture(scope="module")
def split(cohort):
    """Disjoint subjects: 8 for training (40 slices), then two held-out sets of 4 subjects (20 slices each)."""
    return cohort.subset(range(40)), cohort.subset(range(40, 60)), cohort.subset(range(60, 80))


@pytest.fixture(scope="module")
def extractor(split):
    return train_feature_extractor(split[0].items, split[0].rows, continuous=["age", "slice_position"],
                                   categorical={"sex": ["F", "M"]}, max_epochs=4)


def _data(synthetic: torch.Tensor, train, test) -> EvaluationData:
    requested = [{k: v for k, v in row.items() if k != "subject_id"} for row in test.rows]
    return EvaluationData(synthetic, requested, train, test, 0)


def _blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.stack([GaussianSmooth(sigma)(image) for image in images])


def _noise(images: torch.Tensor, sigma: float) -> torch.Tensor:
    return (images + sigma * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)


def test_realism_ranks_real_slices_above_blurred_and_noisy_ones(split, extractor):
    train, test, other = split
    measure = ImageRealism(extractor)
    real = measure(_data(other.items, train, test))
    blurred = measure(_data(_blur(other.items, 1.0), train, test))
    noisy = measure(_data(_noise(other.items, 0.2), train, test))
    same = real["synthetic_vs_test"]
    for degraded in (blurred["synthetic_vs_test"], noisy["synthetic_vs_test"]):
        assert same["frechet_distance"] < 0.7 * degraded["frechet_distance"]
        assert same["kid"]["mean"] + 0.02 < degraded["kid"]["mean"]
    assert same["precision"] >= 0.5 and noisy["synthetic_vs_test"]["precision"] < same["precision"] - 0.2
    assert real["train_vs_test"] == blurred["train_vs_test"]  # the reference does not depend on the samples
    assert real["n"] == {"synthetic": 20, "real_test": 20, "real_train": 20}
    assert all(math.isfinite(v) for v in (same["frechet_distance"], same["kid"]["std"], same["recall"]))
    lines = measure.markdown(noisy)
    assert lines[0] == "## Realism on trained features" and "ResNet" in lines[2]
    assert "precision" in noisy["summary"] and any(line.startswith("| KID") for line in lines)


def test_memorisation_on_features_flags_copied_training_slices(split, extractor):
    train, test, other = split
    measure = FeatureSpace(Memorisation(unit="extractor features"), extractor, name="memorisation_features")
    copied = measure(_data(train.items[:20], train, test))
    assert copied["fraction_closer_to_train"] == 1.0 and copied["min_to_train"] == 0.0
    held_out = measure(_data(other.items, train, test))
    assert held_out["fraction_closer_to_train"] < 0.9 and held_out["min_to_train"] > 0.0
    assert measure.name == "memorisation_features" and measure.markdown(held_out)[0].startswith("## Memorisation")


def test_weights_keep_the_scales_a_small_image_allows():
    assert ms_ssim_weights((256, 256), 11) == pytest.approx(MS_SSIM_WEIGHTS, rel=1e-3)
    four = ms_ssim_weights((64, 64), 7)  # 64 // 16 = 4 <= 6 rules out the fifth scale
    assert len(four) == 4 and sum(four) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="too small"):
        ms_ssim_weights((8, 8), 11)


def test_random_pairs_are_distinct_seeded_and_stay_within_groups():
    pairs = random_pairs(12, max_pairs=32, seed=0)
    assert pairs == random_pairs(12, max_pairs=32, seed=0) and 10 < len(pairs) <= 32
    assert all(0 <= a < b < 12 for a, b in pairs)
    groups = [i % 3 for i in range(12)]
    assert all(groups[a] == groups[b] for a, b in random_pairs(12, max_pairs=32, seed=0, groups=groups))
    assert random_pairs(3, max_pairs=8, groups=["a", "b", "c"]) == []
    with pytest.raises(ValueError, match="group labels"):
        random_pairs(3, groups=["a"])


def test_pairs_of_one_image_score_one_and_real_pairs_less(cohort):
    same = pairwise_ms_ssim(cohort.items[:1].repeat(5, 1, 1, 1), random_pairs(5, max_pairs=8))
    assert same["mean"] == pytest.approx(1.0, abs=1e-4)
    real = pairwise_ms_ssim(cohort.items[:20], random_pairs(20, max_pairs=32))
    assert 0.05 < real["mean"] < 0.95 and real["pairs"] > 10
    assert math.isnan(pairwise_ms_ssim(cohort.items[:2], [])["mean"])


def test_diversity_at_equal_conditions_flags_a_generator_collapsed_per_slice_position(split):
    _, test, other = split
    # one synthetic slice per requested position, the same for every subject: varied across positions only
    template = {row["slice_position"]: image for row, image in zip(other.rows, other.items, strict=True)}
    collapsed = torch.stack([template[row["slice_position"]] for row in test.rows])
    collapsed = _noise(collapsed, 0.01)
    data = _data(collapsed, split[0], test)
    any_pairs = MSSSIMDiversity(max_pairs=64)(data)
    per_position = MSSSIMDiversity(max_pairs=64, same_conditions=["slice_position"])
    section = per_position(data)
    assert section["synthetic_pairs"]["mean"] > 0.9 > section["real_test_pairs"]["mean"]
    assert section["difference"] > 0.3 and section["difference"] > any_pairs["difference"] + 0.2
    assert section["synthetic_pairs"]["pairs"] == section["real_test_pairs"]["pairs"] >= 10
    lines = per_position.markdown(section)
    assert lines[0].startswith("## Diversity") and "equal slice_position" in lines[2]
    assert section["summary"].startswith("diversity: MS-SSIM")


def test_reconstruction_scores_identity_perfect_blur_worse(cohort):
    images = cohort.items[:10]
    identity = reconstruction_scores(images, images.clone())
    assert identity["ms_ssim"]["mean"] == pytest.approx(1.0, abs=1e-5) and identity["psnr_db"]["mean"] == math.inf
    blurred = reconstruction_scores(images, _blur(images, 1.0))
    assert 0.5 < blurred["ms_ssim"]["mean"] < 0.99 and 15 < blurred["psnr_db"]["mean"] < 40
    blurrier = reconstruction_scores(images, _blur(images, 2.0))
    assert blurrier["ms_ssim"]["mean"] < blurred["ms_ssim"]["mean"]
    assert blurrier["psnr_db"]["mean"] < blurred["psnr_db"]["mean"]
    with pytest.raises(ValueError, match="must match"):
        reconstruction_scores(images, images[:, :, :32])


def test_autoencoder_reconstruction_measure_runs_in_model_space(split):
    train, test, _ = split
    normalisation = LinearNormalisation(0.5, offset=0.5)
    seen = []

    def encode(x):
        seen.append((float(x.min()), float(x.max())))
        return x

    identity = AutoencoderReconstruction(encode, lambda z: z, normalisation=normalisation, batch_size=8)
    section = identity(_data(test.items, train, test))
    assert section["ms_ssim"]["mean"] == pytest.approx(1.0, abs=1e-5) and section["n"] == 20
    assert min(lo for lo, _ in seen) >= -1.0 and max(hi for _, hi in seen) <= 1.0 and len(seen) == 3  # [-1, 1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        space = LatentSpace(kl_autoencoder(2, 1, channels=(8, 8), latent_channels=2, num_res_blocks=1,
                                           norm_num_groups=4))
    untrained = AutoencoderReconstruction(space.encode, space.decode, normalisation=normalisation)(
        _data(test.items, train, test))
    assert math.isfinite(untrained["psnr_db"]["mean"]) and untrained["ms_ssim"]["mean"] < 0.9
    assert untrained["summary"].startswith("autoencoder reconstruction of 20 real test images")
    assert AutoencoderReconstruction(space.encode, space.decode).markdown(untrained)[0].startswith("## Autoencoder")
