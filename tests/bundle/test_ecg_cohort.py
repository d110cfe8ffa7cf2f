"""The ECG beat cohort on real records: geometry, phenotypes, record-wise split, save / load, keyed cache."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from monai_gen.bundle.ecg_cohort import (
    build_beat_cohort,
    cohort_cache_key,
    find_ecg_records,
    fit_mean_beat,
    load_split_cohort,
)
from monai_gen.engines.cohort import Cohort, fit_conditions, split_by_subject, training_items
from monai_gen.engines.weights import load_tensor
from monai_gen.transforms.conditions import ConditionSet
from monai_gen.transforms.ecg import RemoveBaselineWander
from monai_gen.transforms.normalisation import LinearNormalisation


@pytest.fixture(scope="module")
def small_cohort(shared_data, ecg_preparation):
    records = [
        shared_data / "ecg/cinc2021/E07500.hea",
        shared_data / "ecg/cinc2021/JS20013.hea",
        shared_data / "ecg/ptb_s0010_re/s0010_re.hea",  # 1000 Hz, 15 leads
        shared_data / "ecg/cpsc2018/A1980.mat",
    ]
    return build_beat_cohort(records, **ecg_preparation, max_beats_per_record=12)


def test_finds_every_format_and_only_ecg_files(shared_data):
    found = find_ecg_records(shared_data / "ecg")
    names = {p.name for p in found}
    assert "E07500.hea" in names and "A1980.mat" in names and "s0010_re.hea" in names
    assert "E07500.mat" not in names  # a WFDB signal file, read through its header
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_ecg_records(shared_data / "no_such_folder")


def test_beats_are_r_aligned_12_lead_windows_with_record_phenotypes(small_cohort):
    cohort = small_cohort
    assert cohort.items.shape[1:] == (12, 576) and cohort.items.dtype == torch.float32
    assert cohort.subjects() == ["A1980", "E07500", "JS20013", "s0010_re"]
    magnitude = cohort.items.square().mean(dim=1).sqrt()
    assert (magnitude.argmax(dim=1) - 200).abs().float().median() <= 3
    by_record = {r["record_id"]: r for r in cohort.rows}
    assert by_record["s0010_re"]["age"] == 81.0 and by_record["s0010_re"]["sex"] == "female"
    assert by_record["E07500"]["heart_rate"] == pytest.approx(57.2, abs=1.5)
    assert by_record["JS20013"]["heart_rate"] > 120  # a fast record stays fast
    assert all(len([r for r in cohort.rows if r["record_id"] == rec]) <= 12 for rec in cohort.subjects())


def test_split_is_by_record_and_reproducible(small_cohort):
    assert small_cohort.subject_key == "record_id"
    train, _, test = split_by_subject(small_cohort, test_fraction=0.25, seed=3)
    assert not set(train.subjects()) & set(test.subjects())
    assert len(train) + len(test) == len(small_cohort) and len(test.subjects()) == 1
    again, _, _ = split_by_subject(small_cohort, test_fraction=0.25, seed=3)
    assert again.subjects() == train.subjects()
    with pytest.raises(ValueError, match="test_fraction"):
        split_by_subject(small_cohort, test_fraction=1.5)


def test_split_holds_out_the_named_subjects(small_cohort):
    subjects = small_cohort.subjects()
    train, validation, test = split_by_subject(small_cohort, test_subjects=subjects[-1:], validation_fraction=0.25)
    assert test.subjects() == subjects[-1:] and len(validation.subjects()) == 1
    assert sorted(train.subjects() + validation.subjects() + test.subjects()) == subjects
    with pytest.raises(ValueError, match=r"not in the cohort: \['nobody'\]"):
        split_by_subject(small_cohort, test_subjects=["nobody"])
    with pytest.raises(ValueError, match="some but not all"):
        split_by_subject(small_cohort, test_subjects=subjects)


def test_condition_statistics_are_fitted_once_per_record(small_cohort):
    specs = [{"name": "heart_rate", "unit": "bpm", "valid_range": [30, 200]}]
    fitted = fit_conditions(specs, small_cohort)["heart_rate"]
    per_record = np.array([next(r["heart_rate"] for r in small_cohort.rows if r["record_id"] == s)
                           for s in small_cohort.subjects()])
    assert fitted.mean == pytest.approx(per_record.mean(), rel=1e-6)


def test_save_load_round_trip_and_mismatch_detected(small_cohort, tmp_path):
    path = small_cohort.save(tmp_path / "cohort")
    loaded = Cohort.load(path)
    torch.testing.assert_close(loaded.items, small_cohort.items)
    assert loaded.rows == small_cohort.rows and loaded.subject_key == "record_id"
    (tmp_path / "cohort.json").write_text('{"format": "monai_gen.cohort/1", "subject_key": "record_id", "rows": []}')
    with pytest.raises(ValueError, match="one row per item"):
        Cohort.load(path)
    with pytest.raises(FileNotFoundError, match="other.safetensors does not exist"):
        Cohort.load(tmp_path / "other")


def test_unusable_records_are_skipped_with_the_reason(shared_data, ecg_preparation, caplog):
    two_lead = sorted((shared_data / "ecg/cpsc2021_af").glob("*.hea"))[0]
    with caplog.at_level(logging.WARNING):
        cohort = build_beat_cohort([two_lead, shared_data / "ecg/cinc2021/E07501.hea"], **ecg_preparation,
                                   max_beats_per_record=4)
    assert cohort.subjects() == ["E07501"]
    assert any(two_lead.name in m and "missing" in m for m in caplog.messages)
    # the transform's own error, not the "applying transform" wrapper of MONAI's Compose
    assert not any("applying transform" in m for m in caplog.messages)
    with pytest.raises(ValueError, match="no usable ECG beats"):
        build_beat_cohort([two_lead], **ecg_preparation)
    assert np.isfinite(cohort.items.numpy()).all()


def test_mean_beat_has_the_qrs_at_sample_200_and_training_items_are_deviations_from_it(small_cohort, tmp_path):
    mean = fit_mean_beat(small_cohort, save_to=tmp_path / "mean_beat.safetensors")
    assert mean.shape == (12, 576)
    assert abs(int(mean.abs().sum(0).argmax()) - 200) <= 10  # R-aligned beats: the QRS survives averaging
    torch.testing.assert_close(load_tensor(tmp_path / "mean_beat.safetensors", "mean_beat"), mean)
    conditions = ConditionSet([{"name": "heart_rate", "unit": "bpm", "valid_range": [30, 200]}]).fit(small_cohort.rows)
    items = training_items(small_cohort, conditions, normalise=LinearNormalisation(0.25, offset=mean))
    torch.testing.assert_close(items[3]["image"], (small_cohort.items[3] - mean) / 0.25)
    assert torch.stack([item["image"] for item in items]).mean(0).abs().max() < 1e-4  # deviations average to zero


def _copy_records(shared_data, folder, names):
    folder.mkdir(parents=True)
    for name in names:
        for suffix in (".hea", ".mat"):
            shutil.copy(shared_data / "ecg" / "cinc2021" / f"{name}{suffix}", folder / f"{name}{suffix}")
    return folder


def test_cohort_cache_is_keyed_by_its_inputs(shared_data, ecg_preparation, tmp_path):
    folder = _copy_records(shared_data, tmp_path / "ecg", ["E07500", "E07501", "JS20000"])
    records = find_ecg_records(folder)

    def key_of(records, beats=2, **changed):
        return cohort_cache_key(records, **{**ecg_preparation, **changed}, max_beats_per_record=beats)

    key = key_of(records)
    assert key_of(records) == key and key_of(records, 3) != key
    assert key_of(records[:2]) != key
    assert key_of(records, phenotypes=["heart_rate"]) != key and key_of(records, fs=250) != key
    other_cutoff = Compose([*ecg_preparation["prepare"].transforms[:-1], RemoveBaselineWander(cutoff_hz=0.7)])
    assert key_of(records, prepare=other_cutoff) != key  # the preparation's settings are part of the key
    assert key_of(records, prepare=Compose(list(ecg_preparation["prepare"].transforms))) == key
    stat = (folder / "E07500.mat").stat()  # the signal file, not only the header, is part of the key
    os.utime(folder / "E07500.mat", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert key_of(records) != key


def test_beats_carry_the_phenotypes_named_and_are_cut_at_the_prepared_rate(shared_data, ecg_preparation):
    record = [shared_data / "ecg/cinc2021/E07500.hea"]
    cohort = build_beat_cohort(record, **{**ecg_preparation, "phenotypes": ["qrs", "sex"]}, max_beats_per_record=2)
    assert set(cohort.rows[0]) == {"record_id", "source", "interval_source", "qrs", "sex"}
    with pytest.raises(ValueError, match=r"ECG phenotypes \['weight'\] are not known"):
        build_beat_cohort(record, **{**ecg_preparation, "phenotypes": ["qrs", "weight"]})
    with pytest.raises(ValueError, match="prepared at 500 Hz, but the beats are cut at fs=250 Hz"):
        build_beat_cohort(record, **{**ecg_preparation, "fs": 250})


def test_load_split_cohort_rebuilds_for_other_inputs_and_never_reuses_a_stale_cache(shared_data, ecg_preparation, tmp_path):
    first = _copy_records(shared_data, tmp_path / "first", ["E07500", "E07501", "JS20000"])
    second = _copy_records(shared_data, tmp_path / "second", ["E07500", "HR06003"])
    cache = tmp_path / "cache"
    train, validation, test = load_split_cohort(first, cache, **ecg_preparation, max_beats_per_record=2)
    assert len(validation) == 0
    assert sorted(train.subjects() + test.subjects()) == ["E07500", "E07501", "JS20000"]
    (cached,) = cache.glob("cohort_*.safetensors")
    stamp = cached.stat().st_mtime_ns
    load_split_cohort(first, cache, **ecg_preparation, max_beats_per_record=2)
    assert cached.stat().st_mtime_ns == stamp  # same inputs: reused
    train, _, test = load_split_cohort(second, cache, **ecg_preparation, max_beats_per_record=2)
    assert sorted(train.subjects() + test.subjects()) == ["E07500", "HR06003"]
    assert len(list(cache.glob("cohort_*.safetensors"))) == 1  # the other inputs' cache is replaced
    with pytest.raises(FileNotFoundError, match="absent does not exist"):
        load_split_cohort(tmp_path / "absent", cache, **ecg_preparation, max_beats_per_record=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty holds no ECG records"):
        load_split_cohort(tmp_path / "empty", cache, **ecg_preparation)


def test_load_split_cohort_collapses_repeated_skip_warnings(shared_data, ecg_preparation, tmp_path, caplog):
    folder = _copy_records(shared_data, tmp_path / "ecg", ["E07500", "E07501"])
    for header in sorted((shared_data / "ecg" / "cpsc2021_af").glob("*.hea"))[:3]:  # 2-lead records: skipped
        for path in header.parent.glob(f"{header.stem}.*"):
            shutil.copy(path, folder / path.name)
    with caplog.at_level(logging.WARNING, logger="monai_gen.bundle.ecg_cohort"):
        load_split_cohort(folder, tmp_path / "cache", **ecg_preparation, max_beats_per_record=2)
    skipped = [m for m in caplog.messages if "skipping ECG record" in m]
    assert len(skipped) == 1 and skipped[0].endswith("(and 2 more like it)"), caplog.messages
    with pytest.raises(ValueError, match=f"ECG data folder {tmp_path / 'single'}: .*at least 2 subjects, got 1"):
        load_split_cohort(_copy_records(shared_data, tmp_path / "single", ["E07500"]), tmp_path / "cache", **ecg_preparation)


def test_rows_name_their_source_and_ludb_intervals_come_from_the_experts(shared_data, ecg_preparation, tmp_path):
    from monai_gen.data.ludb import expert_intervals, read_ludb_delineation

    folder = _copy_records(shared_data, tmp_path / "two_sources" / "cinc2021", ["E07505"]).parent
    ludb = folder / "ludb"
    ludb.mkdir()
    for record in ("1", "101"):
        for f in (shared_data / "ecg/ludb/data").glob(f"{record}.*"):
            shutil.copy(f, ludb / f.name)
    phenotypes = [*ecg_preparation["phenotypes"], "lvh", "left_axis_deviation", "atrial_fibrillation"]
    cohort = build_beat_cohort(find_ecg_records(folder), **{**ecg_preparation, "phenotypes": phenotypes},
                               max_beats_per_record=3, root=folder)
    rows = {r["record_id"]: r for r in cohort.rows}
    assert {rid: r["source"] for rid, r in rows.items()} == {"E07505": "cinc2021", "1": "ludb", "101": "ludb"}
    assert rows["E07505"]["interval_source"] == "measured" and rows["1"]["interval_source"] == "experts"
    experts = expert_intervals(read_ludb_delineation(ludb / "1"), 500.0)
    assert rows["1"]["qrs"] == pytest.approx(experts["qrs_ms"], abs=0.06)
    assert rows["1"]["qt"] == pytest.approx(experts["qt_ms"], abs=0.06)
    assert (rows["1"]["lvh"], rows["101"]["atrial_fibrillation"], rows["E07505"]["lvh"]) == ("yes", "yes", "yes")
    assert rows["E07505"]["atrial_fibrillation"] == "no"


def test_split_is_stratified_by_source(shared_data, ecg_preparation, tmp_path):
    folder = _copy_records(shared_data, tmp_path / "strata" / "cinc2021",
                           ["E07500", "E07501", "E07502", "E07503", "E07504", "E07505"]).parent
    ludb = folder / "ludb"
    ludb.mkdir()
    for header in sorted((shared_data / "ecg/ludb/data").glob("*.hea"))[:4]:
        for f in header.parent.glob(f"{header.stem}.*"):
            shutil.copy(f, ludb / f.name)
    split = load_split_cohort(folder, tmp_path / "cache", **ecg_preparation, test_fraction=0.25, max_beats_per_record=2)
    test_sources = {r["source"] for r in split.test.rows}
    assert test_sources == {"cinc2021", "ludb"}
    assert not set(split.train.subjects()) & set(split.test.subjects())


def test_context_margin_is_cropped_back_to_the_beat_window(small_cohort):
    from monai_gen.bundle.ecg_cohort import crop_context_margin
    from monai_gen.engines.cohort import CohortSplit

    split = CohortSplit(small_cohort, small_cohort.subset([]), small_cohort.subset([0, 1]))
    cropped = crop_context_margin(split, 32)
    assert cropped.train.items.shape[1:] == (12, 576 - 64) and cropped.test.rows == split.test.rows
    assert torch.equal(cropped.test.items, split.test.items[..., 32:-32])
