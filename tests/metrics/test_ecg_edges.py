"""Window-edge artefacts of ECG beats: real cohort beats continue smoothly to their borders, and so do the beats the
shipped weights generate (the v0.2 weights stepped at their first / last samples more steeply than at their QRS)."""

from __future__ import annotations

import numpy as np
import pytest

from monai_gen.bundle.ecg_cohort import build_beat_cohort
from monai_gen.bundle.registry import bundle_component, find_bundle
from monai_gen.engines.requests import SampleRequest
from monai_gen.metrics.ecg import edge_deviation, edge_step_ratio

BUNDLE = find_bundle("ecg_generative_diffusion")
FS, R_INDEX = 500.0, 200
EDGE_STEP_FRACTION_LIMIT = 0.25  # beats with a lead stepping at its border more than at its QRS (v0.2: 0.88)
EDGE_DEVIATION_RATIO_LIMIT = 2.0  # median edge deviation, synthetic / real (v0.2: 7)


@pytest.fixture(scope="module")
def real_beats(shared_data, ecg_preparation) -> np.ndarray:
    records = sorted((shared_data / "ecg" / "cinc2021").glob("*.hea"))[:12]
    return build_beat_cohort(records, **ecg_preparation, max_beats_per_record=10).items.numpy()


@pytest.fixture(scope="module")
def shipped_beats() -> np.ndarray:
    """16 unconditioned beats (mV) from the shipped weights, as the bundle writes them: the configs' own sample
    generator (network, mean window, sampler, context-margin crop, derived limb leads)."""
    generate = bundle_component(BUNDLE, "sample_generator")
    return generate([SampleRequest(f"edge_{seed}", seed, {}) for seed in range(16)]).numpy()


def test_real_beats_are_smooth_at_their_edges(real_beats):
    ratio, deviation = edge_step_ratio(real_beats, FS, r_index=R_INDEX), edge_deviation(real_beats)
    assert ratio.shape == (len(real_beats),) and deviation.shape == (len(real_beats), 2)
    assert len(real_beats) > 50 and ratio.max() < 0.5  # no real beat steps at its border like at its QRS
    assert np.median(deviation) < 0.1  # mV over the first / last 20 ms


def test_shipped_weights_are_about_as_smooth_at_their_edges_as_real_beats(real_beats, shipped_beats):
    # issue 10 item 8: the v0.2 weights stepped at their first / last sample more than at the QRS in 88 % of beats
    # (per lead, one edge sample; real 5.5 %) with a median edge deviation of 0.28 mV (real 0.04). v0.3 trains
    # and samples a window 32 samples wider on each side and crops that margin off.
    assert shipped_beats.shape == (16, 12, 576)
    per_lead = edge_step_ratio(shipped_beats, FS, r_index=R_INDEX, edge_samples=1, per_lead=True)
    real_per_lead = edge_step_ratio(real_beats, FS, r_index=R_INDEX, edge_samples=1, per_lead=True)
    stepping, real_stepping = np.mean((per_lead > 1).any(axis=1)), np.mean((real_per_lead > 1).any(axis=1))
    assert stepping <= max(EDGE_STEP_FRACTION_LIMIT, 2 * real_stepping), (stepping, real_stepping)
    assert np.median(edge_deviation(shipped_beats)) <= EDGE_DEVIATION_RATIO_LIMIT * np.median(edge_deviation(real_beats))


def test_a_step_at_the_border_is_found_and_scored_against_the_qrs():
    t = np.arange(576) / FS
    beat = np.zeros((12, 576))
    beat[:, R_INDEX - 10 : R_INDEX + 10] = np.hanning(20)  # a 40 ms QRS of 1 mV
    qrs_step = np.abs(np.diff(np.hanning(20))).max()
    smooth = edge_step_ratio(beat + 0.05 * np.sin(2 * np.pi * t), FS, r_index=R_INDEX)
    beat[3, 0] = -0.3  # a 0.3 mV dip at the first sample of one lead
    assert smooth[0] < 0.1 and edge_step_ratio(beat, FS, r_index=R_INDEX)[0] == pytest.approx(0.3 / qrs_step)
    per_lead = edge_step_ratio(beat, FS, r_index=R_INDEX, per_lead=True)[0]
    assert per_lead[3] == pytest.approx(0.3 / qrs_step) and np.all(np.delete(per_lead, 3) == 0)
    np.testing.assert_allclose(edge_deviation(beat), [[0.3, 0.0]])


def test_bad_beats_are_rejected():
    with pytest.raises(ValueError, match=r"beats must be \(N, leads, samples\) with at least 8 samples, got shape \(5,\)"):
        edge_step_ratio(np.zeros(5), FS, r_index=2)
    with pytest.raises(ValueError, match="0 <= r_index < 576"):
        edge_step_ratio(np.zeros((12, 576)), FS, r_index=600)
    with pytest.raises(ValueError, match="edge_samples must be >= 1, got 0"):
        edge_deviation(np.zeros((12, 576)), edge_samples=0)
