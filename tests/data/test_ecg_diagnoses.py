"""Diagnosis labels (LVH, left axis deviation, AF) read from real record headers: CinC SNOMED codes, LUDB words."""

from __future__ import annotations

import csv

import pytest

from monai_gen.data.ecg_diagnoses import diagnosis_labels
from monai_gen.transforms.ecg import LoadECG


def _labels(path):
    return diagnosis_labels(LoadECG()(str(path)).meta)


def test_ludb_statements_give_the_labels_the_cardiologists_wrote(shared_data):
    ludb = shared_data / "ecg/ludb"
    table = {row["ID"]: row for row in csv.DictReader(open(ludb / "ludb.csv", encoding="utf-8"))}
    checked = 0
    for header in sorted((ludb / "data").glob("*.hea"))[:40]:
        row, labels = table[header.stem], _labels(header)
        assert labels["lvh"] == ("yes" if "Left ventricular hypertrophy" in row["Hypertrophies"] else "no"), header
        assert labels["atrial_fibrillation"] == ("yes" if "Atrial fibrillation" in row["Rhythms"] else "no"), header
        axis = row["Electric axis of the heart"]
        expected_axis = None if not axis.strip() else "yes" if "left axis deviation" in axis else "no"
        assert labels["left_axis_deviation"] == expected_axis, header
        checked += 1
    assert checked == 40


def test_ludb_record_1_is_lvh_with_left_axis_deviation_in_sinus_rhythm(shared_data):
    assert _labels(shared_data / "ecg/ludb/data/1.hea") == {
        "lvh": "yes", "left_axis_deviation": "yes", "atrial_fibrillation": "no"}


def test_cinc_codes_read_as_a_complete_label_set(shared_data):
    assert _labels(shared_data / "ecg/cinc2021/E07505.hea")["lvh"] == "yes"  # Dx holds 164873001
    assert _labels(shared_data / "ecg/cinc2021/E07500.hea") == {
        "lvh": "no", "left_axis_deviation": "no", "atrial_fibrillation": "no"}


@pytest.mark.parametrize("record", ["ecg/cpsc2018/A1980.mat", "ecg/ptb_s0010_re/s0010_re.hea"])
def test_records_without_diagnosis_labels_leave_every_label_unset(shared_data, record):
    assert set(_labels(shared_data / record).values()) == {None}
