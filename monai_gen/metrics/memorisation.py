"""Memorisation: are synthetic samples closer to the training data than to unseen real data? (xMADD §4.4.2)

The membership-inference test of Dar et al. (2025) as used in xMADD: for every synthetic sample, the L2
distance to its nearest training sample and to its nearest held-out test sample. A model that copies its
training data puts synthetic samples much nearer to training than to test samples; a model that generalises
shows no difference. Distances are taken on the samples themselves (in their physical units, e.g. mV), since
amplitude is part of what a copy would reproduce.

A conditional model asked for the conditions of held-out subjects draws samples that resemble those subjects, so the
pooled fraction falls below the size ratio without saying anything about copying. Given the subject each synthetic
sample was drawn for, the report also compares against the test samples of the *other* subjects only, beside the same
comparison for the real test samples themselves (what an ideal generator that draws new real samples would show).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import stats

__all__ = ["nearest_distances", "MemorisationReport", "memorisation_report"]


def nearest_distances(samples: torch.Tensor, reference: torch.Tensor, *, chunk: int = 256,
                      sample_groups: torch.Tensor | None = None, reference_groups: torch.Tensor | None = None,
                      ) -> torch.Tensor:
    """L2 distance from each of ``samples`` ``(N, ...)`` to its nearest neighbour in ``reference`` ``(M, ...)``.

    With integer ``sample_groups`` ``(N,)`` and ``reference_groups`` ``(M,)`` (e.g. subject codes), a sample's own group
    is left out of its reference (``inf`` where nothing else is left).
    """
    a = samples.reshape(samples.shape[0], -1).double()
    b = reference.reshape(reference.shape[0], -1).double()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"samples and reference differ in size per sample: {a.shape[1]} vs {b.shape[1]}.")
    if b.shape[0] == 0:
        raise ValueError("reference set is empty.")
    if (sample_groups is None) != (reference_groups is None):
        raise ValueError("sample_groups and reference_groups go together.")
    nearest = []
    for start in range(0, a.shape[0], chunk):
        distances = torch.cdist(a[start:start + chunk], b)
        if sample_groups is not None:
            same = sample_groups[start:start + chunk, None] == reference_groups[None, :]
            distances = distances.masked_fill(same, float("inf"))
        nearest.append(distances.min(dim=1).values)
    return torch.cat(nearest)


@dataclass(frozen=True)
class MemorisationReport:
    """Distances of synthetic samples to their nearest training and test samples.

    Args:
        mean_to_train, mean_to_test: mean nearest-neighbour distance (same units as the samples).
        min_to_train, min_to_test: smallest nearest-neighbour distance over all synthetic samples.
        fraction_closer_to_train: share of synthetic samples whose nearest training sample is nearer than their
            nearest test sample; about the train / (train + test) size ratio for a model that does not copy.
        expected_fraction: that ratio, the value of a model that does not memorise (for equally spread sets).
        p_value: one-sided Wilcoxon signed-rank test that distances to training are smaller than to test.
        n_synthetic, n_train, n_test: set sizes.
        other_subjects_fraction_closer_to_train: as ``fraction_closer_to_train`` with each synthetic sample's test
            reference restricted to the subjects other than the one it was drawn for (``None`` without subjects).
        other_subjects_real_fraction_closer_to_train: the same for the real test samples (each against the
            training samples and the other subjects' test samples): the level of a generator that does not copy.
        other_subjects_expected_fraction: the size ratio of that comparison, averaged over the synthetic samples.
    """

    mean_to_train: float
    mean_to_test: float
    min_to_train: float
    min_to_test: float
    fraction_closer_to_train: float
    expected_fraction: float
    p_value: float
    n_synthetic: int
    n_train: int
    n_test: int
    other_subjects_fraction_closer_to_train: float | None = None
    other_subjects_real_fraction_closer_to_train: float | None = None
    other_subjects_expected_fraction: float | None = None

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def memorisation_report(synthetic: torch.Tensor, train: torch.Tensor, test: torch.Tensor, *,
                        synthetic_subjects: Sequence[object] | None = None,
                        test_subjects: Sequence[object] | None = None) -> MemorisationReport:
    """Compare nearest-neighbour distances of ``synthetic`` samples to ``train`` and ``test`` (all ``(N, ...)``).

    ``synthetic_subjects`` (one per synthetic sample: the test subject whose conditions it was drawn for) with
    ``test_subjects`` (one per test sample) add the comparison against the other subjects' test samples.
    """
    to_train, to_test = nearest_distances(synthetic, train), nearest_distances(synthetic, test)
    other_subjects = {}
    if (synthetic_subjects is None) != (test_subjects is None):
        raise ValueError("synthetic_subjects and test_subjects go together.")
    if synthetic_subjects is not None:
        other_subjects = _other_subjects(synthetic, train, test, to_train, synthetic_subjects, test_subjects)
    difference = (to_train - to_test).numpy()
    p_value = float(stats.wilcoxon(difference, alternative="less").pvalue) if np.any(difference) else 1.0
    return MemorisationReport(
        mean_to_train=float(to_train.mean()),
        mean_to_test=float(to_test.mean()),
        min_to_train=float(to_train.min()),
        min_to_test=float(to_test.min()),
        fraction_closer_to_train=float((to_train < to_test).double().mean()),
        expected_fraction=train.shape[0] / (train.shape[0] + test.shape[0]),
        p_value=p_value,
        n_synthetic=int(synthetic.shape[0]),
        n_train=int(train.shape[0]),
        n_test=int(test.shape[0]),
        **other_subjects,
    )


def _other_subjects(synthetic: torch.Tensor, train: torch.Tensor, test: torch.Tensor, to_train: torch.Tensor,
                    synthetic_subjects: Sequence[object], test_subjects: Sequence[object]) -> dict[str, float]:
    """The report's ``other_subjects_*`` fields (see :class:`MemorisationReport`)."""
    if len(synthetic_subjects) != synthetic.shape[0] or len(test_subjects) != test.shape[0]:
        raise ValueError(f"need one subject per synthetic and per test sample, got {len(synthetic_subjects)} for "
                         f"{synthetic.shape[0]} and {len(test_subjects)} for {test.shape[0]}.")
    codes = torch.as_tensor(np.unique([str(s) for s in (*synthetic_subjects, *test_subjects)], return_inverse=True)[1])
    synthetic_codes, test_codes = codes[:len(synthetic_subjects)], codes[len(synthetic_subjects):]
    if len(test_codes.unique()) < 2:
        raise ValueError("the other-subjects comparison needs test samples of 2 or more subjects, got 1.")
    to_other = nearest_distances(synthetic, test, sample_groups=synthetic_codes, reference_groups=test_codes)
    real_to_train = nearest_distances(test, train)
    real_to_other = nearest_distances(test, test, sample_groups=test_codes, reference_groups=test_codes)
    others = (synthetic_codes[:, None] != test_codes[None, :]).sum(dim=1).double()
    return {
        "other_subjects_fraction_closer_to_train": float((to_train < to_other).double().mean()),
        "other_subjects_real_fraction_closer_to_train": float((real_to_train < real_to_other).double().mean()),
        "other_subjects_expected_fraction": float((train.shape[0] / (train.shape[0] + others)).mean()),
    }
