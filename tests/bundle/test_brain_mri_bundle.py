"""The brain MRI bundle (issue 13): its own configs train a few iterations of each stage on real IXI volumes, generate
and evaluate; and its shipped weights generate finite 2 mm axial slices with the requested conditions.

The smoke test runs the bundle's workflows as MONAI layers them (``run_bundle_workflow``: ``common.json`` under each
workflow config) with overrides that keep it to seconds, on a copy of the IXI participants table that adds the
``Sequence`` / ``Pathology`` columns a user's cohort (e.g. BraTS) would have, to check that those conditions are read
from the table without code and that an empty cell leaves its condition unset (the null token).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_gen.bundle.registry import list_bundles, run_bundle_workflow, training_stages
from monai_gen.engines.generation import read_manifest

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "brain_mri_generative_diffusion"
SHAPE = (96, 120)  # axial slices of the RAS volumes: 90 voxels left-right padded to 96, 120 anterior-posterior
pytestmark = pytest.mark.slow


@pytest.fixture
def cohort_with_sequence(ixi, tmp_path):
    """Six IXI subjects whose table also has Sequence (T1, written ``t1w``) and an empty Pathology column."""
    with (ixi / "participants.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if (ixi / "t1" / f"{r['MRID']}_T1.nii.gz").is_file()][:6]
    folder = tmp_path / "cohort"
    (folder / "t1").mkdir(parents=True)
    for row in rows:
        (folder / "t1" / f"{row['MRID']}_T1.nii.gz").symlink_to(ixi / "t1" / f"{row['MRID']}_T1.nii.gz")
    with (folder / "participants.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["MRID", "Age", "Sex", "Sequence", "Pathology"])
        writer.writeheader()
        writer.writerows({**row, "Sequence": "t1w", "Pathology": ""} for row in rows)
    return folder


def test_bundle_trains_each_stage_generates_and_evaluates_from_its_configs(cohort_with_sequence, tmp_path, tree_digest):
    before = tree_digest(BUNDLE)
    run = tmp_path / "run"
    data = {"dataset_dir": str(cohort_with_sequence), "slice_indices": [50, 70, 90], "test_fraction": 0.3,
            "batch_size": 4, "feature_epochs": 1}
    assert training_stages(BUNDLE) == ["train_autoencoder", "train_diffusion"]
    stage_1 = run_bundle_workflow(BUNDLE, "train_autoencoder", {**data, "output_dir": str(run), "max_epochs": 1})
    trainer = stage_1.parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == 3 and "discriminator_loss" in trainer.state.output  # 4 subjects x 3 slices

    stage_2 = run_bundle_workflow(BUNDLE, "train_diffusion", {**data, "output_dir": str(run), "max_epochs": 1})
    assert stage_2.parser.get_parsed_content("train#trainer").state.iteration == 3
    cohorts = stage_2.parser.get_parsed_content("cohorts")
    assert {r["sequence"] for r in cohorts.train.rows} == {"T1"}  # read from the table, alias canonicalised
    assert {r["pathology"] for r in cohorts.train.rows} == {None}  # empty cells: unset
    assert not {r["subject_id"] for r in cohorts.train.rows} & {r["subject_id"] for r in cohorts.test.rows}
    items = stage_2.parser.get_parsed_content("train_items")
    names = stage_2.parser.get_parsed_content("conditions").names
    assert names == ["age", "sex", "slice_position", "sequence", "pathology"]
    assert items[0]["condition_mask"].tolist() == [True, True, True, True, False]  # pathology: the null token
    models = run / "models"
    for name in ("autoencoder.safetensors", "latent_scaler.safetensors", "model.safetensors", "conditions.json",
                 "feature_extractor.safetensors"):
        assert (models / name).is_file(), name

    out = tmp_path / "generated"
    run_bundle_workflow(BUNDLE, "inference", {
        **data, "models_dir": str(models), "output_dir": str(out), "num_samples": 2, "num_inference_steps": 2,
        "age": 70.0, "sex": "F", "slice_position": 0.6, "sequence": "T1", "progress": False,
    })
    image = nib.load(out / "slice_0.nii.gz")
    assert image.shape == (*SHAPE, 1) and nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert json.loads((out / "slice_1.json").read_text())["conditions"] == {
        "age": 70.0, "sex": "F", "slice_position": 0.6, "sequence": "T1"}

    report_dir = tmp_path / "evaluation"
    run_bundle_workflow(BUNDLE, "evaluate", {
        **data, "models_dir": str(models), "output_dir": str(report_dir), "num_inference_steps": 2,
        "probe_components": 4, "pca_components": 4, "diversity_pairs": 8, "sweep_seeds": 2,
    })
    report = json.loads((report_dir / "evaluation.json").read_text())
    assert report["n_synthetic"] == report["n_test_items"] == 6 and report["test_subjects"] == 2
    assert set(report["probe_fidelity"]["conditions"]) == {"age", "slice_position", "sex"}
    sweeps = report["probe_sweep_fidelity"]["conditions"]  # counterfactual: one condition swept, the others unset
    assert set(sweeps) == {"age", "slice_position"} and sweeps["slice_position"]["values"][0] == 0.15
    assert report["category_sweep_fidelity"]["conditions"]["sex"]["categories"] == ["F", "M"]
    assert np.isfinite(report["realism"]["synthetic_vs_test"]["frechet_distance"])
    assert 0 < report["autoencoder_reconstruction"]["ms_ssim"]["mean"] < 1
    # the extractor the training run wrote was reused (same cohort and settings), not retrained
    assert (report_dir / "feature_extractor.safetensors").read_bytes() == (
        models / "feature_extractor.safetensors").read_bytes()
    assert tree_digest(BUNDLE) == before  # nothing written into the bundle


@pytest.fixture(scope="module")
def shipped(ixi, tmp_path_factory):
    if not (BUNDLE / "models" / "model.safetensors").is_file():
        pytest.fail(f"{BUNDLE} ships no weights (models/model.safetensors)")
    out = tmp_path_factory.mktemp("shipped") / "generated"
    run_bundle_workflow(BUNDLE, "inference", {
        "output_dir": str(out), "num_samples": 3, "num_inference_steps": 10, "age": 70.0, "sex": "F",
        "slice_position": 0.6, "progress": False,
    })
    return out


def test_shipped_weights_generate_finite_2mm_slices_with_the_requested_conditions(shipped):
    rows = read_manifest(shipped / "manifest.csv")
    assert [(r["age"], r["sex"], r["slice_position"], r["seed"]) for r in rows] == [
        ("70.0", "F", "0.6", str(seed)) for seed in range(3)]
    slices = []
    for i in range(3):
        image = nib.load(shipped / f"slice_{i}.nii.gz")
        assert image.shape == (*SHAPE, 1) and image.header.get_zooms() == (2.0, 2.0, 2.0)
        np.testing.assert_array_equal(image.affine, np.diag([2.0, 2.0, 2.0, 1.0]))
        assert image.header["descrip"].item() == b"SYNTHETIC age=70 sex=F slice_position=0.6"
        sidecar = json.loads((shipped / f"slice_{i}.json").read_text())
        assert sidecar["conditions"] == {"age": 70.0, "sex": "F", "slice_position": 0.6} and sidecar["seed"] == i
        assert sidecar["model_id"].startswith("brain_mri_generative_diffusion-") and sidecar["synthetic"] is True
        data = image.get_fdata()
        assert np.isfinite(data).all()
        slices.append(data)
    # a head, not noise or a blank: intensities in the [0, 1] range, the centre brighter than the corners
    for data in slices:
        assert -0.1 < data.min() and data.max() < 1.1
        centre, corner = data[28:68, 30:90].mean(), data[:12, :12].mean()
        assert centre > corner + 0.1, (centre, corner)
    assert not np.allclose(slices[0], slices[1])  # seeds differ
    assert sorted(p.name for p in shipped.glob("*.png")) == ["contact_sheet.png"]  # no PNG per sample unless asked


def test_monai_gen_lists_the_bundle_with_its_conditions():
    info = {b.name: b for b in list_bundles()}["brain_mri_generative_diffusion"]
    assert info.conditions.names == ["age", "sex", "slice_position", "sequence", "pathology"]
    assert info.version == json.loads((BUNDLE / "configs" / "metadata.json").read_text())["version"]
