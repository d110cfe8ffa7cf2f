"""Requests, WFDB writing and previews of the ECG bundle's inference."""

from __future__ import annotations

import pytest
import torch
import wfdb

from monai_gen.bundle.ecg_generation import build_requests, ecg_preview, wfdb_sample_writer
from monai_gen.bundle.registry import find_bundle, read_bundle_info


@pytest.fixture(scope="module")
def conditions():
    return read_bundle_info(find_bundle("ecg_generative_diffusion")).conditions


def test_plain_table_and_sweep_requests(conditions, tmp_path):
    plain = build_requests(conditions, values={"heart_rate": 75, "qt": None}, num_samples=3, seed=10)
    assert [r.seed for r in plain] == [10, 11, 12] and all(r.conditions == {"heart_rate": 75} for r in plain)
    table = tmp_path / "subjects.csv"
    table.write_text("heart_rate,sex\n60,female\n90,\n")
    rows = build_requests(conditions, values={"qt": 400}, table=table, num_samples=1)
    assert [r.conditions for r in rows] == [{"qt": 400, "heart_rate": "60", "sex": "female"}, {"qt": 400, "heart_rate": "90"}]
    sweep = build_requests(conditions, values={"sex": "male"}, sweep="qt", sweep_start=350, sweep_stop=450, sweep_num_values=3, sweep_num_seeds=2, seed=5)
    assert [(r.conditions["qt"], r.seed) for r in sweep] == [(350, 5), (350, 6), (400, 5), (400, 6), (450, 5), (450, 6)]


def test_invalid_requests_are_rejected_with_names(conditions, tmp_path):
    with pytest.raises(ValueError, match="unknown phenotype"):
        build_requests(conditions, values={"bmi": 25})
    with pytest.raises(ValueError, match="'heart_rate' = 20 bpm is outside its valid range"):
        build_requests(conditions, values={"heart_rate": 20})
    table = tmp_path / "bad.csv"
    table.write_text("heart_rate,sex\n60,unknown-sex\n")
    with pytest.raises(ValueError, match=r"bad\.csv, row 1"):
        build_requests(conditions, table=table)
    with pytest.raises(ValueError, match="continuous phenotype"):
        build_requests(conditions, sweep="sex", sweep_start=0, sweep_stop=1)


def test_writer_and_sweep_preview_on_records(conditions, tmp_path):
    lead_names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    requests = build_requests(conditions, sweep="heart_rate", sweep_start=60, sweep_stop=90, sweep_num_values=2, sweep_num_seeds=2)
    write = wfdb_sample_writer(fs=500, lead_names=lead_names)
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
