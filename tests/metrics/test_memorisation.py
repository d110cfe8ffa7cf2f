from __future__ import annotations

import pytest
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


def test_nearest_distances_leave_out_the_sample_s_own_group():
    reference = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    samples = torch.tensor([[0.0, 1.0], [3.0, 4.0]])
    nearest = nearest_distances(samples, reference, chunk=1, sample_groups=torch.tensor([0, 1]),
                                reference_groups=torch.tensor([0, 1, 2]))
    torch.testing.assert_close(nearest, torch.tensor([(9.0 + 9.0) ** 0.5, 5.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="go together"):
        nearest_distances(samples, reference, sample_groups=torch.tensor([0, 1]))


def test_new_beats_of_the_requested_subject_sit_at_the_real_level_once_that_subject_is_left_out(ecg_windows):
    """A generator that returns another real window of the subject it was asked for (a perfect conditional model that
    copies nothing of the training data) looks 'nearer test than chance' pooled, and sits exactly at the real test
    windows' own level once each sample's own subject is left out."""
    windows = torch.from_numpy(ecg_windows)  # 3 windows per record, in record order
    subjects = [f"record{i // 3}" for i in range(len(windows))]
    train, test, test_subjects = windows[:60], windows[60:90], subjects[60:90]
    other_window_of_same_record = torch.stack([test[3 * (i // 3) + (i + 1) % 3] for i in range(30)])
    honest = memorisation_report(other_window_of_same_record, train, test, synthetic_subjects=test_subjects,
                                 test_subjects=test_subjects)
    assert honest.fraction_closer_to_train == 0.0 < honest.expected_fraction
    assert honest.other_subjects_fraction_closer_to_train == honest.other_subjects_real_fraction_closer_to_train > 0.5
    assert honest.other_subjects_expected_fraction == pytest.approx(60 / 87)

    copies = memorisation_report(train[:30], train, test, synthetic_subjects=test_subjects, test_subjects=test_subjects)
    assert copies.other_subjects_fraction_closer_to_train == 1.0
    with pytest.raises(ValueError, match="one subject per synthetic"):
        memorisation_report(train[:30], train, test, synthetic_subjects=test_subjects[:5], test_subjects=test_subjects)
