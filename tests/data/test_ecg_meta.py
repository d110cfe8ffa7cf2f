"""The ECG MetaTensor contract: rate only in the affine, header fields present only when known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import SpatialPad

from monai_gen.data.ecg_meta import AGE, DX_CODES, SEX, ecg_affine, ecg_sampling_rate, make_ecg, normalise_sex


def test_header_fields_are_kept_when_known_and_left_out_when_not():
    signal = np.stack([np.sin(np.arange(100) / 5), np.cos(np.arange(100) / 5)])
    known = make_ecg(signal, 500, ["I", "II"], record_id="r1", header={"age": 61, "sex": "F", "dx_codes": [426783006]})
    assert known.meta[AGE] == 61.0 and known.meta[SEX] == "female" and known.meta[DX_CODES] == ["426783006"]
    assert known.dtype == torch.float32 and known.meta["record_id"] == "r1"
    unknown = make_ecg(signal, 500, ["I", "II"], header={"age": float("nan"), "sex": "Unknown", "dx_codes": []})
    assert not {AGE, SEX, DX_CODES} & unknown.meta.keys()


def test_sex_spellings():
    assert [normalise_sex(v) for v in ("M", "female", " Male ", "woman", "U", None)] == [
        "male", "female", "male", "female", None, None]


def test_rate_round_trips_through_the_affine_and_survives_monai_padding():
    for fs in (100.0, 257.0, 500.0, 1000.0):
        ecg = make_ecg(np.random.default_rng(0).normal(size=(3, 50)), fs, ["I", "II", "V1"])
        assert ecg_sampling_rate(ecg) == fs
        assert ecg_sampling_rate(SpatialPad([80])(ecg)) == fs


def test_bad_rates_and_affines_are_rejected():
    with pytest.raises(ValueError, match="positive number of Hz, got 0"):
        ecg_affine(0)
    with pytest.raises(ValueError, match="positive number of Hz, got nan"):
        make_ecg(np.ones((1, 10)) * np.arange(10), float("nan"), ["I"])
    with pytest.raises(ValueError, match=r"not a 1D ECG affine"):
        ecg_sampling_rate(MetaTensor(torch.zeros(1, 4, 4)))
    with pytest.raises(ValueError, match=r"must be \(leads, samples\); got shape \(5,\)"):
        make_ecg(np.arange(5.0), 500, ["I"], source="x.hea")
