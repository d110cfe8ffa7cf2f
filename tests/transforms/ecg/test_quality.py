"""The ECG signal-quality gate: real records of every shared data set pass it, generated noise does not."""

from __future__ import annotations

import numpy as np
import pytest

from monai_gen.transforms.ecg.array import LoadECG, RemoveBaselineWander, ResampleECG, StandardiseLeads
from monai_gen.transforms.ecg.functional import MIN_QRS_AGREEMENT, check_ecg_quality

# LUDB records whose lead II the two detectors disagree on (74, 111, 34) or whose best lead agrees least (41, 189)
HARD_LUDB = ("74", "111", "34", "41", "189", "147", "83", "1", "199")


def _prepared(path):
    """As the beat cohort prepares a record: 12 standard leads at 500 Hz without baseline wander."""
    ecg = path
    for transform in (LoadECG(), StandardiseLeads(), ResampleECG(500.0), RemoveBaselineWander(cutoff_hz=0.5)):
        ecg = transform(ecg)
    return ecg.numpy()


def _noise(fs: float, seed: int) -> np.ndarray:
    """Ten seconds of 12-lead Gaussian noise (0.3 mV) recorded at ``fs``, resampled to 500 Hz as the cohort does."""
    noise = np.random.default_rng(seed).normal(0.0, 0.3, size=(12, int(10 * fs))).astype(np.float32)
    return RemoveBaselineWander(cutoff_hz=0.5, fs=500.0)(ResampleECG(500.0, fs=fs)(noise))


def test_every_cinc2021_record_passes(cinc_signals):
    for name, signal in cinc_signals.items():
        assert check_ecg_quality(signal, 500.0, where=name) >= MIN_QRS_AGREEMENT, name


def test_ludb_cpsc_and_ptb_records_pass(shared_data):
    ecg = shared_data / "ecg"
    records = [ecg / "ludb/data" / f"{n}.hea" for n in HARD_LUDB]
    records += sorted((ecg / "cpsc2018").glob("*.mat"))[:4] + [ecg / "ptb_s0010_re/s0010_re.hea"]
    for path in records:
        assert check_ecg_quality(_prepared(path), 500.0, where=str(path)) >= MIN_QRS_AGREEMENT, path.name


@pytest.mark.parametrize("fs", [50.0, 500.0])
def test_gaussian_noise_fails_with_the_reason(fs):
    for seed in range(4):
        with pytest.raises(ValueError, match=r"noise\.hea: fails the ECG signal-quality gate: .* agree on at most"):
            check_ecg_quality(_noise(fs, seed), 500.0, where="noise.hea")


def test_a_record_with_one_good_lead_passes_and_a_threshold_above_one_fails(shared_data):
    signal = _prepared(shared_data / "ecg/cinc2021/E07500.hea")
    noisy = _noise(500.0, 0)
    noisy[1] = signal[1]  # only lead II is an ECG
    assert check_ecg_quality(noisy, 500.0) >= MIN_QRS_AGREEMENT
    with pytest.raises(ValueError, match="110% needed"):
        check_ecg_quality(signal, 500.0, min_agreement=1.1)
    with pytest.raises(ValueError, match="under 2 s"):
        check_ecg_quality(signal[:, :500], 500.0)


@pytest.mark.slow
def test_every_real_12_lead_record_passes(shared_data):
    """All 221 real 12-lead records of the shared data (about a minute)."""
    ecg = shared_data / "ecg"
    records = [p for p in sorted(ecg.rglob("*.hea")) if "cpsc2021_af" not in p.parts] + sorted(ecg.rglob("*.mat"))
    records = [p for p in records if p.suffix == ".hea" or not p.with_suffix(".hea").exists()]
    assert len(records) == 221
    for path in records:
        assert check_ecg_quality(_prepared(path), 500.0, where=str(path)) >= MIN_QRS_AGREEMENT, path.name

