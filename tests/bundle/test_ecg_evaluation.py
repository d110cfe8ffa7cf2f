"""The ECG evaluation on real beats: an oracle generator reaches the real ceiling, a copier is caught."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monai_gen.bundle.ecg_cohort import build_beat_cohort
from monai_gen.bundle.ecg_evaluation import evaluate_ecg_generator, measure_beats
from monai_gen.engines.cohort import split_by_subject
from monai_gen.metrics.ecg import limb_lead_residual, next_beat_rr_ms, qrs_alignment


@pytest.fixture(scope="module")
def cohorts(shared_data):
    records = sorted((shared_data / "ecg" / "cinc2021").glob("*.hea"))[::3]
    split = split_by_subject(build_beat_cohort(records, max_beats_per_record=6), test_fraction=0.3, seed=0)
    return split.train, split.test


def test_oracle_generator_matches_the_real_ceiling(cohorts, tmp_path):
    train, test = cohorts
    lookup = {i: test.items[i] for i in range(len(test))}

    def oracle(rows, seeds):  # returns the real test beat the conditions came from
        return torch.stack([lookup[s] for s in seeds])

    report = evaluate_ecg_generator(oracle, train, test, output_dir=tmp_path, max_samples=None, seed=0)
    for name in ("qrs", "qt", "heart_rate", "sex"):
        entry = report["fidelity"][name]
        assert entry["synthetic"]["value"] == pytest.approx(entry["real"]["value"], abs=1e-9)
    assert report["fidelity"]["qt"]["real"]["value"] > 0.8
    assert report["realism"]["frechet_distance"]["synthetic_vs_test"] == pytest.approx(0.0, abs=1e-6)
    assert report["realism"]["limb_lead_residual_median"]["synthetic"] < 0.1
    assert report["realism"]["qrs_aligned_fraction"]["synthetic"] == report["realism"]["qrs_aligned_fraction"]["real_test"] > 0.9
    assert json.loads((tmp_path / "evaluation.json").read_text())["n_synthetic"] == len(test)
    assert "| qt |" in (tmp_path / "evaluation.md").read_text()
    assert (tmp_path / "examples.png").stat().st_size > 1000


def test_a_generator_that_copies_training_beats_is_flagged(cohorts, tmp_path):
    train, test = cohorts

    def copier(rows, seeds):
        return train.items[torch.as_tensor(seeds) % len(train)]

    report = evaluate_ecg_generator(copier, train, test, output_dir=tmp_path, max_samples=20)
    memo = report["memorisation"]
    assert memo["min_to_train"] == 0.0 and memo["fraction_closer_to_train"] == 1.0 and memo["p_value"] < 1e-3


def test_wrong_generator_output_is_an_error(cohorts, tmp_path):
    train, test = cohorts
    with pytest.raises(ValueError, match="expected"):
        evaluate_ecg_generator(lambda rows, seeds: torch.zeros(len(rows), 12, 100), train, test, output_dir=tmp_path, max_samples=4)


def test_limb_lead_laws_hold_on_real_beats_and_fail_on_shuffled_leads(cohorts):
    beats = cohorts[0].items.numpy()
    assert np.median(limb_lead_residual(beats)) < 0.1
    shuffled = beats[:, [0, 1, 6, 7, 8, 9, 2, 3, 4, 5, 10, 11]]
    assert np.median(limb_lead_residual(shuffled)) > 0.5
    with pytest.raises(ValueError, match="standard lead order"):
        limb_lead_residual(np.zeros((2, 3, 10)))


def test_rr_read_from_the_window_matches_the_record(cohorts):
    train, _ = cohorts
    fast = [i for i, r in enumerate(train.rows) if r["heart_rate"] > 100]
    slow = [i for i, r in enumerate(train.rows) if r["heart_rate"] < 60]
    for i in fast[:5]:
        rr = next_beat_rr_ms(train.items[i].numpy(), 500, r_index=200)
        assert rr == pytest.approx(60000 / train.rows[i]["heart_rate"], rel=0.15)
    for i in slow[:5]:
        assert next_beat_rr_ms(train.items[i].numpy(), 500, r_index=200) is None
    measured = measure_beats(train.items[:4])
    assert measured["qt"].shape == (4,)


def test_qrs_alignment_holds_on_real_beats_and_fails_when_the_qrs_moves(cohorts):
    beats = cohorts[1].items.numpy()
    aligned = qrs_alignment(beats, 500.0, r_index=200)
    assert aligned.shape == (len(beats),) and np.mean(aligned >= 0.5) > 0.95
    moved = np.roll(beats, 150, axis=-1)  # every QRS now at sample 350
    assert np.mean(qrs_alignment(moved, 500.0, r_index=200) >= 0.5) < 0.3
    with pytest.raises(ValueError, match="r_index=600"):
        qrs_alignment(beats, 500.0, r_index=600)
