"""The step-count benchmark's statistics (bootstrap R, paired ratio); the throughput benchmark's steady rate."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from benchmarks.ecg_steps import MEASURES, compare, fidelity
from benchmarks.throughput import steady_rate


def _requested_and_measured(seed: int, noise: float) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    requested = {name: rng.normal(100, 20, 200) for name in MEASURES}
    measured = {name: v + rng.normal(0, noise, v.size) for name, v in requested.items()}
    return requested, measured


def test_fidelity_bootstrap_matches_the_normal_theory_standard_error():
    requested, measured = _requested_and_measured(0, 20.0)  # R about 0.71
    measured["heart_rate"][:50] = np.nan  # failed measurements are dropped and counted
    draws = np.random.default_rng(1).integers(0, 200, size=(2000, 200))
    scores = fidelity(measured, requested, draws)
    qrs = scores["qrs"]
    assert qrs["r"] == pytest.approx(np.corrcoef(requested["qrs"], measured["qrs"])[0, 1])
    assert qrs["se"] == pytest.approx((1 - qrs["r"] ** 2) / np.sqrt(200 - 3), rel=0.2)  # Fisher's approximation
    assert qrs["ci95"][0] < qrs["r"] < qrs["ci95"][1]
    assert scores["heart_rate"]["n"] == 150 and scores["heart_rate"]["n_failed"] == 50


def test_compare_is_one_for_the_same_samples_and_tells_a_weaker_sampler():
    requested, measured = _requested_and_measured(0, 20.0)
    draws = np.random.default_rng(1).integers(0, 200, size=(500, 200))
    same = compare(measured, measured, requested, draws)
    assert all(
        same[n]["ratio"] == pytest.approx(1.0) and same[n]["ci95"] == pytest.approx([1.0, 1.0]) for n in MEASURES
    )
    _, noisier = _requested_and_measured(2, 60.0)  # R about 0.32
    weaker = compare(noisier, measured, requested, draws)["qt"]
    assert weaker["ratio"] < 0.7 and weaker["ci95"][1] < 1.0


@pytest.mark.parametrize("ranks", [1, 2])
def test_steady_rate_counts_the_batches_after_each_ranks_first(tmp_path, ranks):
    # 4 batches of 8 samples, one file per sample written 0.1 s apart within its batch, the batches finishing at
    # t0 + 0.7, 2.7, 4.7, 6.7 s: after the first (one rank) 24 samples in 6 s, after the first two 16 in 4 s
    t0 = 1_700_000_000.0
    rows = []
    for i in range(32):
        record = tmp_path / f"ecg_{i}.hea"
        record.write_text("synthetic")
        finished = t0 + 2 * (i // 8) + 0.1 * (i % 8)
        os.utime(record, (finished, finished))
        rows.append({"name": f"ecg_{i}", "files": record.name})
    with (tmp_path / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["name", "files"])
        writer.writeheader()
        writer.writerows(rows[::-1])  # any row order
    rate = steady_rate(tmp_path, batch_size=8, first_batches=ranks)
    assert rate["samples"] == 32 and rate["steady_samples"] == 32 - 8 * ranks
    assert rate["steady_seconds"] == pytest.approx(6.0 if ranks == 1 else 4.0, abs=1e-3)
    assert rate["steady_samples_per_second"] == pytest.approx(4.0, rel=1e-3)
