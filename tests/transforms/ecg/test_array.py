"""ECG array transforms on real records (cinc2021, PTB s0010_re); numpy / torch / MetaTensor inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage

from monai_gen.data.ecg_meta import STANDARD_LEADS, ecg_sampling_rate, make_ecg
from monai_gen.data.ecg_readers import WFDBReader, canonical_lead_name
from monai_gen.metrics.ecg import limb_lead_residual
from monai_gen.transforms.ecg.array import (
    BandPassECG,
    CropContextMargin,
    DeriveLimbLeads,
    FixedLengthECG,
    MeasureECG,
    MedianBeat,
    NormaliseAmplitude,
    RemoveBaselineWander,
    ResampleECG,
    StandardiseLeads,
)
from monai_gen.transforms.ecg.functional import detect_r_peaks, median_beat
from monai_gen.transforms.ecg.measurements import measure_ecg, measure_median_beat

KINDS = ("numpy", "torch", "metatensor")
RECORDED = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]  # the 8 independent leads


def _as(kind: str, signal: np.ndarray, fs: float = 500.0, names=STANDARD_LEADS):
    if kind == "numpy":
        return signal.astype(np.float32)
    if kind == "torch":
        return torch.as_tensor(signal, dtype=torch.float32)
    return make_ecg(signal, fs, names, record_id="test", source="test.hea")


def _np(x) -> np.ndarray:
    return np.asarray(torch.as_tensor(x).detach().cpu(), dtype=np.float64)


@pytest.fixture(scope="module")
def record(cinc_signals) -> np.ndarray:
    return cinc_signals["E07500"]


@pytest.fixture(scope="module")
def ptb(shared_data) -> MetaTensor:
    return LoadImage(reader=WFDBReader(), image_only=True)(str(shared_data / "ecg" / "ptb_s0010_re" / "s0010_re.hea"))


def test_derived_limb_leads_match_recorded_ones_on_every_cinc_record(cinc_signals):
    # recorded limb leads are quantised to 1 uV independently of I and II: up to 3.5 uV seen over the 50 records
    index = [STANDARD_LEADS.index(n) for n in RECORDED]
    for name, signal in cinc_signals.items():
        out = StandardiseLeads(RECORDED)(signal[index])
        np.testing.assert_allclose(out, signal, atol=0.004, rtol=0, err_msg=name)


def test_derived_limb_leads_match_ptb_with_frank_leads_present(ptb):
    names = ptb.meta["lead_names"]
    keep = [i for i, name in enumerate(names) if name not in ("III", "aVR", "aVL", "aVF")]
    x = make_ecg(ptb[keep], 1000.0, [names[i] for i in keep], source="s0010_re.hea")  # I, II, V1-V6, vx, vy, vz
    out = StandardiseLeads()(x)
    assert out.meta["derived_leads"] == ["III", "aVR", "aVL", "aVF"] and out.shape == (12, ptb.shape[1])
    # PTB stores each lead at 0.5 uV resolution: 1 uV reached
    np.testing.assert_allclose(_np(out), _np(ptb[:12]), atol=0.0012, rtol=0)


def test_derived_leads_satisfy_the_residual_metric_exactly(record):
    derived = StandardiseLeads(RECORDED)(record[[STANDARD_LEADS.index(n) for n in RECORDED]])
    assert limb_lead_residual(derived)[0] < 1e-12  # same coefficients as the metric, shared not copied
    assert limb_lead_residual(record)[0] < 0.01


@pytest.mark.parametrize("kind", ["numpy", "torch", "meta"])
def test_derive_limb_leads_repairs_inconsistent_leads_and_keeps_recorded_ones(record, kind):
    broken = _np(record).copy()
    broken[2:6] += np.random.default_rng(0).normal(0.0, 0.2, size=broken[2:6].shape)  # III, aVR, aVL, aVF off
    batch = np.stack([broken, _np(record)])  # works on (B, 12, samples) too
    x = {"numpy": batch, "torch": torch.as_tensor(batch), "meta": MetaTensor(torch.as_tensor(batch))}[kind]
    out = DeriveLimbLeads()(x)
    assert type(out) is type(x) and limb_lead_residual(_np(out)).max() < 1e-6 and limb_lead_residual(broken)[0] > 0.3
    np.testing.assert_array_equal(_np(out)[:, [0, 1, *range(6, 12)]], batch[:, [0, 1, *range(6, 12)]])
    np.testing.assert_allclose(_np(out)[1], _np(record), atol=0.01)  # a real record already obeys the laws (quantised)
    assert limb_lead_residual(_np(x))[0] > 0.3  # the input is not modified
    with pytest.raises(ValueError, match=r"\(\.\.\., 12, samples\) in standard lead order, got shape \(8, 5000\)"):
        DeriveLimbLeads()(_np(record)[:8])


def test_ptb_drops_frank_leads_and_derives_nothing(ptb):
    out = StandardiseLeads()(ptb)
    assert ptb.meta["lead_names"][-3:] == ["vx", "vy", "vz"]
    assert out.shape == (12, ptb.shape[1]) and out.meta["lead_names"] == list(STANDARD_LEADS)
    assert out.meta["derived_leads"] == [] and ecg_sampling_rate(out) == 1000.0
    torch.testing.assert_close(out, ptb[:12])
    assert ptb.meta["lead_names"][-1] == "vz"  # the input's meta is left alone


@pytest.mark.parametrize("kind", KINDS)
def test_standardise_reorders_and_reads_canonical_names(record, kind):
    shuffled = ["v6", "Lead II", "avf", "V1", "III", "I", "aVL", "AVR", "V5", "V4", "V3", "V2"]
    order = [STANDARD_LEADS.index(canonical_lead_name(n)) for n in shuffled]
    x = _as(kind, record[order], names=shuffled)
    out = StandardiseLeads(shuffled if kind != "metatensor" else None)(x)
    assert type(out) is type(x) and out.dtype == x.dtype
    np.testing.assert_array_equal(_np(out), record.astype(np.float32))
    if kind == "metatensor":
        assert out.meta["lead_names"] == list(STANDARD_LEADS) and x.meta["lead_names"] == shuffled
        assert ecg_sampling_rate(out) == 500.0 and out.meta["record_id"] == "test"


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["II", "III", "V1", "V2", "V3", "V4", "V5", "V6"], r"missing leads \['I', 'aVR', 'aVL', 'aVF'\].*I and II"),
        (STANDARD_LEADS[:11], r"missing leads \['V6'\]"),
    ],
)
def test_missing_leads_name_the_leads_and_the_file(record, names, message):
    ecg = make_ecg(record[[STANDARD_LEADS.index(n) for n in names]], 500, names, source="E07500.hea")
    with pytest.raises(ValueError, match=message) as info:
        StandardiseLeads()(ecg)
    assert "E07500.hea" in str(info.value)


def test_standardise_rejects_bad_input(record):
    with pytest.raises(ValueError, match="no lead names"):
        StandardiseLeads()(record)
    with pytest.raises(ValueError, match="duplicate lead names"):
        StandardiseLeads(["I", "i", *STANDARD_LEADS[2:]])(record)
    with pytest.raises(ValueError, match="12 leads but 8 lead names"):
        StandardiseLeads(RECORDED)(record)
    with pytest.raises(ValueError, match=r"\(leads, samples\); got shape \(1, 12, 5000\)"):
        StandardiseLeads(STANDARD_LEADS)(record[None])
    broken = record.copy()
    broken[3, 100] = np.nan
    with pytest.raises(ValueError, match="1 lead\\(s\\) contain NaN"):
        StandardiseLeads(STANDARD_LEADS)(broken)


def test_ptb_resampled_to_500_hz_keeps_r_peak_times(ptb):
    out = ResampleECG(500)(StandardiseLeads()(ptb))
    assert out.shape == (12, ptb.shape[1] // 2) and ecg_sampling_rate(out) == 500.0 and out.dtype == torch.float32
    before = detect_r_peaks(_np(ptb[:12]), 1000.0) / 1000.0
    after = detect_r_peaks(_np(out), 500.0) / 500.0
    assert before.size == after.size > 40
    # one sample at 500 Hz (2 ms) is the resolution of the resampled peaks
    np.testing.assert_allclose(after, before, atol=0.002)


@pytest.mark.parametrize("kind", KINDS)
def test_resample_kinds_agree_and_round_trip(record, kind):
    x = _as(kind, record)
    down = ResampleECG(250, fs=500 if kind != "metatensor" else None)(x)
    assert type(down) is type(x) and down.shape == (12, 2500)
    up = ResampleECG(500, fs=250 if kind != "metatensor" else None)(down)
    # band-limited content (< 125 Hz) survives 500 -> 250 -> 500 Hz; compare away from the edges
    middle = slice(250, -250)
    rms = np.sqrt(np.mean((_np(up)[:, middle] - record[:, middle]) ** 2))
    assert rms < 0.02 * np.sqrt(np.mean(record**2))
    np.testing.assert_allclose(_np(down), _np(ResampleECG(250, fs=500)(record)), atol=1e-5)


def test_resample_needs_a_rate(record):
    with pytest.raises(ValueError, match="pass fs="):
        ResampleECG(250)(record)
    with pytest.raises(ValueError, match="fs=250 Hz disagrees with the rate in the affine \\(500.0 Hz\\)"):
        ResampleECG(100, fs=250)(_as("metatensor", record))
    bare = MetaTensor(torch.as_tensor(record, dtype=torch.float32))  # 4 x 4 identity affine: no rate in it
    with pytest.raises(ValueError, match="pass fs= \\(Hz\\) for a MetaTensor without an ECG affine"):
        ResampleECG(250)(bare)
    assert ecg_sampling_rate(ResampleECG(250, fs=500)(bare)) == 250.0
    with pytest.raises(ValueError, match="target_fs must be a positive"):
        ResampleECG(0)


def test_baseline_wander_removed_from_a_real_record(record):
    t = np.arange(record.shape[1]) / 500.0
    wander = 0.8 + 0.5 * np.sin(2 * np.pi * 0.15 * t)  # offset + respiration-like drift in mV
    clean = RemoveBaselineWander(fs=500)(record)
    drifted = RemoveBaselineWander(fs=500)(record + wander)
    middle = slice(500, -500)
    assert np.abs(drifted - clean)[:, middle].max() < 0.02
    assert np.abs(drifted.mean(axis=1)).max() < 0.01  # no offset left (the record's own was up to 0.1 mV)


@pytest.mark.parametrize("kind", KINDS)
def test_band_pass_passes_the_band_and_stops_the_rest(kind):
    t = np.arange(5000) / 500.0
    in_band, high, dc = np.sin(2 * np.pi * 10 * t), np.sin(2 * np.pi * 120 * t), 2.0
    x = _as(kind, np.stack([in_band + high + dc, in_band]), names=["I", "II"])
    out = _np(BandPassECG(0.5, 40.0, fs=500 if kind != "metatensor" else None)(x))
    middle = slice(1000, -1000)
    np.testing.assert_allclose(out[:, middle], np.stack([in_band, in_band])[:, middle], atol=0.03)


def test_band_pass_rejects_bad_cut_offs():
    with pytest.raises(ValueError, match=r"high_hz must lie in \(0, 125\) Hz.*got 150"):
        BandPassECG(0.5, 150.0, fs=250)(np.random.default_rng(0).normal(size=(2, 2000)))
    with pytest.raises(ValueError, match="low_hz \\(40.0\\) must be below high_hz \\(10.0\\)"):
        BandPassECG(40.0, 10.0, fs=500)(np.random.default_rng(0).normal(size=(2, 2000)))
    with pytest.raises(ValueError, match="too few to filter"):
        BandPassECG(fs=500)(np.random.default_rng(0).normal(size=(2, 10)))


@pytest.mark.parametrize("kind", KINDS)
def test_fixed_length_crops_and_pads(record, kind):
    x = _as(kind, record)
    cropped = FixedLengthECG(4000)(x)
    np.testing.assert_array_equal(_np(cropped), record[:, 500:4500].astype(np.float32))
    padded = FixedLengthECG(6000, align="start")(x)
    np.testing.assert_array_equal(_np(padded)[:, :5000], record.astype(np.float32))
    assert not _np(padded)[:, 5000:].any()
    assert type(cropped) is type(x) and type(padded) is type(x)
    if kind == "metatensor":
        assert ecg_sampling_rate(cropped) == ecg_sampling_rate(padded) == 500.0
        assert padded.meta["lead_names"] == list(STANDARD_LEADS)


@pytest.mark.parametrize(("n_samples", "align"), [(4001, "center"), (6001, "center"), (4000, "start"), (5000, "start")])
def test_fixed_length_inverse_restores_the_length(record, n_samples, align):
    x = _as("metatensor", record)
    transform = FixedLengthECG(n_samples, align=align)
    y = transform(x)
    back = transform.inverse(y)
    assert back.shape == x.shape and not back.applied_operations and ecg_sampling_rate(back) == 500.0
    kept = _np(back).any(axis=0)  # cropped samples come back as zeros, the rest exactly
    assert kept.sum() >= min(n_samples, 5000) - 5
    np.testing.assert_array_equal(_np(back)[:, kept], _np(x)[:, kept])
    with pytest.raises(TypeError, match="needs the MetaTensor it returned, got ndarray"):
        transform.inverse(record)


def test_fixed_length_rejects_bad_input(record):
    with pytest.raises(ValueError, match="n_samples must be a positive integer, got 0"):
        FixedLengthECG(0)
    with pytest.raises(ValueError, match=r"align must be one of \['center', 'start'\], got 'middle'"):
        FixedLengthECG(10, align="middle")
    with pytest.raises(ValueError, match=r"got shape \(5000,\)"):
        FixedLengthECG(10)(record[0])


@pytest.mark.parametrize("kind", KINDS)
def test_median_beat_wraps_the_functional_and_fills_meta(record, kind):
    out = MedianBeat(fs=500 if kind != "metatensor" else None)(_as(kind, record))
    expected, used, rr_ms = median_beat(record.astype(np.float32), 500.0)
    assert type(out) is type(_as(kind, record)) and out.shape == (12, 576)
    np.testing.assert_allclose(_np(out), expected, atol=1e-6)
    if kind == "metatensor":
        assert out.meta["n_beats"] == used.size >= 8 and out.meta["r_peak_index"] == 200
        assert out.meta["rr_ms"] == pytest.approx(rr_ms) and ecg_sampling_rate(out) == 500.0


def test_median_beat_at_1000_hz_keeps_duration(ptb):
    out = MedianBeat()(StandardiseLeads()(ptb))
    assert out.shape == (12, 1152) and out.meta["r_peak_index"] == 400 and ecg_sampling_rate(out) == 1000.0
    assert int(np.argmax(np.abs(_np(out)).mean(axis=0))) == pytest.approx(400, abs=5)  # R is the QRS maximum


def _r_of(beat) -> int:
    """Sample of the QRS maximum (mean |x| over leads) of a median beat."""
    return int(np.argmax(np.abs(_np(beat)).mean(axis=0)))


def test_r_peak_index_follows_resampling_and_fixed_length(ptb):
    beat = MedianBeat()(StandardiseLeads()(ptb))  # 1000 Hz, R at 400
    half = ResampleECG(500)(beat)
    assert half.shape == (12, 576) and half.meta["r_peak_index"] == 200 and beat.meta["r_peak_index"] == 400
    assert _r_of(half) == pytest.approx(200, abs=3)
    cases = [(FixedLengthECG(600), 212), (FixedLengthECG(500), 162), (FixedLengthECG(400, align="start"), 200)]
    for transform, expected in cases:
        out = transform(half)
        assert out.meta["r_peak_index"] == expected and _r_of(out) == pytest.approx(expected, abs=3)
        assert transform.inverse(out).meta["r_peak_index"] == 200


def test_median_beat_errors_name_the_file(record):
    with pytest.raises(ValueError, match="test.hea: .*under 2 s"):
        MedianBeat()(_as("metatensor", record[:, :600]))
    with pytest.raises(ValueError, match="pass fs="):
        MedianBeat()(record)


@pytest.mark.parametrize("method", ["max_abs", "std", "fixed"])
def test_normalise_inverse_returns_millivolts(record, method):
    normaliser = NormaliseAmplitude(method, scale=2.0 if method == "fixed" else None)
    x = _as("metatensor", record)
    y = normaliser(x)
    assert y.meta["units"] == "normalised" and x.meta["units"] == "mV" and not x.applied_operations
    if method == "max_abs":
        assert float(y.abs().max()) == pytest.approx(1.0)
    if method == "std":
        assert float(y.double().std()) == pytest.approx(1.0, rel=1e-3)
    back = normaliser.inverse(y)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=0)
    assert back.meta["units"] == "mV" and not back.applied_operations


@pytest.mark.parametrize("kind", KINDS)
def test_normalise_keeps_kind_and_lead_laws(record, kind):
    out = NormaliseAmplitude()(_as(kind, record))
    assert type(out) is type(_as(kind, record))
    np.testing.assert_allclose(_np(out), record / np.abs(record).max(), atol=1e-6)


def test_normalise_rejects_bad_arguments(record):
    with pytest.raises(ValueError, match="method must be one of .*'max_abs'.*got 'minmax'"):
        NormaliseAmplitude("minmax")
    with pytest.raises(ValueError, match="scale is used with method='fixed' only"):
        NormaliseAmplitude("std", scale=1.0)
    with pytest.raises(ValueError, match="flat"):
        NormaliseAmplitude()(np.zeros((12, 100)))


def test_measure_median_beat_and_rhythm(record):
    beat = MedianBeat()(_as("metatensor", record))
    measured = MeasureECG()(beat)
    expected = measure_median_beat(_np(beat), 500.0, r_index=200, rr_ms=beat.meta["rr_ms"]).as_dict()
    np.testing.assert_equal(measured.meta["measurements"], expected)
    assert 40 < measured.meta["measurements"]["heart_rate_bpm"] < 150
    torch.testing.assert_close(measured, beat)
    rhythm = MeasureECG(fs=500).measure(record)
    np.testing.assert_equal(rhythm, measure_ecg(record.astype(np.float32), 500.0).as_dict())
    with pytest.raises(TypeError, match="use MeasureECG\\(\\).measure\\(x\\)"):
        MeasureECG(fs=500)(record)


@pytest.mark.gpu
def test_cuda_tensors_stay_on_the_device(record):
    x = _as("metatensor", record).to("cuda")
    chain = [StandardiseLeads(), ResampleECG(250), BandPassECG(), FixedLengthECG(2400), NormaliseAmplitude()]
    for transform in chain:
        x = transform(x)
        assert x.device.type == "cuda" and isinstance(x, MetaTensor), type(transform).__name__
    assert MedianBeat()(x).device.type == "cuda" and ecg_sampling_rate(x) == 250.0


def test_crop_context_margin_returns_the_centre_of_real_beats_in_numpy_and_torch(cinc_signals):
    signal = cinc_signals["E07500"]
    peaks = detect_r_peaks(signal, 500.0)
    wide = np.stack([signal[:, p - 232 : p + 408] for p in peaks[1:4]])  # (3, 12, 640), R at 232
    cropped = CropContextMargin(32)(wide)
    assert cropped.shape == (3, 12, 576)
    np.testing.assert_array_equal(cropped, np.stack([signal[:, p - 200 : p + 376] for p in peaks[1:4]]))
    assert torch.equal(CropContextMargin(32)(torch.from_numpy(wide)), torch.from_numpy(cropped))
    with pytest.raises(ValueError, match="more than 64 samples"):
        CropContextMargin(32)(wide[..., :64])
    with pytest.raises(ValueError, match="margin must be >= 0"):
        CropContextMargin(-1)
