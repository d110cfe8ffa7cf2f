"""WFDB writing and previews of the ECG bundle's inference: the sweep strip, the contact sheet of a job's first
samples (read back from WFDB records or array shards of real ECG beats), a 12-lead PNG per sample only on request."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb

from monai_gen.bundle.contact_sheet import CONTACT_SHEET_NAME
from monai_gen.bundle.ecg_generation import ecg_preview
from monai_gen.bundle.registry import find_bundle, read_bundle_info
from monai_gen.data.ecg_meta import STANDARD_LEADS
from monai_gen.data.sample_writers import ArrayShardWriter, WFDBSampleWriter
from monai_gen.engines.requests import build_requests, requests_from_rows
from monai_gen.transforms.ecg.functional import median_beat


@pytest.fixture(scope="module")
def conditions():
    return read_bundle_info(find_bundle("ecg_generative_diffusion")).conditions


def test_writer_and_sweep_preview_on_records(conditions, tmp_path):
    lead_names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    requests = build_requests(conditions, sweep="heart_rate", sweep_start=60, sweep_stop=90, sweep_num_values=2, sweep_num_seeds=2)
    write = WFDBSampleWriter(fs=500, lead_names=lead_names)
    preview = ecg_preview(fs=500, lead_names=lead_names, sweep="heart_rate", unit="bpm", requests=requests)
    samples = torch.randn(len(requests), 12, 576) * 0.2
    for sample, request in zip(samples, requests, strict=True):
        files = write(sample, tmp_path / request.name, {"seed": request.seed, "conditions": request.conditions})
        assert [f.suffix for f in files] == [".hea", ".dat", ".json"]
    preview(samples, requests, tmp_path)
    record = wfdb.rdrecord(str(tmp_path / requests[0].name))
    assert "heart_rate: 60.0" in record.comments
    assert (tmp_path / "sweep_heart_rate.png").stat().st_size > 5000
    assert not list(tmp_path.glob("sweep_heart_rate_*.png")) and not (tmp_path / CONTACT_SHEET_NAME).exists()


@pytest.fixture(scope="module")
def beats(shared_data):
    """Median beats ``(12, 576)`` in mV of five real CinC 2021 records, one per sample of the tests below."""
    out = []
    for name in ("E07500", "E07501", "E07502", "E07503", "E07504"):
        record = wfdb.rdrecord(str(shared_data / "ecg" / "cinc2021" / name))
        beat, _, _ = median_beat(record.p_signal.T, fs=record.fs)
        out.append(beat)
    return torch.as_tensor(np.stack(out), dtype=torch.float32)


def _write(requests, samples, folder: Path) -> None:
    write = WFDBSampleWriter(fs=500, lead_names=STANDARD_LEADS)
    for sample, request in zip(samples, requests, strict=True):
        write(sample, folder / request.name, {"seed": request.seed, "conditions": request.conditions})


def test_the_contact_sheet_shows_the_first_samples_once_written_and_no_png_per_sample(beats, tmp_path):
    requests = requests_from_rows([{"heart_rate": 60.0 + 5 * k} for k in range(5)], seed=0, prefix="ecg")
    preview = ecg_preview(fs=500, lead_names=STANDARD_LEADS, requests=requests, contact_sheet_size=3)
    sheet = tmp_path / CONTACT_SHEET_NAME
    _write(requests[:2], beats[:2], tmp_path)
    preview(beats[:2], requests[:2], tmp_path)
    assert not sheet.exists()  # the third of the first three is not written yet
    _write(requests[2:4], beats[2:4], tmp_path)
    preview(beats[2:4], requests[2:4], tmp_path)
    drawn = sheet.stat().st_mtime_ns
    _write(requests[4:], beats[4:], tmp_path)
    preview(beats[4:], requests[4:], tmp_path)
    assert sheet.stat().st_mtime_ns == drawn  # a later batch draws no figure
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [CONTACT_SHEET_NAME]


def test_the_sheet_draws_lead_ii_as_written_and_per_sample_pngs_come_on_request(beats, tmp_path):
    from matplotlib.image import imread

    requests = requests_from_rows([{"qt": 400.0}, {}], seed=4, prefix="ecg")
    _write(requests, beats[:2], tmp_path)
    preview = ecg_preview(fs=500, lead_names=STANDARD_LEADS, requests=requests, per_sample=True)
    figure = preview(beats[:2], requests, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [CONTACT_SHEET_NAME, "ecg_0.png", "ecg_1.png"]
    assert imread(tmp_path / "ecg_0.png").shape[1] > imread(tmp_path / CONTACT_SHEET_NAME).shape[1] / 2  # a page
    assert [ax.get_title() for ax in figure.axes] == ["ecg_0 · seed 4\nqt 400", "ecg_1 · seed 5\nunconditioned"]
    for ax, beat in zip(figure.axes, beats[:2], strict=True):
        np.testing.assert_allclose(ax.lines[0].get_ydata(), beat[1].numpy(), atol=0.005)  # lead II, ADC steps apart
    assert figure.axes[0].get_ylim() == figure.axes[1].get_ylim()  # one amplitude scale
    assert not np.allclose(figure.axes[0].lines[0].get_ydata(), figure.axes[1].lines[0].get_ydata(), atol=0.05)


def test_the_sheet_reads_array_shards_and_a_sweep_has_no_sheet(beats, tmp_path):
    requests = requests_from_rows([{}] * 4, seed=0, prefix="ecg")
    shards = ArrayShardWriter()
    provenances = [{"seed": r.seed, "conditions": dict(r.conditions)} for r in requests]
    shards.write_batch(beats[:2], requests[:2], provenances[:2], tmp_path)
    preview = ecg_preview(fs=500, lead_names=STANDARD_LEADS, requests=requests)
    preview(beats[:2], requests[:2], tmp_path)
    assert not (tmp_path / CONTACT_SHEET_NAME).exists()
    shards.write_batch(beats[2:4], requests[2:], provenances[2:], tmp_path)
    figure = preview(beats[2:4], requests[2:], tmp_path)
    assert (tmp_path / CONTACT_SHEET_NAME).stat().st_size > 10_000 and len(figure.axes) == 4
    for ax, beat in zip(figure.axes, beats[:4], strict=True):
        np.testing.assert_allclose(ax.lines[0].get_ydata(), beat[1].numpy(), atol=1e-6)  # float32 shards: exact
    with pytest.raises(ValueError, match="contact_sheet_size must be >= 0, got -1"):
        ecg_preview(fs=500, lead_names=STANDARD_LEADS, requests=requests, contact_sheet_size=-1)
