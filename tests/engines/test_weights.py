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


def _denoiser(num_categories, context_time_tokens=None):
    from monai_gen.networks.conditioning import ConditionalDenoiser, PhenotypeEncoder
    from monai_gen.networks.nets import DenoisingUNet

    backbone = DenoisingUNet(
        spatial_dims=1, in_channels=2, out_channels=2, channels=[16, 16], attention_levels=[False, True],
        num_res_blocks=1, num_head_channels=8, with_conditioning=True, cross_attention_dim=8, norm_num_groups=8,
        context_time_tokens=context_time_tokens,
    )
    return ConditionalDenoiser(backbone, phenotype_encoder=PhenotypeEncoder(num_categories, embed_dim=8))


def test_warm_start_copies_old_conditions_into_a_network_with_appended_ones(tmp_path):
    from monai_gen.engines.weights import warm_start_weights

    torch.manual_seed(0)
    old = _denoiser([0, 2])  # e.g. heart rate, sex
    path = save_weights(old, tmp_path / "old.safetensors")
    grown = _denoiser([0, 2, 2], context_time_tokens=3)  # + a diagnosis, + condition tokens in the time embedding
    fresh = {k: v.clone() for k, v in grown.state_dict().items()}
    warm_start_weights(grown, path)
    state, before = grown.state_dict(), old.state_dict()
    encoder = "phenotype_encoder."
    torch.testing.assert_close(state[encoder + "value_weight"][:2], before[encoder + "value_weight"])
    torch.testing.assert_close(state[encoder + "value_weight"][2], fresh[encoder + "value_weight"][2])
    torch.testing.assert_close(state[encoder + "category_table.weight"][:2], before[encoder + "category_table.weight"])
    torch.testing.assert_close(state[encoder + "category_table.weight"][2:], fresh[encoder + "category_table.weight"][2:])
    for key in before:
        if before[key].shape == state[key].shape:
            torch.testing.assert_close(state[key], before[key])
    new_keys = set(state) - set(before)
    assert new_keys and all(torch.count_nonzero(state[k]) == 0 for k in new_keys)  # the zero-initialised projection

    with pytest.raises(ValueError, match="cannot warm-start this network"):
        warm_start_weights(_denoiser([0]), path)  # fewer conditions than the file: not a leading block
    with pytest.raises(ValueError, match="tensors without a counterpart"):
        warm_start_weights(torch.nn.Linear(3, 2), path)
    with pytest.raises(FileNotFoundError, match="train the model first"):
        warm_start_weights(grown, tmp_path / "missing.safetensors")
