"""KID and k-NN precision / recall / density / coverage on feature sets: closed forms and generated Gaussians."""

from __future__ import annotations

import pytest
import torch

from monai_gen.metrics.realism import kernel_distance, manifold_precision_recall


def _gaussian(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


def test_kid_matches_the_unbiased_cubic_kernel_estimate_by_hand():
    # x = y = {0, 1} in one dimension, k(a, b) = (a b + 1) ** 3: k(0, 0) = k(0, 1) = 1, k(1, 1) = 8.
    # within each set (off-diagonal): (1 + 1) / 2 = 1; across: (1 + 1 + 1 + 8) / 4 = 2.75; MMD² = 1 + 1 - 5.5.
    x = torch.tensor([[0.0], [1.0]])
    kid = kernel_distance(x, x.clone(), subsets=1, subset_size=2)
    assert kid["mean"] == pytest.approx(-3.5) and kid["subset_size"] == 2 and kid["std"] == 0.0


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    real, same, shifted = _gaussian(200, 0), _gaussian(200, 1), _gaussian(200, 2, shift=0.5)
    generator = torch.Generator().manual_seed(0)
    near = kernel_distance(real, same, subsets=10, subset_size=100, generator=generator)
    far = kernel_distance(real, shifted, subsets=10, subset_size=100, generator=generator)
    assert abs(near["mean"]) < 3 * near["std"] + 1e-3
    assert far["mean"] > 10 * abs(near["mean"]) and far["mean"] > 3 * far["std"]
    first, second = (kernel_distance(real, shifted, subsets=10, subset_size=100,
                                     generator=torch.Generator().manual_seed(0)) for _ in range(2))
    assert first == second  # the subsets come from the generator


def test_precision_recall_of_identical_disjoint_and_half_covered_sets():
    real = _gaussian(40, 0)
    same = manifold_precision_recall(real, real.clone(), k=3)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0 and same["density"] >= 1.0
    far = manifold_precision_recall(real, real + 100.0, k=3)
    assert far["precision"] == far["recall"] == far["density"] == far["coverage"] == 0.0
    half = manifold_precision_recall(real, torch.cat([real[:20], real[20:] + 100.0]), k=3)
    assert half["precision"] == 0.5  # the 20 copies lie on real items, the 20 far ones in no real ball
    assert half["coverage"] >= 0.5 and half["density"] < same["density"]


def test_precision_drops_before_recall_for_a_collapsed_set():
    real = _gaussian(100, 0)
    collapsed = real[:1].repeat(100, 1) + 0.01 * _gaussian(100, 3)  # every synthetic item near one real item
    scores = manifold_precision_recall(real, collapsed, k=3)
    assert scores["precision"] == 1.0 and scores["recall"] < 0.1 and scores["coverage"] < 0.1


def test_bad_feature_sets_are_refused():
    with pytest.raises(ValueError, match="same F"):
        kernel_distance(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least 4"):
        manifold_precision_recall(torch.zeros(3, 2), torch.zeros(8, 2), k=3)
    with pytest.raises(ValueError, match="NaN"):
        manifold_precision_recall(torch.full((8, 2), float("nan")), torch.zeros(8, 2))
    with pytest.raises(ValueError, match="k must be"):
        manifold_precision_recall(torch.zeros(8, 2), torch.zeros(8, 2), k=0)
