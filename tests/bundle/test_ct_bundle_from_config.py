"""A tiny 3D latent-diffusion CT bundle built from configuration alone (issue 15, the seam of the image bundles).

``tests/bundle/tiny_ct_bundle/configs`` holds JSON only: a user's folder of CTs (NIfTI files and a DICOM series folder)
with TotalSegmentator label maps beside them (``monai_gen.data.ct_records``), checked (HU, 3D, label map on the CT's
grid), resampled to 4 mm, clipped to the HU window and cut by MONAI's ``RandSpatialCropSamplesd`` into 16^3 patches
carrying their craniocaudal position; a 3D KL autoencoder, then a conditional latent denoiser whose input is the latent
concatenated with per-organ label fractions; generation writes NIfTI, a synthetic CT DICOM series and three previews
(and, given a label map, a CT for that segmentation); evaluation writes the image suite plus per-organ HU distributions.
Each workflow runs as MONAI layers bundle configs, one epoch each, and writes only under ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.affines import apply_affine
from safetensors import safe_open

from monai_gen.bundle.registry import run_bundle_workflow, training_stages
from monai_gen.data.dicom_series import LoadDICOMSeries

BUNDLE = Path(__file__).resolve().parent / "tiny_ct_bundle"
CT = "ct/totalsegmentator"
pytestmark = pytest.mark.slow


@pytest.fixture
def ct_folder(shared_data, tmp_path):
    """A user's cohort: three subjects' CTs (one a DICOM series), two with label maps, and an MR file by mistake."""
    source = shared_data / CT
    if not (source / "example_ct_dicom").is_dir():
        pytest.skip(f"{source} is absent")
    cts, labels = tmp_path / "cohort" / "ct", tmp_path / "cohort" / "labels"
    cts.mkdir(parents=True)
    labels.mkdir()
    for name, target in {"abdomen.nii.gz": "example_ct_sm.nii.gz", "thorax": "example_ct_dicom",
                         "aorta.nii.gz": "aorta_report/test_result/models/ct_cropped.nii.gz",
                         "pulmonary.nii.gz": "pulmonary_report/models/ct_cropped.nii.gz",
                         "mr.nii.gz": "example_mr_sm.nii.gz"}.items():
        (cts / name).symlink_to(source / target, target_is_directory=(source / target).is_dir())
    (labels / "abdomen_seg.nii.gz").symlink_to(source / "example_seg.nii.gz")
    (labels / "thorax_seg.nii.gz").symlink_to(source / "example_seg_dicom.nii.gz")
    return {"dataset_dir": str(cts), "label_dir": str(labels), "subjects": {"aorta": "crops", "pulmonary": "crops"}}


def _check_cohort(stage) -> None:
    cohorts = stage.parser.get_parsed_content("cohorts")
    assert cohorts.test.subjects() == ["abdomen"] and cohorts.train.subjects() == ["crops", "thorax"]  # seed 1
    assert len(cohorts.train) == 9 and tuple(cohorts.train.items.shape[1:]) == (1, 16, 16, 16)  # 3 CTs x 3 patches
    assert float(cohorts.train.items.min()) >= -1000 and float(cohorts.train.items.max()) <= 1000  # HU, windowed
    positions = [r["craniocaudal_position"] for r in cohorts.test.rows]
    assert all(0 <= p <= 1 for p in positions) and len(set(positions)) > 1
    labelled = {r["subject_id"]: r["organ_label_file"] is not None for r in cohorts.train.rows}
    assert labelled == {"thorax": True, "crops": False}


def _check_generated(out: Path) -> np.ndarray:
    image = nib.load(out / "ct_0.nii.gz")
    assert image.shape == (16, 16, 16) and image.header.get_zooms() == (4.0, 4.0, 4.0)
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert image.header["descrip"].item() == b"SYNTHETIC craniocaudal_position=0.5"
    volume = image.get_fdata()
    assert np.isfinite(volume).all() and volume.min() >= -1000 and volume.max() <= 1000  # HU inside the window
    series = sorted((out / "ct_0_dicom").glob("*.dcm"))
    first = pydicom.dcmread(series[0])
    assert len(series) == 16 and first.Modality == "CT" and first.SeriesDescription == "SYNTHETIC CT patch"
    assert float(first.RescaleSlope) == 1 and float(first.RescaleIntercept) == -1024 and first.RescaleType == "HU"
    back = LoadDICOMSeries()(out / "ct_0_dicom")  # integer HU on the NIfTI's grid
    np.testing.assert_array_equal(back[0].numpy(), np.round(volume))
    np.testing.assert_allclose(back.affine.numpy(), image.affine, atol=1e-5)
    assert all((out / f"ct_0_{plane}.png").is_file() for plane in ("axial", "coronal", "sagittal"))
    sidecar = json.loads((out / "ct_0.json").read_text())
    assert sidecar["synthetic"] is True and sidecar["conditions"] == {"craniocaudal_position": 0.5}
    return volume


def test_tiny_ct_bundle_trains_generates_and_evaluates_from_config(ct_folder, shared_data, tmp_path, tree_digest, caplog):
    before = tree_digest(BUNDLE)
    train_dir = tmp_path / "train"
    data = {**ct_folder, "batch_size": 2}
    assert training_stages(BUNDLE) == ["train_autoencoder", "train_diffusion"]
    with caplog.at_level(logging.WARNING):
        stage_1 = run_bundle_workflow(BUNDLE, "train_autoencoder", {**data, "output_dir": str(train_dir), "max_epochs": 1})
    assert "mr.nii.gz: ValueError:" in caplog.text and "are not Hounsfield units" in caplog.text  # skipped, named
    trainer = stage_1.parser.get_parsed_content("training").trainer
    assert trainer.state.iteration == 4 and "discriminator_loss" in trainer.state.output  # 9 patches, batches of 2
    _check_cohort(stage_1)

    stage_2 = run_bundle_workflow(BUNDLE, "train_diffusion", {**data, "output_dir": str(train_dir), "max_epochs": 1})
    assert stage_2.parser.get_parsed_content("training").trainer.state.iteration == 4
    models = train_dir / "models"
    for name in ("autoencoder.safetensors", "latent_scaler.safetensors", "model.safetensors", "conditions.json"):
        assert (models / name).is_file(), name
    with safe_open(str(train_dir / "cache" / "latents" / "latents.safetensors"), "pt") as cache:
        assert cache.get_tensor("image").shape == (9, 2, 4, 4, 4)
        assert cache.get_tensor("spatial_condition").shape == (9, 4, 4, 4, 4)  # liver, spleen, kidney, vertebra
        assert sorted(cache.get_tensor("spatial_condition_mask").tolist()) == [0.0] * 6 + [1.0] * 3  # thorax labelled

    out = tmp_path / "generated"
    request = {**data, "models_dir": str(models), "num_inference_steps": 2, "craniocaudal_position": 0.5, "progress": False,
               "per_sample_previews": True}
    run_bundle_workflow(BUNDLE, "inference", {**request, "output_dir": str(out)})
    plain = _check_generated(out)
    assert (out / "contact_sheet.png").stat().st_size > 2_000  # the job's sheet: central axial slices
    run_bundle_workflow(BUNDLE, "inference", {**request, "output_dir": str(tmp_path / "bigger"), "volume_size": [32, 16, 24]})
    assert nib.load(tmp_path / "bigger" / "ct_0.nii.gz").shape == (32, 16, 24)  # any multiple of the compression
    segmentation = str(shared_data / CT / "example_seg_dicom.nii.gz")  # a CT for this segmentation, same seed
    run_bundle_workflow(BUNDLE, "inference", {**request, "output_dir": str(tmp_path / "for_labels"), "label_map": segmentation})
    for_labels = _check_generated(tmp_path / "for_labels")
    assert np.abs(for_labels - plain).max() > 0.05  # the label map reached the denoiser (same seed: equal otherwise)
    sidecar = json.loads((tmp_path / "for_labels" / "ct_0.json").read_text())
    assert sidecar["label_map_sha256"] == hashlib.sha256(Path(segmentation).read_bytes()).hexdigest()
    seg, placed = nib.load(segmentation), nib.load(tmp_path / "for_labels" / "ct_0.nii.gz")
    centre = [apply_affine(img.affine, (np.array(img.shape) - 1) / 2) for img in (seg, placed)]
    assert np.abs(centre[0] - centre[1]).max() <= 4.0  # the CT lies on its segmentation, to a voxel at 4 mm
    assert np.abs(centre[0] - apply_affine(nib.load(out / "ct_0.nii.gz").affine, [7.5] * 3)).max() > 50  # plain: origin

    report_dir = tmp_path / "evaluation"
    run_bundle_workflow(BUNDLE, "evaluate", {
        **data, "models_dir": str(models), "output_dir": str(report_dir), "num_inference_steps": 2,
        "probe_components": 2, "pca_components": 2, "diversity_pairs": 4,
    })
    report = json.loads((report_dir / "evaluation.json").read_text())
    assert report["measures"] == ["probe_fidelity", "distribution", "memorisation", "diversity",
                                  "autoencoder_reconstruction", "organ_hu_histograms", "mask_adherence", "slice_frechet"]
    assert report["n_synthetic"] == report["n_test_items"] == 3 and report["test_subjects"] == 1
    assert np.isfinite(report["probe_fidelity"]["conditions"]["craniocaudal_position"]["real"]["value"])
    reconstruction = report["autoencoder_reconstruction"]
    assert reconstruction["unit"] == "HU" and 0 < reconstruction["mae"]["mean"] < 2000
    organs = report["organ_hu_histograms"]["organs"]
    assert "liver" in organs and organs["liver"]["wasserstein_hu"]["synthetic_vs_test"] >= 0
    assert organs["liver"]["n_voxels"]["synthetic"] == organs["liver"]["n_voxels"]["test"] > 0  # the test masks
    adherence = report["mask_adherence"]  # organ ranges from the training patches: the thorax's hold vertebrae only
    assert list(adherence["organs"]) == ["vertebra"] and adherence["not_scored"] == ["liver", "spleen", "kidney"]
    vertebra = adherence["organs"]["vertebra"]
    assert vertebra["n_voxels"]["train"] >= 10 and vertebra["n_voxels"]["synthetic"] == vertebra["n_voxels"]["test"]
    assert 0 <= vertebra["adherence"]["synthetic"] <= 1 and 0 < adherence["overall"]["test"] <= 1
    frechet = report["slice_frechet"]["frechet_distance"]
    assert set(frechet) == {"axial", "coronal", "sagittal", "mean"} and frechet["axial"]["n_slices"] == 3 * 8
    assert frechet["mean"]["synthetic_vs_test"] >= 0 and frechet["mean"]["train_vs_test"] > 0
    assert (report_dir / "slice_feature_extractor.safetensors").is_file()  # trained on the training patches' slices
    markdown = (report_dir / "evaluation.md").read_text()
    assert all(title in markdown for title in ("## Organ HU distributions", "## Mask adherence", "## 2.5D realism"))
    assert tree_digest(BUNDLE) == before  # nothing written into the bundle
