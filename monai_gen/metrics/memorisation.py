"""Memorisation: are synthetic samples closer to the training data than to unseen real data? (xMADD §4.4.2)

The membership-inference test of Dar et al. (2025) as used in xMADD: for every synthetic sample, the L2
distance to its nearest training sample and to its nearest held-out test sample. A model that copies its
training data puts synthetic samples much nearer to training than to test samples; a model that generalises
shows no difference. Distances are taken on the samples themselves (in their physical units, e.g. mV), since
amplitude is part of what a copy would reproduce.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import stats

__all__ = ["nearest_distances", "MemorisationReport", "memorisation_report"]


def nearest_distances(samples: torch.Tensor, reference: torch.Tensor, *, chunk: int = 256) -> torch.Tensor:
    """L2 distance from each of ``samples`` ``(N, ...)`` to its nearest neighbour in ``reference`` ``(M, ...)``."""
    a = samples.reshape(samples.shape[0], -1).double()
    b = reference.reshape(reference.shape[0], -1).double()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"samples and reference differ in size per sample: {a.shape[1]} vs {b.shape[1]}.")
    if b.shape[0] == 0:
        raise ValueError("reference set is empty.")
    return torch.cat([torch.cdist(part, b).min(dim=1).values for part in a.split(chunk)])


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

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def memorisation_report(synthetic: torch.Tensor, train: torch.Tensor, test: torch.Tensor) -> MemorisationReport:
    """Compare nearest-neighbour distances of ``synthetic`` samples to ``train`` and ``test`` (all ``(N, ...)``)."""
    to_train, to_test = nearest_distances(synthetic, train), nearest_distances(synthetic, test)
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
    )
