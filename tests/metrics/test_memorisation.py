from __future__ import annotations

import torch

from monai_gen.metrics.memorisation import memorisation_report, nearest_distances


def test_nearest_distances_exact():
    reference = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    samples = torch.tensor([[0.0, 1.0], [3.0, 4.0], [6.0, 8.0]])
    torch.testing.assert_close(nearest_distances(samples, reference, chunk=2), torch.tensor([1.0, 0.0, 5.0], dtype=torch.float64))


def test_copies_of_training_data_are_flagged_and_unseen_real_data_is_not(ecg_windows):
    windows = torch.from_numpy(ecg_windows)
    train, test, unseen = windows[:60], windows[60:90], windows[90:]
    copies = train[:30] + 0.001 * torch.randn(30, *train.shape[1:], generator=torch.Generator().manual_seed(0))
    copied = memorisation_report(copies, train, test)
    assert copied.fraction_closer_to_train == 1.0 and copied.p_value < 1e-6
    assert copied.mean_to_train < 0.1 * copied.mean_to_test

    honest = memorisation_report(unseen, train, test)
    assert honest.expected_fraction == 60 / 90
    assert abs(honest.fraction_closer_to_train - honest.expected_fraction) < 0.3
    assert honest.mean_to_train > 0.5 * honest.mean_to_test
