from __future__ import annotations

import pytest
import torch

from monai_gen.metrics.distribution import PCAFeatures, frechet_distance, linear_mmd


def test_same_distribution_is_closer_than_a_distorted_one(ecg_windows):
    features = PCAFeatures(8).fit(ecg_windows[0::2])
    real_a, real_b = features(ecg_windows[0::2]), features(ecg_windows[1::2])
    distorted = features(ecg_windows[1::2] * 2.0 + 0.3)
    assert real_a.shape == (60, 8)
    assert frechet_distance(real_a, real_a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(real_a, real_b) < 0.5 * frechet_distance(real_a, distorted)
    g = torch.Generator().manual_seed(0)
    assert linear_mmd(real_a, real_b, generator=g) < 0.5 * linear_mmd(real_a, distorted, generator=g)


def test_feature_errors(ecg_windows):
    with pytest.raises(RuntimeError, match="before fit"):
        PCAFeatures()(ecg_windows)
    with pytest.raises(ValueError, match="at least two"):
        PCAFeatures().fit(ecg_windows[:1])
    with pytest.raises(ValueError, match="same F"):
        frechet_distance(torch.zeros(4, 3), torch.zeros(4, 2))
