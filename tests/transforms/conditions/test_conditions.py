from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import wfdb
from monai.data import MetaTensor

from monai_gen.transforms.conditions import (
    ConditionSet,
    ConditionSpec,
    DecodeConditions,
    EncodeConditions,
    EncodeConditionsd,
    read_condition_table,
)

IXI_SPECS = [
    {"name": "Age", "unit": "years", "valid_range": (0, 120)},
    {"name": "Sex", "kind": "categorical", "categories": ["female", "male"], "aliases": {"f": "female", "m": "male"}},
]


@pytest.fixture()
def ixi_table(shared_data):
    return shared_data / "brain_mri/ixi10_2mm/lists/IXI_demog_n10.csv"


def test_fit_on_real_table_gives_its_statistics_and_round_trips(ixi_table):
    rows = read_condition_table(ixi_table, required=["Age", "Sex"])
    conditions = ConditionSet(IXI_SPECS).fit(rows, source=str(ixi_table))
    ages = np.array([float(r["Age"]) for r in rows])
    assert conditions["Age"].mean == pytest.approx(ages.mean())
    assert conditions["Age"].std == pytest.approx(ages.std())
    assert conditions["Age"].observed_range == (ages.min(), ages.max())
    values, mask = conditions.encode_rows(rows)
    assert values.shape == mask.shape == (10, 2) and mask.all()
    assert values[:, 0].mean().item() == pytest.approx(0.0, abs=1e-6)  # z-scores of the fitted data
    assert values[:, 0].std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    assert sorted(values[:, 1].unique().tolist()) == [0.0, 1.0]
    for row, v, m in zip(rows, values, mask, strict=True):
        decoded = conditions.decode(v, m)
        assert decoded["Age"] == pytest.approx(float(row["Age"]), abs=1e-4)
        assert decoded["Sex"] == {"F": "female", "M": "male"}[row["Sex"]]


def test_missing_values_are_masked_not_guessed():
    conditions = ConditionSet(IXI_SPECS)
    for missing in (None, "", "NaN", "unknown", float("nan")):
        values, mask = conditions.encode({"Age": missing, "Sex": "M"})
        assert mask.tolist() == [0.0, 1.0] and values[0].item() == 0.0
    values, mask = conditions.encode({"Sex": "f"})  # column absent entirely
    assert mask.tolist() == [0.0, 1.0] and values[1].item() == 0.0
    assert conditions.decode(values, mask) == {"Age": None, "Sex": "female"}


def test_one_hot_expands_categories_and_repeats_the_mask(shared_data):
    path = shared_data / "cardiac_mri/acdc_subset/acdc_training_info_all100.csv"
    rows = read_condition_table(path)
    groups = sorted({r["Group"] for r in rows})
    conditions = ConditionSet(
        [{"name": "Weight", "unit": "kg", "valid_range": (20, 250)}, {"name": "Group", "kind": "categorical", "categories": groups}]
    ).fit(rows)
    assert conditions.num_categories == [0, 5]
    values, mask = conditions.encode(rows[0], one_hot=True)
    assert values.shape == (6,)
    assert values[1:].sum().item() == 1.0 and values[1 + groups.index(rows[0]["Group"])].item() == 1.0
    values, mask = conditions.encode({"Weight": 70.0}, one_hot=True)
    assert mask.tolist() == [1.0, 0, 0, 0, 0, 0] and values[1:].sum().item() == 0.0


def test_out_of_range_value_names_file_row_and_range(tmp_path):
    path = tmp_path / "cohort.csv"
    path.write_text("Age,Sex\n40,M\n250,F\n")
    with pytest.raises(ValueError, match=r"cohort.csv, row 2: condition 'Age' = 250 years is outside its valid range \[0, 120\]"):
        ConditionSet(IXI_SPECS).fit(read_condition_table(path), source=str(path))
    with pytest.raises(ValueError, match="'Age' must be a number, got 'forty'"):
        ConditionSet(IXI_SPECS).encode({"Age": "forty"})


def test_unknown_category_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"'Sex' = 'X' is not one of its categories \['female', 'male'\]"):
        ConditionSet(IXI_SPECS).encode({"Sex": "X"})
    assert ConditionSet(IXI_SPECS).encode({"Sex": 1})[0][1].item() == 1.0  # integral numbers are indices
    with pytest.raises(ValueError, match="index 0..1"):
        ConditionSet(IXI_SPECS).encode({"Sex": 2})


def test_json_round_trip_keeps_the_encoding(ixi_table, tmp_path):
    rows = read_condition_table(ixi_table)
    fitted = ConditionSet(IXI_SPECS).fit(rows)
    path = fitted.save(tmp_path / "conditions.json")
    loaded = ConditionSet.load(path)
    assert json.loads(path.read_text())["format"] == "monai_gen.conditions/1"
    torch.testing.assert_close(loaded.encode_rows(rows)[0], fitted.encode_rows(rows)[0])
    assert loaded.specs == fitted.specs


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        ConditionSet.load(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        ConditionSet.load(broken)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("Age,Sex\n40,M\n41\n")
    with pytest.raises(ValueError, match="ragged.csv, line 3: 1 cells for 2 columns"):
        read_condition_table(ragged)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['BMI'\]"):
        read_condition_table({"Age": [1]}, required=["BMI"])
    with pytest.raises(ValueError, match="categorical and needs at least two distinct categories"):
        ConditionSpec("sex", kind="categorical", categories=("male",))
    with pytest.raises(ValueError, match="std must be finite and > 0"):
        ConditionSpec("qt", std=0.0)


def test_dictionary_transform_reads_phenotypes_from_ecg_header_metadata(shared_data):
    """Age and sex come from a real WFDB header's comments; QT comes from the data dict."""
    record = shared_data / "ecg/cinc2021/E07500"
    header = wfdb.rdheader(str(record))
    fields = dict(c.split(": ", 1) for c in header.comments if ": " in c)
    ecg = MetaTensor(torch.zeros(12, 8), meta={"age": float(fields["Age"]), "sex": fields["Sex"].lower(), "filename_or_obj": str(record)})
    conditions = ConditionSet(
        [
            {"name": "qt_interval_ms", "unit": "ms", "valid_range": (200, 700), "mean": 400, "std": 40},
            {"name": "age", "unit": "years", "valid_range": (0, 120), "mean": 60, "std": 15},
            {"name": "sex", "kind": "categorical", "categories": ["female", "male"]},
        ]
    )
    out = EncodeConditionsd(conditions, meta_keys=["ecg"])({"ecg": ecg, "qt_interval_ms": 440.0})
    assert out["condition_mask"].tolist() == [1.0, 1.0, 1.0]
    assert out["conditions"].tolist() == pytest.approx([1.0, (78 - 60) / 15, 1.0])
    decoded = DecodeConditions(conditions)(out["conditions"], out["condition_mask"])
    assert decoded == pytest.approx({"qt_interval_ms": 440.0, "age": 78.0, "sex": "male"}, abs=1e-4)
    ecg.meta["age"] = 300.0
    with pytest.raises(ValueError, match="E07500: condition 'age' = 300 years is outside"):
        EncodeConditionsd(conditions, meta_keys=["ecg"])({"ecg": ecg})
    with pytest.raises(ValueError, match=r"conditions \['qt_interval_ms', 'age', 'sex'\] are neither"):
        EncodeConditionsd(conditions, allow_missing_conditions=False)({"x": 1})


def test_array_transform_accepts_bundle_style_spec_lists(tmp_path):
    specs = [{"name": "heart_rate_bpm", "unit": "bpm", "valid_range": [30, 220], "mean": 70, "std": 15}]
    values, mask = EncodeConditions(specs)({"heart_rate_bpm": "85"})
    assert values.tolist() == [1.0] and mask.tolist() == [1.0]
    path = ConditionSet(specs).save(tmp_path / "c.json")
    assert EncodeConditions(path)({"heart_rate_bpm": 55})[0].tolist() == [-1.0]
    with open(tmp_path / "t.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["heart_rate_bpm"], ["55"], ["85"]])
    values, _ = ConditionSet(specs).encode_rows(read_condition_table(tmp_path / "t.csv"))
    assert values.squeeze(1).tolist() == [-1.0, 1.0]


def test_periodic_condition_encodes_the_fraction_of_its_cycle_on_real_acdc_phases(shared_data, tmp_path):
    # the end-systolic frame of each of ACDC's 100 training patients, as the position in its cardiac cycle
    table = shared_data / "cardiac_mri/acdc_subset/acdc_training_info_all100.csv"
    rows = [{"phase": (int(r["ES"]) - 1) / int(r["NbFrame"])} for r in read_condition_table(table, required=["ES", "NbFrame"])]
    spec = {"name": "phase", "kind": "periodic", "period": 1.0, "valid_range": (0, 1)}
    conditions = ConditionSet([spec]).fit(rows, source=str(table))
    phases = np.array([r["phase"] for r in rows])
    assert conditions["phase"].observed_range == (phases.min(), phases.max()) and 0.2 < phases.mean() < 0.6
    assert (conditions["phase"].mean, conditions["phase"].std) == (0.0, 1.0)  # not z-scored: the period encodes it
    values, _ = conditions.encode_rows(rows)
    np.testing.assert_allclose(values[:, 0].numpy(), phases, atol=1e-6)
    assert conditions.encode({"phase": 1.0})[0].item() == 0.0  # the end of the cycle is its start
    assert not conditions["phase"].extrapolates(0.99) and conditions.periodic == [True]
    frames = ConditionSpec("frame", kind="periodic", period=30, unit="frames", valid_range=(0, 30))
    assert frames.encode_value(45 % 30) == pytest.approx(0.5) and frames.decode_value(0.5) == pytest.approx(15.0)
    with pytest.raises(ValueError, match=r"'frame' = 31 frames is outside its valid range \[0, 30\]"):
        frames.encode_value(31)
    loaded = ConditionSet.load(conditions.save(tmp_path / "conditions.json"))
    assert loaded["phase"].period == 1.0 and loaded.encode({"phase": 0.25})[0].item() == 0.25
    with pytest.raises(ValueError, match="a period is given for, and only for, a periodic condition"):
        ConditionSpec("phase", kind="periodic")
    with pytest.raises(ValueError, match="a period is given for, and only for, a periodic condition"):
        ConditionSpec("bmi", period=1.0)
    with pytest.raises(ValueError, match="period must be finite and > 0"):
        ConditionSpec("phase", kind="periodic", period=0)
