"""The ECG evaluation's waveform measures and sweeps on LUDB beats: a generator returning the real test beats matches
the real numbers; copies with noise, flattened T waves, AF beats for sinus requests or stepped edges are flagged;
a sweep follows a generator that returns the real beat nearest the request and not one that ignores it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb

from monai_gen.bundle.ecg_evaluation import (
    EdgeDeviation,
    HighFrequencyPower,
    PWavePresence,
    TWaveAmplitude,
    measure_beats,
)
from monai_gen.data.ludb import expert_intervals, read_ludb_delineation, read_ludb_signal
from monai_gen.engines.cohort import Cohort
from monai_gen.metrics.evaluation import SweepFidelity, evaluate_generator, report_summary
from monai_gen.transforms.ecg import RemoveBaselineWander
from monai_gen.transforms.ecg.functional import beat_windows, detect_r_peaks

R_INDEX = 200
# LUDB rhythms and how many records of each: the fast ones give heart rates the window can show (above ~80 bpm)
RHYTHMS = {"Sinus rhythm": 6, "Sinus tachycardia": 3, "Sinus bradycardia": 2, "Atrial fibrillation": 4}


def _record_beats(record: Path, rhythm: str) -> tuple[np.ndarray, list[dict]]:
    """3 R-aligned beats (mV, baseline removed as the bundle does) and their rows: the record's rhythm and experts'
    intervals, and the beat's own RR to the next R peak of the record (``next_rr_ms``, bookkeeping)."""
    signal, fs = read_ludb_signal(record)
    signal = RemoveBaselineWander(fs=fs)(signal)
    peaks = detect_r_peaks(signal, fs)
    windows, kept = beat_windows(signal, peaks, n_samples=576, r_index=R_INDEX)
    experts = expert_intervals(read_ludb_delineation(record), fs)
    row = {"record_id": record.name, "atrial_fibrillation": "yes" if "fibrillation" in rhythm else "no"}
    row.update({name: round(experts[f"{name}_ms"], 1) for name in ("qrs", "qt")})
    row["heart_rate"] = round(experts["heart_rate_bpm"], 1)
    next_rr = [(peaks[np.searchsorted(peaks, r) + 1] - r) / fs * 1000.0 for r in kept[1:4]]
    return windows[1:4].astype(np.float32), [{**row, "next_rr_ms": rr} for rr in next_rr]


@pytest.fixture(scope="module")
def cohorts(shared_data) -> tuple[Cohort, Cohort]:
    """Train / test cohorts of LUDB beats, alternate records of each rhythm in each."""
    headers = sorted((shared_data / "ecg" / "ludb" / "data").glob("*.hea"), key=lambda h: int(h.stem))
    comments = {h: " ".join(wfdb.rdheader(str(h.with_suffix(""))).comments) for h in headers}
    split = {"train": ([], []), "test": ([], [])}
    for rhythm, count in RHYTHMS.items():
        records = [h.with_suffix("") for h in headers if f"Rhythm: {rhythm}." in comments[h]][:count]
        for k, record in enumerate(records):
            beats, beat_rows = _record_beats(record, rhythm)
            items, rows = split["test" if k % 2 == 0 else "train"]
            items.append(beats)
            rows.extend(beat_rows)
    return tuple(Cohort(torch.from_numpy(np.concatenate(items)), rows, "record_id") for items, rows in split.values())


def _evaluate(beats: torch.Tensor, cohorts, measures, tmp_path) -> dict:
    """The report for a 'generator' that returns ``beats[i]`` for the i-th test item's conditions."""
    train, test = cohorts
    return evaluate_generator(lambda rows, seeds: beats[list(seeds)], train, test, measures=measures,
                              output_dir=tmp_path, max_samples=None, seed=0)


def test_the_heart_rate_is_read_where_the_next_beat_is_in_the_window(cohorts):
    train, _ = cohorts
    measured = measure_beats(train.items)
    assert set(measured) == {"qrs", "qt", "heart_rate"} and measured["heart_rate"].shape == (len(train),)
    beat_rate = 60000.0 / np.array([r["next_rr_ms"] for r in train.rows])  # from the record's next R peak
    seen = np.isfinite(measured["heart_rate"])
    assert seen.sum() >= 6
    np.testing.assert_allclose(measured["heart_rate"][seen], beat_rate[seen], rtol=0.05)
    # the next R lies in the window (376 samples after R) only at fast rates: no tall T wave is read as one
    assert np.all(beat_rate[seen] > 80) and not seen[beat_rate < 78].any()


def test_real_beats_score_as_real_and_noise_raises_the_high_frequency_power(cohorts, tmp_path):
    test = cohorts[1].items
    report = _evaluate(test, cohorts, [HighFrequencyPower()], tmp_path)["high_frequency_power"]
    assert report["ratio"] == pytest.approx(1.0) and report["within_target"] and report["real_test_median"] < 0.05
    noisy = test + 0.03 * torch.randn(test.shape, generator=torch.Generator().manual_seed(0))  # the 0.03 mV
    report = _evaluate(noisy, cohorts, [HighFrequencyPower()], tmp_path)
    section = report["high_frequency_power"]
    assert section["ratio"] > 3 and not section["within_target"]
    sd = section["first_difference_sd_mv"]
    assert sd["synthetic_median"] > 1.5 * sd["real_test_median"]
    assert "power > 40 Hz" in report_summary(report, tmp_path)
    assert "| power above 40 Hz" in (tmp_path / "evaluation.md").read_text()


def test_flattened_t_waves_are_lower_and_overlap_less_with_the_real_ones(cohorts, tmp_path):
    test = cohorts[1].items
    real = _evaluate(test, cohorts, [TWaveAmplitude()], tmp_path)["t_wave_amplitude"]["leads"]
    assert list(real) == ["V1", "V2", "V3", "V4", "V5", "V6"]
    assert all(e["overlap"] == 1.0 and e["synthetic_median"] == e["real_test_median"] for e in real.values())
    assert real["V3"]["real_test_median"] > 0.15 and real["V3"]["real_test_found"] > 0.9
    taper = torch.ones(576)
    taper[R_INDEX + 30 :] = 0.1  # everything after the QRS (from R + 60 ms) at a tenth, reached over 40 ms
    taper[R_INDEX + 30 : R_INDEX + 50] = torch.linspace(1.0, 0.1, 20)
    report = _evaluate(test * taper, cohorts, [TWaveAmplitude()], tmp_path)
    flat = report["t_wave_amplitude"]["leads"]
    for lead in ("V2", "V3", "V4"):
        assert abs(flat[lead]["synthetic_median"]) < 0.4 * real[lead]["real_test_median"]
        assert flat[lead]["overlap"] < 0.6
    assert "| V3 |" in (tmp_path / "evaluation.md").read_text() and "T amplitude mV" in report_summary(report, tmp_path)


def test_p_waves_are_counted_in_sinus_requests_only(cohorts, tmp_path):
    train, test = cohorts
    sinus = [r["atrial_fibrillation"] == "no" for r in test.rows]
    report = _evaluate(test.items, cohorts, [PWavePresence()], tmp_path)["p_wave_presence"]
    assert report["synthetic"] == report["real_test"] and report["real_test"]["n"] == sum(sinus) < len(test)
    assert report["real_test"]["fraction"] > 0.9
    af_beats = train.items[[r["atrial_fibrillation"] == "yes" for r in train.rows]]
    fibrillating = af_beats[torch.arange(len(test)) % len(af_beats)]  # AF beats whatever the request
    report = _evaluate(fibrillating, cohorts, [PWavePresence()], tmp_path)["p_wave_presence"]
    assert report["synthetic"]["fraction"] < 0.7 and report["synthetic"]["n"] == sum(sinus)
    everything = _evaluate(test.items, cohorts, [PWavePresence(condition="rhythm")], tmp_path)["p_wave_presence"]
    assert everything["synthetic"]["n"] == len(test)  # no row has the condition: every beat counts


def test_stepped_edges_lie_outside_the_real_range(cohorts, tmp_path):
    test = cohorts[1].items
    real = _evaluate(test, cohorts, [EdgeDeviation()], tmp_path)["edge_deviation"]
    assert real["start"]["within_real_range"] and real["end"]["within_real_range"]
    assert real["end"]["real_test_median"] < 0.1
    stepped = test.clone()
    stepped[:, :, :10] -= 0.4  # a dip at the first samples and a spike at the last (issue 12 item 6)
    stepped[:, :, -10:] += torch.linspace(0, 0.8, 10)
    report = _evaluate(stepped, cohorts, [EdgeDeviation()], tmp_path)
    section = report["edge_deviation"]
    for edge in ("start", "end"):
        assert not section[edge]["within_real_range"]
        assert section[edge]["synthetic_median"] > section[edge]["real_test_range"][1]
    assert "outside its 5-95 %" in report_summary(report, tmp_path)
    assert "| start |" in (tmp_path / "evaluation.md").read_text()


def test_sweeps_follow_the_nearest_real_beat_and_not_a_constant_beat(cohorts, tmp_path):
    train, test = cohorts
    pool = torch.cat([train.items, test.items])
    measured = measure_beats(pool)
    values = {name: np.nanpercentile(v, [10, 50, 90]).round(1).tolist() for name, v in measured.items()}

    def nearest(rows, seeds):
        """For a sweep's one-condition row, the real beat whose measured value is nearest the request (the second
        nearest for odd seeds); for the evaluation's own rows, the test beat."""
        picks = []
        for row, seed in zip(rows, seeds, strict=True):
            if len(row) > 1:
                picks.append(len(train) + seed)
                continue
            (name, value), = row.items()
            order = np.argsort(np.where(np.isfinite(measured[name]), np.abs(measured[name] - value), np.inf))
            picks.append(int(order[seed % 2]))
        return pool[picks]

    sweep = SweepFidelity(measure_beats, ["qrs", "qt", "heart_rate"], values=values, n_seeds=2)
    report = evaluate_generator(nearest, train, test, measures=[sweep], output_dir=tmp_path, max_samples=None)
    for name, entry in report["sweep_fidelity"]["conditions"].items():
        assert entry["synthetic"]["value"] > 0.8 and entry["synthetic"]["n_failed"] == 0, (name, entry)
        assert np.isfinite(entry["real"]["value"]) and entry["slope"] > 0.5
    sweep = SweepFidelity(measure_beats, ["qrs", "qt"], values={"qrs": values["qrs"], "qt": values["qt"]}, n_seeds=2)
    constant = evaluate_generator(lambda rows, seeds: pool[[0] * len(rows)], train, test, measures=[sweep],
                                  output_dir=tmp_path, max_samples=3)["sweep_fidelity"]["conditions"]
    assert all(np.isnan(entry["synthetic"]["value"]) for entry in constant.values())
    assert [v["requested"] for v in constant["qt"]["per_value"]] == values["qt"]
    assert "| qt |" in (tmp_path / "evaluation.md").read_text()


def test_a_category_sweep_reads_af_back_from_real_af_beats_and_not_from_a_constant_generator(cohorts, tmp_path):
    from monai_gen.metrics.evaluation import CategorySweepFidelity

    train, test = cohorts
    af = np.array([r["atrial_fibrillation"] == "yes" for r in test.rows])
    pools = {"yes": test.items[af], "no": test.items[~af]}

    def faithful(rows, seeds):  # a held-out real beat of the requested rhythm, chosen by seed
        return torch.stack([pools[r["atrial_fibrillation"]][s % len(pools[r["atrial_fibrillation"]])]
                            for r, s in zip(rows, seeds, strict=True)])

    sweep = CategorySweepFidelity({"atrial_fibrillation": ["no", "yes"]}, n_seeds=6, n_components=8)
    good = evaluate_generator(faithful, train, test, measures=[sweep], output_dir=tmp_path, max_samples=4)
    entry = good["category_sweep_fidelity"]["conditions"]["atrial_fibrillation"]
    assert entry["synthetic"]["value"] >= 0.75 and entry["synthetic"]["n"] == 12, entry
    assert entry["real_reference"] == "real test items" and np.isfinite(entry["real"]["value"])
    constant = evaluate_generator(lambda rows, seeds: test.items[[0] * len(rows)], train, test, measures=[sweep],
                                  output_dir=tmp_path, max_samples=4)["category_sweep_fidelity"]["conditions"]
    assert constant["atrial_fibrillation"]["synthetic"]["value"] == 0.5
    # a split whose test items hold one category: the real ceiling is the probe's subject-wise cross-validation
    sinus_test = test.subset(np.flatnonzero(~af).tolist())
    fallback = evaluate_generator(faithful, train, sinus_test, measures=[CategorySweepFidelity(
        {"atrial_fibrillation": ["no", "yes"]}, n_seeds=6, n_components=8, n_folds=2)], output_dir=tmp_path,
        max_samples=4)["category_sweep_fidelity"]["conditions"]["atrial_fibrillation"]
    assert "cross-validated" in fallback["real_reference"] and 0 <= fallback["real"]["value"] <= 1
    with pytest.raises(ValueError, match="two categories"):
        CategorySweepFidelity({"sex": ["male"]})
