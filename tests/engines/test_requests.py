"""Generation requests checked against a real model's conditions (the shipped ECG bundle's trained statistics)."""

from __future__ import annotations

import logging

import pytest

from monai_gen.bundle.registry import find_bundle, read_bundle_info
from monai_gen.engines.requests import build_requests, checked_values


@pytest.fixture(scope="module")
def conditions():
    return read_bundle_info(find_bundle("ecg_generative_diffusion")).conditions


def write(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding)
    return path


def test_plain_table_and_sweep_requests_hold_canonical_values(conditions, tmp_path):
    plain = build_requests(conditions, values={"heart_rate": "75", "qt": None, "sex": "Male"}, num_samples=3, seed=10)
    assert [r.seed for r in plain] == [10, 11, 12]
    assert all(r.conditions == {"heart_rate": 75.0, "sex": "male"} for r in plain)
    table = write(tmp_path / "subjects.csv", "heart_rate,Sex,seed\n60,F,\n90,,7\n")
    rows = build_requests(conditions, values={"qt": 400}, table=table)
    assert [r.conditions for r in rows] == [{"qt": 400.0, "heart_rate": 60.0, "sex": "female"}, {"qt": 400.0, "heart_rate": 90.0}]
    assert [r.seed for r in rows] == [0, 7]  # one sample per row (a subject), a row's own seed wins
    assert len(build_requests(conditions, table=table, samples_per_row=3)) == 6
    sweep = build_requests(conditions, values={"sex": "male"}, sweep="QT", sweep_start=350, sweep_stop=450,
                           sweep_num_values=3, sweep_num_seeds=2, seed=5)
    assert [(r.conditions["qt"], r.seed) for r in sweep] == [(350, 5), (350, 6), (400, 5), (400, 6), (450, 5), (450, 6)]


def test_identifier_columns_are_refused_unless_declared_pass_through(conditions, tmp_path):
    table = write(tmp_path / "cohort.csv", "heart_rate,PatientName,patient_id\n75,DOE^JOHN,MRN12345\n")
    with pytest.raises(ValueError, match=r"cohort\.csv has column\(s\) \['PatientName', 'patient_id'\] that are not conditions"):
        build_requests(conditions, table=table)
    kept = build_requests(conditions, table=table, pass_through=["patient_id", "PatientName"])
    assert kept[0].conditions == {"heart_rate": 75.0}
    assert kept[0].pass_through == {"patient_id": "MRN12345", "PatientName": "DOE^JOHN"}
    for reserved in ("name", "files"):
        clash = write(tmp_path / f"{reserved}.csv", f"heart_rate,{reserved}\n75,x\n")
        with pytest.raises(ValueError, match="not conditions"):
            build_requests(conditions, table=clash)
        with pytest.raises(ValueError, match="clash with the manifest's own columns"):
            build_requests(conditions, table=clash, pass_through=[reserved])


@pytest.mark.parametrize("header", ["HeartRate,QT,Sex", "hr,qt,sex"])
def test_misspelled_columns_are_errors_that_list_the_valid_ones(conditions, tmp_path, header):
    table = write(tmp_path / "t.csv", f"{header}\n75,400,male\n")
    valid = r"\['heart_rate', 'qrs', 'qt', 'age', 'sex', 'lvh', 'left_axis_deviation', 'atrial_fibrillation'\]"
    with pytest.raises(ValueError, match=r"not conditions of this model\. Valid columns: " + valid):
        build_requests(conditions, table=table)


@pytest.mark.parametrize("value", ["nan", "NaN", "unknown", "", float("nan")])
def test_a_value_given_as_missing_is_an_error_not_an_unconditioned_sample(conditions, value):
    with pytest.raises(ValueError, match="'qt' = .* is not a value"):
        build_requests(conditions, values={"qt": value})


def test_missing_spellings_in_a_table_are_errors_and_empty_cells_are_unset(conditions, tmp_path):
    table = write(tmp_path / "t.csv", "heart_rate,qt\n75,nan\n")
    with pytest.raises(ValueError, match=r"t\.csv, row 1, column 'qt': 'nan' is not a value; leave the cell empty"):
        build_requests(conditions, table=table)
    assert build_requests(conditions, table=write(tmp_path / "e.csv", "heart_rate,qt\n75,\n"))[0].conditions == {"heart_rate": 75.0}


def test_unknown_names_categories_and_ranges_are_rejected_with_names(conditions, tmp_path):
    with pytest.raises(ValueError, match=r"'hr' is not a condition of this model; its conditions are \['heart_rate'"):
        build_requests(conditions, values={"hr": 75})
    with pytest.raises(ValueError, match="'heart_rate' = 20 bpm is outside its valid range"):
        build_requests(conditions, values={"heart_rate": 20})
    with pytest.raises(ValueError, match=r"'sex' = '1' is not one of its categories \['male', 'female'\] \(aliases: \['f', 'm'\]\)\.$"):
        checked_values(conditions, {"sex": "1"})
    table = write(tmp_path / "bad.csv", "heart_rate,sex\n60,unknown-sex\n")
    with pytest.raises(ValueError, match=r"bad\.csv, row 1, column 'sex'"):
        build_requests(conditions, table=table)
    with pytest.raises(ValueError, match=r"given both as options and as columns"):
        build_requests(conditions, values={"heart_rate": 70}, table=table)
    with pytest.raises(ValueError, match=r"'sex' is a categorical condition; a sweep varies a continuous condition: \['heart_rate', 'qrs', 'qt', 'age'\]"):
        build_requests(conditions, sweep="sex", sweep_start=0, sweep_stop=1)
    with pytest.raises(ValueError, match="seed must be a whole number"):
        build_requests(conditions, table=write(tmp_path / "s.csv", "qt,seed\n400,abc\n"))


def test_a_non_utf8_table_names_the_file(conditions, tmp_path):
    table = write(tmp_path / "latin.csv", "heart_rate,sex\n75,féminin\n", encoding="latin-1")
    with pytest.raises(ValueError, match=r"latin\.csv is not UTF-8 text"):
        build_requests(conditions, table=table)


def test_requests_beyond_the_trained_range_warn_that_the_model_extrapolates(conditions, caplog):
    low, high = conditions["qrs"].observed_range
    with caplog.at_level(logging.WARNING, logger="monai_gen.engines.requests"):
        build_requests(conditions, values={"qrs": (low + high) / 2})
        assert not caplog.records
        build_requests(conditions, values={"qrs": 200})  # valid (40-250 ms), beyond the trained QRS
    assert high < 200 and f"qrs = 200 ms is outside the range the weights were trained on ({low:g}-{high:g} ms)" in caplog.text


def test_a_unitless_condition_beyond_its_trained_range_warns_without_a_dangling_unit(caplog):
    from monai_gen.transforms.conditions import ConditionSet

    position = ConditionSet.from_dict([{"name": "slice_position", "kind": "continuous", "valid_range": [0, 1],
                                        "mean": 0.4, "std": 0.1, "observed_range": [0.29, 0.46]}])
    with caplog.at_level(logging.WARNING, logger="monai_gen.engines.requests"):
        build_requests(position, values={"slice_position": 0.9})
    assert ("slice_position = 0.9 is outside the range the weights were trained on (0.29-0.46): the model "
            "extrapolates there.") in caplog.text


def test_a_category_the_training_data_never_held_warns_that_its_token_is_untrained(shared_data, caplog):
    from monai_gen.transforms.conditions import ConditionSet, read_condition_table

    # IXI's table has sexes only: a brain model fitted on it has never seen a sequence
    specs = [{"name": "sex", "kind": "categorical", "categories": ["F", "M"]},
             {"name": "sequence", "kind": "categorical", "categories": ["T1", "T2", "FLAIR"]}]
    rows = [{"sex": r["Sex"]} for r in read_condition_table(shared_data / "brain_mri/ixi10_2mm/lists/IXI_demog_n10.csv")]
    fitted = ConditionSet(specs).fit(rows)
    assert fitted["sex"].observed_categories == ("F", "M") and fitted["sequence"].observed_categories == ()
    assert ConditionSet.from_dict(fitted.to_dict())["sequence"].observed_categories == ()  # saved with the weights
    with caplog.at_level(logging.WARNING, logger="monai_gen.engines.requests"):
        build_requests(fitted, values={"sex": "F"})
        assert not caplog.records
        build_requests(fitted, values={"sequence": "T2"})
    assert ("sequence = T2 was never in the data the weights were trained on (trained: none): its token is "
            "untrained, so the samples are not steered by it.") in caplog.text
    assert not ConditionSet(specs)["sequence"].extrapolates("T2")  # not fitted: nothing known, nothing said
