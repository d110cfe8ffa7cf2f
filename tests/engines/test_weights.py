from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from monai_gen.engines.weights import ExportWeights, load_tensor, load_weights, save_tensors, save_weights


def test_round_trip_and_clear_errors(tmp_path):
    source, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    path = save_weights(source, tmp_path / "w.safetensors")
    load_weights(target, path)
    torch.testing.assert_close(target.weight, source.weight)
    with pytest.raises(FileNotFoundError, match="train the model first"):
        load_weights(target, tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="does not fit the network definition"):
        load_weights(torch.nn.Linear(4, 2), path)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_weights(target, tmp_path / "bad.safetensors")


def test_export_handler_writes_at_completion(tmp_path):
    module = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    ExportWeights(module, tmp_path / "final.safetensors").attach(engine)
    assert not (tmp_path / "final.safetensors").exists()
    engine.run([0, 1], max_epochs=1)
    assert (tmp_path / "final.safetensors").is_file()


def test_named_tensors_round_trip_and_errors_name_file_and_key(tmp_path):
    mean = torch.randn(12, 576)
    path = save_tensors({"mean_beat": mean}, tmp_path / "mean_beat.safetensors")
    torch.testing.assert_close(load_tensor(path, "mean_beat"), mean)
    with pytest.raises(ValueError, match=r"mean_beat.safetensors holds no tensor 'offset' \(it has \['mean_beat'\]\)"):
        load_tensor(path, "offset")
    with pytest.raises(FileNotFoundError, match="missing.safetensors does not exist"):
        load_tensor(tmp_path / "missing.safetensors", "mean_beat")
