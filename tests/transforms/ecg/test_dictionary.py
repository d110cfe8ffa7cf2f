"""ECG dictionary transforms: the full LoadImaged chain on every cinc2021 record, agreement with the array versions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, LoadImaged

from monai_gen.data.ecg_meta import STANDARD_LEADS, ecg_sampling_rate, make_ecg
from monai_gen.data.ecg_readers import WFDBReader
from monai_gen.transforms.ecg import (
    BandPassECG,
    BandPassECGd,
    DeriveLimbLeads,
    DeriveLimbLeadsd,
    FixedLengthECG,
    FixedLengthECGd,
    MeasureECG,
    MeasureECGd,
    MedianBeat,
    MedianBeatd,
    NormaliseAmplitude,
    NormaliseAmplituded,
    RemoveBaselineWander,
    RemoveBaselineWanderd,
    ResampleECG,
    ResampleECGd,
    StandardiseLeads,
    StandardiseLeadsd,
)


@pytest.fixture(scope="module")
def ecg(cinc_signals) -> MetaTensor:
    return make_ecg(cinc_signals["HR06000"], 500.0, STANDARD_LEADS, record_id="HR06000", source="HR06000.hea")


@pytest.mark.slow
def test_full_chain_gives_12_by_576_median_beats_on_every_cinc_record(shared_data):
    chain = Compose([
        LoadImaged(keys="ecg", reader=WFDBReader()),
        StandardiseLeadsd("ecg"),
        ResampleECGd("ecg", target_fs=500),
        MedianBeatd("ecg"),
        MeasureECGd("ecg"),
    ])
    files = sorted((shared_data / "ecg" / "cinc2021").glob("*.hea"))
    assert len(files) == 50
    for path in files:
        out = chain({"ecg": str(path)})
        beat = out["ecg"]
        assert isinstance(beat, MetaTensor) and beat.shape == (12, 576), path.name
        assert ecg_sampling_rate(beat) == 500.0 and beat.meta["lead_names"] == list(STANDARD_LEADS)
        assert beat.meta["n_beats"] >= 3 and beat.meta["r_peak_index"] == 200, path.name
        assert 250 <= beat.meta["rr_ms"] <= 2400, path.name  # 25-240 bpm, the detector's plausible range
        assert set(out["ecg_measurements"]) >= {"heart_rate_bpm", "qrs_ms", "qt_ms", "pr_ms", "qtc_ms"}
        assert out["ecg_measurements"]["heart_rate_bpm"] == pytest.approx(60000 / beat.meta["rr_ms"])


def test_ptb_chain_standardises_resamples_and_takes_the_median_beat(shared_data):
    path = shared_data / "ecg" / "ptb_s0010_re" / "s0010_re.hea"
    chain = Compose([LoadImaged(keys="ecg", reader=WFDBReader()), StandardiseLeadsd("ecg"), ResampleECGd("ecg", 500),
                     MedianBeatd("ecg")])
    beat = chain({"ecg": str(path)})["ecg"]
    assert beat.shape == (12, 576) and ecg_sampling_rate(beat) == 500.0 and beat.meta["n_beats"] > 40
    assert beat.meta["age"] == 81.0 and beat.meta["record_id"] == "s0010_re"  # header fields travel along


@pytest.mark.parametrize(
    ("array", "dictionary"),
    [
        (StandardiseLeads(), StandardiseLeadsd("ecg")),
        (DeriveLimbLeads(), DeriveLimbLeadsd("ecg")),
        (ResampleECG(360), ResampleECGd("ecg", 360)),
        (RemoveBaselineWander(0.7), RemoveBaselineWanderd("ecg", 0.7)),
        (BandPassECG(1.0, 30.0, order=3), BandPassECGd("ecg", 1.0, 30.0, order=3)),
        (FixedLengthECG(3000, align="start"), FixedLengthECGd("ecg", 3000, align="start")),
        (MedianBeat(min_beats=5), MedianBeatd("ecg", min_beats=5)),
        (NormaliseAmplitude("std"), NormaliseAmplituded("ecg", "std")),
    ],
)
def test_array_and_dictionary_versions_agree(ecg, array, dictionary):
    expected = array(ecg)
    out = dictionary({"ecg": ecg, "label": 3})
    assert out["label"] == 3 and isinstance(out["ecg"], MetaTensor)
    torch.testing.assert_close(out["ecg"], expected)
    assert ecg_sampling_rate(out["ecg"]) == ecg_sampling_rate(expected)
    assert {k: v for k, v in out["ecg"].meta.items() if k != "affine"}.keys() == expected.meta.keys() - {"affine"}


def test_dictionary_versions_take_plain_arrays_with_fs_and_lead_names(cinc_signals):
    signal = cinc_signals["HR06000"][[0, 1, 6, 7, 8, 9, 10, 11]].astype(np.float32)
    names = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    chain = Compose([StandardiseLeadsd("x", names), ResampleECGd("x", 250, fs=500), MedianBeatd("x", fs=250),
                     MeasureECGd("x", r_index=100, fs=250, postfix="intervals")])
    out = chain({"x": signal})
    assert isinstance(out["x"], np.ndarray) and out["x"].shape == (12, 288)
    assert np.isnan(out["x_intervals"]["heart_rate_bpm"])  # a bare median beat carries no RR interval
    assert 60 < out["x_intervals"]["qrs_ms"] < 160


def test_measure_dictionary_equals_array_measure(ecg):
    out = MeasureECGd("ecg")({"ecg": ecg})
    np.testing.assert_equal(out["ecg_measurements"], MeasureECG().measure(ecg))
    assert out["ecg"] is ecg


def test_normalise_inverts_through_invertd(ecg):
    forward = Compose([NormaliseAmplituded("ecg", "max_abs")])
    out = forward({"ecg": ecg})
    assert float(out["ecg"].abs().max()) == pytest.approx(1.0) and out["ecg"].meta["units"] == "normalised"
    out["pred"] = out["ecg"].clone()
    back = Invertd(keys="pred", transform=forward, orig_keys="ecg")(out)
    torch.testing.assert_close(back["pred"], ecg, atol=1e-5, rtol=0)
    assert back["pred"].meta["units"] == "mV"
    torch.testing.assert_close(forward.inverse(out)["ecg"], ecg, atol=1e-5, rtol=0)


def test_fixed_length_inverts_through_invertd(ecg):
    forward = Compose([StandardiseLeadsd("ecg"), FixedLengthECGd("ecg", 2048)])
    out = forward({"ecg": ecg})
    assert out["ecg"].shape == (12, 2048)
    out["pred"] = out["ecg"] * 2.0  # e.g. a network output on the fixed-length signal
    back = Invertd(keys="pred", transform=forward, orig_keys="ecg")(out)
    assert back["pred"].shape == (12, 5000)
    torch.testing.assert_close(back["pred"][:, 1476:3524], 2.0 * ecg[:, 1476:3524])


def test_missing_keys_and_errors_pass_through(ecg):
    assert StandardiseLeadsd(["ecg", "other"], allow_missing_keys=True)({"ecg": ecg})["ecg"].shape == (12, 5000)
    with pytest.raises(KeyError, match="other"):
        StandardiseLeadsd(["ecg", "other"])({"ecg": ecg})
    three = make_ecg(ecg[:3], 500.0, ["I", "II", "III"], source="three.hea")
    with pytest.raises(ValueError, match=r"three.hea: missing leads \['V1'"):
        StandardiseLeadsd("ecg")({"ecg": three})
