from __future__ import annotations

import math

import numpy as np
import pytest

from monai_gen.metrics.fidelity import (
    PhenotypeProbe,
    auroc_fidelity,
    circular_fidelity,
    multiclass_auroc_fidelity,
    pearson_fidelity,
)


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


def test_circular_fidelity_counts_round_the_cycle():
    phases = np.array([0.9, 0.95, 0.0, 0.05, 0.1, 0.4, 0.6])
    assert circular_fidelity(phases, np.mod(phases + 0.08, 1.0)).value == pytest.approx(1.0)  # 0.95 -> 0.03
    assert circular_fidelity(phases, np.mod(-phases, 1.0)).value == pytest.approx(-1.0)  # run backwards
    rng = np.random.default_rng(0)
    assert abs(circular_fidelity(rng.random(400), rng.random(400)).value) < 0.15
    assert pearson_fidelity(phases, np.mod(phases + 0.08, 1.0)).value < 0.8  # what a linear R makes of the wrap
    assert math.isnan(circular_fidelity([0.1, 0.2], [0.1, 0.2]).value)


def test_multiclass_auroc_averages_one_vs_rest_over_the_classes_present():
    labels = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.eye(3)[labels] * 0.8 + 0.1
    assert multiclass_auroc_fidelity(labels, perfect).value == 1.0
    assert multiclass_auroc_fidelity(labels, perfect[:, [1, 2, 0]]).value < 0.5
    assert multiclass_auroc_fidelity([0, 0, 2, 2], perfect[[0, 1, 4, 5]]).value == 1.0  # class 1 absent: left out
    assert math.isnan(multiclass_auroc_fidelity([1, 1], perfect[:2]).value)
    with pytest.raises(ValueError, match=r"probabilities must be \(N, K\) with N = 6"):
        multiclass_auroc_fidelity(labels, perfect[:3])


def test_periodic_and_categorical_probes_on_real_signals(ecg_windows, ixi_slices):
    # a phase mixing two real ECG windows by its cosine and sine: linearly readable, and it wraps at 1
    rng = np.random.default_rng(1)
    phase = rng.random(len(ecg_windows) - 2)
    angle = 2 * np.pi * phase[:, None, None]
    mixed = ecg_windows[:1] * np.cos(angle) + ecg_windows[1:2] * np.sin(angle) + 0.05 * ecg_windows[2:]
    probe = PhenotypeProbe("periodic", n_components=16).fit(mixed[:80], phase[:80])
    predicted = probe.predict(mixed[80:])
    assert predicted.min() >= 0 and predicted.max() < 1
    assert probe.score(mixed[80:], phase[80:]).value > 0.9
    assert abs(probe.score(mixed[80:], rng.permutation(phase[80:])).value) < 0.4
    # which of five axial levels an IXI slice comes from, on subjects the probe never saw (one-vs-rest AUROC)
    level = np.tile(np.arange(5), len(ixi_slices.rows) // 5).astype(float)  # five slices per subject, in order
    items, train = ixi_slices.items.numpy(), slice(0, 60)
    categorical = PhenotypeProbe("categorical", n_components=32).fit(items[train], level[train])
    assert categorical.predict(items[60:]).shape == (len(level) - 60, 5)
    assert categorical.score(items[60:], level[60:]).value > 0.8  # 0.88 on these 4 subjects; chance 0.5
    assert categorical.score(items[60:], rng.permutation(level[60:])).value < 0.7


def test_probe_errors():
    with pytest.raises(ValueError, match="kind"):
        PhenotypeProbe("ordinal")
    with pytest.raises(RuntimeError, match="before fit"):
        PhenotypeProbe().predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        PhenotypeProbe().fit(np.full((6, 3), np.nan), np.arange(6))
    with pytest.raises(ValueError, match="at least 4"):
        PhenotypeProbe().fit(np.zeros((6, 3)), [1, 2, np.nan, np.nan, np.nan, np.nan])
