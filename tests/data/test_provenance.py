from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monai_gen.data.provenance import provenance_path, write_provenance


@pytest.mark.parametrize(
    "output, sidecar",
    [("out/s_0001.nii.gz", "out/s_0001.json"), ("out/ecg_7", "out/ecg_7.json"), ("out/a.dcm", "out/a.json")],
)
def test_sidecar_name(output, sidecar):
    assert str(provenance_path(output)) == sidecar


def test_sidecar_holds_converted_values_and_synthetic_marker(tmp_path):
    conditions = {"heart_rate_bpm": np.float32(75.0), "qt_ms": torch.tensor(400.0), "age": float("nan")}
    path = write_provenance(tmp_path / "ecg_0001", {"model_id": "ecg", "seed": np.int64(3), "conditions": conditions})
    record = json.loads(path.read_text())
    assert record["synthetic"] is True
    assert record["seed"] == 3
    assert record["conditions"] == {"heart_rate_bpm": 75.0, "qt_ms": 400.0, "age": None}
    assert record["output"] == "ecg_0001"


def test_unserialisable_value_names_its_field(tmp_path):
    with pytest.raises(TypeError, match="conditions.model"):
        write_provenance(tmp_path / "x.nii.gz", {"conditions": {"model": object()}})
    assert not (tmp_path / "x.json").exists()
