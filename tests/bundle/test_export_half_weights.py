"""``monai-gen export --weights-dtype float16``: the shipped files halve, the configs still load them into float32
networks, and the network computes what the float32 weights rounded to float16 compute."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from monai_gen.bundle.registry import bundle_component
from monai_gen.bundle.runs import export_bundle
from monai_gen.metrics.image_features import ImageFeatureExtractor

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "ecg_generative_diffusion"


def _run_models(bundle: Path, tmp_path: Path) -> Path:
    """A training run's ``models/`` as export reads it: the bundle's shipped files without its TorchScript."""
    run_models = tmp_path / "run" / "models"
    run_models.mkdir(parents=True)
    for path in (bundle / "models").iterdir():
        if path.name != "model.pt":
            run_models.joinpath(path.name).write_bytes(path.read_bytes())
    return run_models


def test_half_weights_export_loads_into_the_float32_network(tmp_path):
    run_models = _run_models(BUNDLE, tmp_path)
    exported = export_bundle(BUNDLE, run_models, tmp_path / "half", version="9.9.9", weights_dtype="float16")
    full, half = BUNDLE / "models" / "model.safetensors", exported / "models" / "model.safetensors"
    assert half.stat().st_size < 0.55 * full.stat().st_size
    assert half.stat().st_mode & 0o777 == (exported / "models" / "conditions.json").stat().st_mode & 0o777
    with safe_open(str(half), "pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} <= {torch.float16, torch.int64}
    network = bundle_component(exported, "network")
    reference = bundle_component(BUNDLE, "network")
    for (name, ours), (_, theirs) in zip(network.state_dict().items(), reference.state_dict().items(), strict=True):
        assert ours.dtype == theirs.dtype, name  # float32 networks, as configured
        torch.testing.assert_close(ours, theirs.half().to(theirs.dtype), rtol=0, atol=0, msg=name)
    assert torch.load(exported / "models" / "model.pt", weights_only=True).keys() == network.state_dict().keys()
    with pytest.raises(ValueError, match="weights_dtype must be one of"):
        export_bundle(BUNDLE, run_models, tmp_path / "bad", version="9.9.9", weights_dtype="int8")


def test_half_weights_export_keeps_a_files_header_metadata(tmp_path):
    """A feature extractor's safetensors header (format, architecture) survives the cast: the shipped file still loads."""
    brain = BUNDLE.parent / "brain_mri_generative_diffusion"
    run_models = _run_models(brain, tmp_path)
    exported = export_bundle(brain, run_models, tmp_path / "half", version="9.9.9", weights_dtype="float16")
    with safe_open(str(brain / "models" / "feature_extractor.safetensors"), "pt") as source:
        with safe_open(str(exported / "models" / "feature_extractor.safetensors"), "pt") as half:
            assert half.metadata() == source.metadata() and source.metadata()
    extractor = ImageFeatureExtractor.load(exported / "models" / "feature_extractor.safetensors")
    assert all(p.dtype == torch.float32 for p in extractor.network.parameters())  # loaded back into float32
