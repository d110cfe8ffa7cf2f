"""The generic cohort on real IXI T1 volumes: table + folder -> preprocessing Compose -> slices with conditions,
cached by its inputs, split by subject, condition statistics per subject or per item."""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityRangePercentilesd

from monai_gen.engines.cohort import (
    Cohort,
    build_cohort,
    cached_cohort,
    fit_conditions,
    input_fingerprint,
    records_from_table,
    split_by_subject,
    training_items,
)
from monai_gen.transforms.conditions import ConditionSet, ConditionSpec
from monai_gen.transforms.image import VolumeToSlicesd
from monai_gen.transforms.normalisation import LinearNormalisation

IXI = "brain_mri/ixi_t1_2mm"
SPECS = ConditionSet([
    ConditionSpec("age", unit="years", valid_range=(0, 110)),
    ConditionSpec("sex", kind="categorical", categories=("F", "M")),
    ConditionSpec("slice_position", valid_range=(0, 1)),
])


@pytest.fixture(scope="module")
def six_subjects(shared_data, tmp_path_factory):
    """The first six IXI subjects of the table (a CSV of the same columns), and their records."""
    with open(shared_data / IXI / "participants.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[:6]
    table = tmp_path_factory.mktemp("ixi") / "participants.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    records = records_from_table(table, shared_data / IXI / "t1", id_column="MRID", file_pattern="{id}_T1.nii.gz",
                                 columns={"Age": "age", "Sex": "sex"})
    return rows, records


PREPARE = Compose([
    LoadImaged("image", image_only=True), EnsureChannelFirstd("image"),
    ScaleIntensityRangePercentilesd("image", 0.5, 99.5, 0.0, 1.0, clip=True),
    VolumeToSlicesd("image", axis=2, indices=[30, 45, 60]),
])


def test_records_slices_and_rows_come_from_the_table_and_the_transform(six_subjects):
    rows, records = six_subjects
    assert [r["subject_id"] for r in records] == [r["MRID"] for r in rows]
    cohort = build_cohort(records, PREPARE, fields=["age", "sex", "slice_position", "slice_index"])
    assert cohort.items.shape == (18, 1, 120, 120) and cohort.items.dtype == torch.float32
    first = cohort.rows[:3]
    assert [r["slice_index"] for r in first] == [30, 45, 60]
    assert [round(r["slice_position"], 4) for r in first] == [round(k / 89, 4) for k in (30, 45, 60)]
    assert all(r["age"] == rows[0]["Age"] and r["sex"] == rows[0]["Sex"] for r in first)
    assert 0.0 <= float(cohort.items.min()) and float(cohort.items.max()) <= 1.0 and float(cohort.items.std()) > 0.1


def test_a_broken_record_is_skipped_with_its_reason_and_none_usable_is_an_error(six_subjects, tmp_path, caplog):
    _, records = six_subjects
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti")
    with caplog.at_level(logging.WARNING):
        cohort = build_cohort([*records[:1], {"image": str(broken), "subject_id": "X"}], PREPARE, fields=["age"])
    assert len(cohort) == 3 and "broken.nii.gz" in caplog.text
    with pytest.raises(ValueError, match=r"no usable item in 1 records; problems: \[.*broken\.nii\.gz"):
        build_cohort([{"image": str(broken), "subject_id": "X"}], PREPARE, fields=["age"])


def test_split_is_by_subject_and_statistics_are_per_subject_or_per_item(six_subjects):
    rows, records = six_subjects
    cohort = build_cohort(records, PREPARE, fields=["age", "sex", "slice_position"])
    split = split_by_subject(cohort, test_fraction=0.2, validation_fraction=0.2, seed=1)
    parts = [set(part.subjects()) for part in split]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sum(len(part) for part in split) == len(cohort)
    fitted = fit_conditions(SPECS, split.train)
    ages = [float(r["Age"]) for r in rows if r["MRID"] in parts[0]]
    assert fitted["age"].mean == pytest.approx(np.mean(ages)) and fitted["age"].std == pytest.approx(np.std(ages))
    positions = [r["slice_position"] for r in split.train.rows]
    assert fitted["slice_position"].mean == pytest.approx(np.mean(positions))  # varies within a subject: per item
    items = training_items(split.train, fitted, normalise=LinearNormalisation(0.5, offset=0.5))
    assert len(items) == len(split.train) and items[0]["conditions"].shape == (3,)
    torch.testing.assert_close(items[0]["image"], (split.train.items[0] - 0.5) / 0.5)


def test_one_training_subject_fits_the_conditions_that_vary_within_it():
    """E.g. one CT cut into patches: the per-item condition is fitted on its items, the per-subject ones need two."""
    rows = [{"subject_id": "ct_1", "slice_position": p} for p in (0.2, 0.5, 0.8)]
    fitted = fit_conditions(ConditionSet([SPECS["slice_position"]]), Cohort(torch.zeros(3, 1, 2, 2), rows))
    assert fitted["slice_position"].mean == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one row per subject"):
        fit_conditions(SPECS, Cohort(torch.zeros(3, 1, 2, 2), [{**r, "age": 40.0, "sex": "F"} for r in rows]))


def test_the_cache_is_keyed_by_its_inputs_and_round_trips(six_subjects, tmp_path):
    _, records = six_subjects
    calls = []

    def build(n):
        calls.append(n)
        return build_cohort(records[:n], PREPARE, fields=["age", "sex", "slice_position"])

    files = [r["image"] for r in records]
    key = input_fingerprint(files[:2], settings={"slices": [30, 45, 60]})
    first = cached_cohort(tmp_path, key, lambda: build(2))
    again = cached_cohort(tmp_path, key, lambda: build(2))
    assert calls == [2] and again.rows == first.rows and torch.equal(again.items, first.items)
    other = input_fingerprint(files[:3], settings={"slices": [30, 45, 60]})
    assert other != key != input_fingerprint(files[:2], settings={"slices": [30]})
    assert len(cached_cohort(tmp_path, other, lambda: build(3))) == 9 and calls == [2, 3]
    assert len(list(tmp_path.glob("cohort_*.json"))) == 1  # the stale cache is gone
    with pytest.raises(ValueError, match="one row per item"):
        Cohort(torch.zeros(2, 1, 4), [{"subject_id": "a"}])
    with pytest.raises(ValueError, match="have no 'subject_id'"):
        Cohort(torch.zeros(1, 1, 4), [{"subject_id": None}])


def test_fingerprint_covers_the_files_a_reader_opens_beside_a_record_and_the_code(tmp_path):
    header, signal, other = tmp_path / "r1.hea", tmp_path / "r1.dat", tmp_path / "r2.hea"
    for path in (header, signal, other):
        path.write_bytes(b"x")
    plain = input_fingerprint([header])
    key = input_fingerprint([header], companions=True)
    assert key != plain and key == input_fingerprint([header], companions=True)
    signal.write_bytes(b"a longer signal")  # only the companion changes
    assert input_fingerprint([header], companions=True) != key
    assert input_fingerprint([header]) == plain
    assert input_fingerprint([header], code=["monai_gen.engines.cohort"]) != plain


def _write_table(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["MRID", "Age", "Sex"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(
    ("row", "cell", "message"),
    [
        (1, {"Age": "abc"}, r"row 2 \(MRID '{id}'\), column 'Age': condition 'age' must be a number, got 'abc'"),
        (2, {"Sex": "X"}, r"row 3 \(MRID '{id}'\), column 'Sex': condition 'sex' = 'X' is not one of its categories \['F', 'M'\]"),
        (0, {"Age": "250"}, r"row 1 \(MRID '{id}'\), column 'Age': condition 'age' = 250 years is outside its valid range"),
        (3, {"MRID": ""}, r"row 4: no subject id in column 'MRID'"),
    ],
)
def test_malformed_table_values_fail_naming_the_file_row_subject_and_column(six_subjects, shared_data, tmp_path, row, cell, message):
    rows = [dict(r) for r in six_subjects[0]]
    subject = rows[row]["MRID"]
    rows[row].update(cell)
    table = _write_table(tmp_path / "participants.csv", rows)
    with pytest.raises(ValueError, match=f"^{__import__('re').escape(str(table))}, " + message.format(id=subject)):
        records_from_table(table, shared_data / IXI / "t1", id_column="MRID", file_pattern="{id}_T1.nii.gz",
                           columns={"Age": "age", "Sex": "sex"}, conditions=SPECS)


def test_a_repeated_subject_is_an_error_and_values_are_kept_canonical(six_subjects, shared_data, tmp_path):
    rows = [dict(r) for r in six_subjects[0]]
    folder, options = shared_data / IXI / "t1", {"id_column": "MRID", "file_pattern": "{id}_T1.nii.gz",
                                                 "columns": {"Age": "age", "Sex": "sex"}, "conditions": SPECS}
    with pytest.raises(ValueError, match=rf"rows 1 and 7: subject MRID '{rows[0]['MRID']}' appears twice"):
        records_from_table(_write_table(tmp_path / "twice.csv", [*rows, rows[0]]), folder, **options)
    rows[0]["Sex"] = " f "  # the category F, matched case-insensitively, recorded by its label
    records = records_from_table(_write_table(tmp_path / "ok.csv", rows), folder, **options)
    assert records[0]["sex"] == "F" and records[0]["age"] == float(rows[0]["Age"]) and isinstance(records[1]["age"], float)


def test_missing_values_become_unknown_skip_or_fail_as_declared(six_subjects, shared_data, tmp_path, caplog):
    rows = [dict(r) for r in six_subjects[0]]
    rows[1]["Age"], rows[4]["Sex"] = "", "NA"
    table = _write_table(tmp_path / "participants.csv", rows)
    folder, options = shared_data / IXI / "t1", {"id_column": "MRID", "file_pattern": "{id}_T1.nii.gz",
                                                 "columns": {"Age": "age", "Sex": "sex"}, "conditions": SPECS}
    with caplog.at_level(logging.WARNING):
        records = records_from_table(table, folder, **options)  # the default: missing = "unknown"
    assert len(records) == 6 and records[1]["age"] is None and records[4]["sex"] is None and records[1]["sex"] == rows[1]["Sex"]
    assert "2 subject(s)" in caplog.text and f"{rows[1]['MRID']} (Age)" in caplog.text and "null token" in caplog.text
    kept = records_from_table(table, folder, missing="skip", **options)
    assert [r["subject_id"] for r in kept] == [r["MRID"] for i, r in enumerate(rows) if i not in (1, 4)]
    with pytest.raises(ValueError, match=rf"row 2 \(MRID '{rows[1]['MRID']}'\): no value in column\(s\) \['Age'\]"):
        records_from_table(table, folder, missing="error", **options)
    with pytest.raises(ValueError, match=r"missing must be one of \[.unknown., .skip., .error.\], got .guess."):
        records_from_table(table, folder, missing="guess", **options)
    values, mask = SPECS.encode_rows(build_cohort(records[:2], PREPARE, fields=["age", "sex", "slice_position"]).rows)
    assert mask[:3, 0].tolist() == [1.0, 1.0, 1.0] and mask[3:, 0].tolist() == [0.0, 0.0, 0.0]  # subject 2: age unknown


def test_stratified_split_keeps_a_single_subject_stratum_for_training_when_asked():
    groups = {"p1": "DCM", "p2": "DCM", "p3": "HCM", "p4": "HCM", "p5": "MINF", "p6": "NOR", "p7": "NOR"}
    rows = [{"subject_id": s, "group": g, "frame": k} for s, g in groups.items() for k in range(3)]
    cohort = Cohort(torch.arange(len(rows), dtype=torch.float32).reshape(-1, 1, 1), rows)
    split = split_by_subject(cohort, test_fraction=0.5, stratify_by="group", single_subject_strata="train")
    test_groups = sorted({r["group"] for r in split.test.rows})
    assert test_groups == ["DCM", "HCM", "NOR"] and len(split.test.subjects()) == 3  # one of each pair
    assert sorted({r["group"] for r in split.train.rows}) == ["DCM", "HCM", "MINF", "NOR"]
    assert not set(split.train.subjects()) & set(split.test.subjects()) and len(split.train) == 12
    default = split_by_subject(cohort, test_fraction=0.5, stratify_by="group")  # the single MINF subject is tested
    assert "MINF" in {r["group"] for r in default.test.rows} and "MINF" not in {r["group"] for r in default.train.rows}
    assert set(default.test.subjects()) == set(split.test.subjects()) | {"p5"}  # the same draw otherwise
    with pytest.raises(ValueError, match="single_subject_strata must be 'test' or 'train'"):
        split_by_subject(cohort, stratify_by="group", single_subject_strata="drop")
