from __future__ import annotations

import math

import numpy as np
import pytest

from monai_gen.metrics.fidelity import PhenotypeProbe, auroc_fidelity, pearson_fidelity


def test_pearson_fidelity_is_exact_on_linear_relation_and_drops_failed_measurements():
    requested = np.linspace(350, 450, 11)
    measured = 2 * requested + 1
    measured[3] = np.nan
    score = pearson_fidelity(requested, measured)
    assert score.value == pytest.approx(1.0) and score.n == 10 and score.n_failed == 1
    assert pearson_fidelity(requested, -requested).value == pytest.approx(-1.0)
    assert math.isnan(pearson_fidelity(requested, np.full(11, 400.0)).value)
    with pytest.raises(ValueError, match="differ in length"):
        pearson_fidelity([1, 2, 3], [1, 2])


def test_auroc_fidelity_perfect_and_chance():
    assert auroc_fidelity([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]).value == 1.0
    assert auroc_fidelity([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]).value == 0.0
    assert math.isnan(auroc_fidelity([1, 1, 1], [0.1, 0.2, 0.3]).value)


def test_probe_reads_back_a_property_of_real_ecgs_on_held_out_records(ecg_windows):
    # target: mean level of lead II over the 1 s window -- a property carried by the signal itself
    target = ecg_windows[:, 1].mean(axis=1)
    train, test = slice(0, 90), slice(90, None)
    probe = PhenotypeProbe("continuous", n_components=64).fit(ecg_windows[train], target[train])
    assert probe.score(ecg_windows[test], target[test]).value > 0.85
    shuffled = np.random.default_rng(0).permutation(target[test])
    assert abs(probe.score(ecg_windows[test], shuffled).value) < 0.5

    label = (target > np.median(target)).astype(float)
    binary = PhenotypeProbe("binary", n_components=64).fit(ecg_windows[train], label[train])
    assert binary.score(ecg_windows[test], label[test]).value > 0.75


def test_probe_errors():
    with pytest.raises(ValueError, match="kind"):
        PhenotypeProbe("ordinal")
    with pytest.raises(RuntimeError, match="before fit"):
        PhenotypeProbe().predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        PhenotypeProbe().fit(np.full((6, 3), np.nan), np.arange(6))
    with pytest.raises(ValueError, match="at least 4"):
        PhenotypeProbe().fit(np.zeros((6, 3)), [1, 2, np.nan, np.nan, np.nan, np.nan])
