"""The ECG evaluation on real beats: an oracle generator reaches the real ceiling, a copier is caught."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monai_gen.bundle.ecg_cohort import build_beat_cohort
from monai_gen.bundle.ecg_evaluation import ECGExamples, EdgeArtefacts, LimbLeadConsistency, QRSAlignment, measure_beats
from monai_gen.engines.cohort import split_by_subject
from monai_gen.metrics.ecg import limb_lead_residual, next_beat_rr_ms, qrs_alignment
from monai_gen.metrics.evaluation import (
    DistributionDistances,
    MeasuredFidelity,
    Memorisation,
    ProbeFidelity,
    evaluate_generator,
    report_summary,
)

MEASURES = [
    MeasuredFidelity(measure_beats, method="measurement (12-lead prominence delineation)"),
    ProbeFidelity(["heart_rate", "age"], {"sex": ["male", "female"]}),
    DistributionDistances(16), QRSAlignment(), LimbLeadConsistency(), EdgeArtefacts(), Memorisation(unit="mV"),
]


@pytest.fixture(scope="module")
def cohorts(shared_data, ecg_preparation):
    records = sorted((shared_data / "ecg" / "cinc2021").glob("*.hea"))[::3]
    cohort = build_beat_cohort(records, **ecg_preparation, max_beats_per_record=6)
    split = split_by_subject(cohort, test_fraction=0.3, seed=0)
    return split.train, split.test


def test_oracle_generator_matches_the_real_ceiling(cohorts, tmp_path):
    train, test = cohorts
    lookup = {i: test.items[i] for i in range(len(test))}

    def oracle(rows, seeds):  # returns the real test beat the conditions came from
        return torch.stack([lookup[s] for s in seeds])

    report = evaluate_generator(oracle, train, test, measures=MEASURES, output_dir=tmp_path, max_samples=None, seed=0,
                                figures=[ECGExamples()])
    fidelity = {**report["measured_fidelity"]["conditions"], **report["probe_fidelity"]["conditions"]}
    for name in ("qrs", "qt", "heart_rate", "sex"):
        assert fidelity[name]["synthetic"]["value"] == pytest.approx(fidelity[name]["real"]["value"], abs=1e-9)
    assert fidelity["qt"]["real"]["value"] > 0.8
    assert report["distribution"]["frechet_distance"]["synthetic_vs_test"] == pytest.approx(0.0, abs=1e-6)
    assert report["limb_lead_residual"]["synthetic_median"] < 0.1
    assert report["qrs_alignment"]["synthetic"] == report["qrs_alignment"]["real_test"] > 0.9
    assert report["edge_artefacts"]["synthetic"] == report["edge_artefacts"]["real_test"] < 0.2
    memo = report["memorisation"]  # the real beats themselves: pooled nearest test is 0, per subject the real level
    assert memo["fraction_closer_to_train"] == 0.0
    assert memo["other_subjects_fraction_closer_to_train"] == memo["other_subjects_real_fraction_closer_to_train"]
    assert 0.0 < memo["other_subjects_real_fraction_closer_to_train"] < 1.0
    assert json.loads((tmp_path / "evaluation.json").read_text())["n_synthetic"] == len(test)
    markdown = (tmp_path / "evaluation.md").read_text()
    assert "| qt |" in markdown and "## Limb-lead consistency" in markdown and "![examples.png](examples.png)" in markdown
    assert (tmp_path / "examples.png").stat().st_size > 1000
    summary = report_summary(json.loads((tmp_path / "evaluation.json").read_text()), tmp_path)
    assert "qrs R" in summary and "QRS at R" in summary and str(tmp_path / "examples.png") in summary


def test_a_generator_that_copies_training_beats_is_flagged(cohorts, tmp_path):
    train, test = cohorts

    def copier(rows, seeds):
        return train.items[torch.as_tensor(seeds) % len(train)]

    report = evaluate_generator(copier, train, test, measures=[Memorisation()], output_dir=tmp_path, max_samples=20)
    memo = report["memorisation"]
    assert memo["min_to_train"] == 0.0 and memo["fraction_closer_to_train"] == 1.0 and memo["p_value"] < 1e-3
    assert memo["other_subjects_fraction_closer_to_train"] == 1.0
    assert "against the other subjects' test items 1.00" in memo["summary"]


def test_beats_stepping_at_their_window_border_are_counted(cohorts, tmp_path):
    train, test = cohorts
    stepped = test.items.clone()
    stepped[:, :, 0] += 5.0  # a 5 mV jump at the first sample of every lead
    report = evaluate_generator(lambda rows, seeds: stepped[list(seeds)], train, test, measures=[EdgeArtefacts()],
                                output_dir=tmp_path, max_samples=None)
    assert report["edge_artefacts"]["synthetic"] == 1.0 and report["edge_artefacts"]["real_test"] < 0.2


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
