"""The explorer's controls come from a bundle's conditions; page requests get the library's checks and messages."""

from __future__ import annotations

import pytest

from monai_gen.bundle.registry import find_bundle, read_bundle_info
from monai_gen.explore.controls import MAX_STEPS, control_specs, parse_request


@pytest.fixture(scope="module")
def conditions():
    return read_bundle_info(find_bundle("ecg_generative_diffusion")).conditions


def test_one_control_per_condition_with_unit_valid_and_trained_range(conditions):
    controls = control_specs(conditions, default_steps=25, default_guidance=1.0)
    by_name = {c["name"]: c for c in controls["conditions"]}
    assert list(by_name) == conditions.names
    heart_rate = by_name["heart_rate"]
    spec = conditions["heart_rate"]
    assert (heart_rate["min"], heart_rate["max"]) == spec.valid_range
    assert heart_rate["trained_range"] == list(spec.observed_range)
    assert heart_rate["unit"] == "bpm" and heart_rate["step"] == 1.0
    assert heart_rate["value"] == round(spec.mean)  # starts at the training mean, on the slider's grid
    sex = by_name["sex"]
    assert sex["categories"] == ["male", "female"] and sex["value"] is None  # unspecified: the null token
    assert controls["steps"] == {"min": 1, "max": MAX_STEPS, "value": 25}
    assert controls["guidance_scale"]["value"] == 1.0


def test_parse_request_canonicalises_and_leaves_unset_conditions_out(conditions):
    request = parse_request({"conditions": {"heart_rate": "120", "QT": 380, "sex": "F", "age": None, "qrs": ""},
                             "seed": "7", "guidance_scale": "2.5", "steps": 10}, conditions)
    assert dict(request.conditions) == {"heart_rate": 120.0, "qt": 380.0, "sex": "female"}
    assert (request.seed, request.guidance_scale, request.steps) == (7, 2.5, 10)
    assert parse_request({}, conditions).steps is None  # the bundle's default
    assert parse_request({}, conditions).cine_frames is None  # one sample, not a cine
    assert parse_request({"cine_frames": "12"}, conditions).cine_frames == 12
    assert parse_request({"guidance_scale": ""}, conditions).guidance_scale is None  # likewise


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"conditions": {"heart_rate": 500}}, r"'heart_rate' = 500 bpm is outside its valid range \[30, 200\]"),
        ({"conditions": {"hr": 70}}, "'hr' is not a condition of this model"),
        ({"conditions": {"sex": "x"}}, "not one of its categories"),
        ({"conditions": {"qt": "nan"}}, "is not a value"),
        ({"seed": -1}, "seed must be from 0"),
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"steps": 5000}, "steps must be from 1 to 200"),
        ({"guidance_scale": "strong"}, "guidance_scale must be a number"),
        ({"conditions": [1, 2]}, "conditions must be an object"),
        ({"cine_frames": 1}, "cine_frames must be from 2 to 64"),
        ({"cine_frames": 4.5}, "cine_frames must be a whole number"),
    ],
)
def test_bad_page_input_is_one_clear_message(conditions, payload, message):
    with pytest.raises(ValueError, match=message):
        parse_request(payload, conditions)
