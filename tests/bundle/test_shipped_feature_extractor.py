"""Each image bundle's evaluation reads the feature extractor it ships (``models/feature_extractor.safetensors``) and
writes any retrained one to its output folder, never into the bundle (the 2.5D / image Fréchet figures of its
README were measured with the shipped one)."""
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from monai_gen.metrics.image_features import ImageFeatureExtractor

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


@pytest.mark.parametrize("name", ["brain_mri_generative_diffusion", "cardiac_mri_generative_diffusion",
                                  "ct_generative_diffusion"])
def test_evaluation_reuses_the_shipped_extractor_and_writes_outside_the_bundle(name, tmp_path):
    root = BUNDLES / name
    parser = ConfigParser()
    parser.read_config([str(root / "configs" / "common.json"), str(root / "configs" / "evaluate.json")])
    parser.read_meta(str(root / "configs" / "metadata.json"))
    parser["bundle_root"], parser["output_dir"] = str(root), str(tmp_path)
    shipped = root / "models" / "feature_extractor.safetensors"
    assert [Path(p).resolve() for p in parser.get_parsed_content("feature_extractor#reuse")] == [shipped.resolve()]
    assert Path(parser.get_parsed_content("feature_extractor#path")).parent == tmp_path
    assert ImageFeatureExtractor.load(shipped).fingerprint  # a shipped extractor carries what it was trained on
