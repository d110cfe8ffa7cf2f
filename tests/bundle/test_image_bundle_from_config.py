"""A second, tiny 2D latent-diffusion image bundle built from configuration alone (issue 11, "Done when").

``tests/bundle/tiny_brain_bundle/configs`` holds JSON only: IXI T1 slices prepared by a MONAI ``Compose`` of dictionary
transforms, the generic cohort, a KL autoencoder with a patch discriminator, latent diffusion on cached latents,
generation writing NIfTI and a contact sheet through the library's writers, and the generic evaluation. Each workflow runs as MONAI
layers bundle configs (``--config_file "['configs/common.json', 'configs/<workflow>.json']"``), with overrides that keep
it to seconds, and writes only under ``tmp_path``; the bundle folder must be unchanged afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_gen.bundle.registry import run_bundle_workflow, training_stages, workflow_config_names
from monai_gen.engines.generation import read_manifest

BUNDLE = Path(__file__).resolve().parent / "tiny_brain_bundle"
pytestmark = pytest.mark.slow


def test_tiny_brain_bundle_trains_generates_and_evaluates_from_config(shared_data, tmp_path, tree_digest):
    dataset_dir = shared_data / "brain_mri" / "ixi_t1_2mm"
    if not (dataset_dir / "participants.csv").is_file():
        pytest.skip(f"{dataset_dir} is absent")
    before = tree_digest(BUNDLE)
    train_dir = tmp_path / "train"
    data = {
        "dataset_dir": str(dataset_dir), "max_subjects": 6, "slice_indices": [35, 45, 55], "image_size": [64, 64],
        "test_fraction": 0.3, "batch_size": 4,
    }
    stages = training_stages(BUNDLE)
    assert stages == ["train_autoencoder", "train_diffusion"]  # the bundle declares its two-stage training
    assert workflow_config_names(BUNDLE, stages[0]) == ["common", "train_autoencoder"]
    stage_1 = run_bundle_workflow(BUNDLE, stages[0], {**data, "output_dir": str(train_dir), "max_epochs": 1})
    trainer = stage_1.parser.get_parsed_content("training").trainer
    assert trainer.state.iteration == 3 and "discriminator_loss" in trainer.state.output  # 12 slices of 4 subjects
    models = train_dir / "models"
    assert (models / "autoencoder.safetensors").is_file()

    stage_2 = run_bundle_workflow(BUNDLE, stages[1], {**data, "output_dir": str(train_dir), "max_epochs": 1})
    assert stage_2.parser.get_parsed_content("training").trainer.state.iteration == 3
    for name in ("model.safetensors", "latent_scaler.safetensors", "conditions.json"):
        assert (models / name).is_file(), name
    assert (train_dir / "cache" / "latents" / "latents.safetensors").is_file()

    out = tmp_path / "generated"
    run_bundle_workflow(BUNDLE, "inference", {
        **data, "models_dir": str(models), "output_dir": str(out), "num_samples": 2, "num_inference_steps": 2,
        "age": 63.0, "sex": "F", "slice_position": 0.5, "progress": False,
    })
    rows = read_manifest(out / "manifest.csv")
    assert [r["name"] for r in rows] == ["slice_0", "slice_1"]
    image = nib.load(out / "slice_0.nii.gz")  # an axial slice of the 2 mm RAS volumes, 2 mm thick
    assert image.shape == (64, 64, 1) and image.header.get_zooms() == (2.0, 2.0, 2.0)
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert image.header["descrip"].item() == b"SYNTHETIC age=63 sex=F slice_position=0.5"
    sidecar = json.loads((out / "slice_0.json").read_text())
    assert sidecar["conditions"] == {"age": 63.0, "sex": "F", "slice_position": 0.5} and sidecar["synthetic"] is True
    assert sorted(p.name for p in out.glob("*.png")) == ["contact_sheet.png"]  # no PNG per sample unless asked

    report_dir = tmp_path / "evaluation"
    run_bundle_workflow(BUNDLE, "evaluate", {
        **data, "models_dir": str(models), "output_dir": str(report_dir), "num_inference_steps": 2,
        "probe_components": 4, "pca_components": 4, "diversity_pairs": 8, "feature_epochs": 2,
    })
    report = json.loads((report_dir / "evaluation.json").read_text())
    assert report["measures"] == ["probe_fidelity", "probe_fidelity_features", "realism", "distribution",
                                  "memorisation", "memorisation_features", "diversity", "autoencoder_reconstruction"]
    assert report["n_synthetic"] == report["n_test_items"] == 6 and report["test_subjects"] == 2
    for probes in ("probe_fidelity", "probe_fidelity_features"):
        assert set(report[probes]["conditions"]) == {"age", "slice_position", "sex"}
        assert np.isfinite(report[probes]["conditions"]["slice_position"]["real"]["value"])  # 3 positions
    assert np.isfinite(report["distribution"]["frechet_distance"]["synthetic_vs_test"])
    realism = report["realism"]
    assert "ResNet" in realism["feature_space"] and realism["n"] == {"synthetic": 6, "real_test": 6, "real_train": 6}
    for pair in ("synthetic_vs_test", "train_vs_test"):
        values = [realism[pair][k] for k in ("frechet_distance", "precision", "recall", "density", "coverage")]
        assert np.isfinite([*values, realism[pair]["kid"]["mean"], realism[pair]["kid"]["std"]]).all()
    assert 0 <= report["memorisation_features"]["fraction_closer_to_train"] <= 1
    assert report["memorisation_features"]["feature_space"] == realism["feature_space"]
    diversity = report["diversity"]  # pairs at one slice position, across the two test subjects
    assert diversity["same_conditions"] == ["slice_position"] and diversity["synthetic_pairs"]["pairs"] == 3
    assert np.isfinite([diversity["synthetic_pairs"]["mean"], diversity["real_test_pairs"]["mean"]]).all()
    reconstruction = report["autoencoder_reconstruction"]
    assert reconstruction["n"] == 6 and 0 < reconstruction["ms_ssim"]["mean"] < 1
    assert np.isfinite(reconstruction["psnr_db"]["mean"])
    assert (report_dir / "feature_extractor.safetensors").is_file()  # trained on the training slices, cached
    markdown = (report_dir / "evaluation.md").read_text()
    for title in ("## Realism on trained features", "## Diversity", "## Autoencoder reconstruction", ") — on features"):
        assert title in markdown, title

    assert tree_digest(BUNDLE) == before
