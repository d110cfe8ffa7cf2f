"""WFDB writing and previews of the ECG bundle's inference."""

from __future__ import annotations

import pytest
import torch
import wfdb

from monai_gen.bundle.ecg_generation import ecg_preview
from monai_gen.bundle.registry import find_bundle, read_bundle_info
from monai_gen.data.sample_writers import WFDBSampleWriter
from monai_gen.engines.requests import build_requests


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
    assert all((tmp_path / f"{r.name}.png").is_file() for r in requests)
