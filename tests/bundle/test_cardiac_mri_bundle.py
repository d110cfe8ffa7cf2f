"""The cardiac MRI bundle (issue 14): its own configs train one short epoch of each stage on real ACDC cines, generate
and evaluate (sweeps and the cine contraction check included); its shipped weights generate short-axis frames with the
requested conditions, a coherent synthetic cine from ``monai-gen generate --cine``, and a BMI sweep."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_gen.bundle.registry import list_bundles, run_bundle_workflow
from monai_gen.engines.generation import read_manifest

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "cardiac_mri_generative_diffusion"
SIZE = (96, 96)
pytestmark = pytest.mark.slow


def test_bundle_configs_train_each_stage_split_one_patient_per_group_generate_and_evaluate(tmp_path, tree_digest):
    before = tree_digest(BUNDLE)
    run = tmp_path / "run"
    data = {"patients": ["patient001", "patient002", "patient041", "patient061", "patient062"], "slice_indices": [2, 4],
            "image_size": [32, 32], "batch_size": 8, "feature_epochs": 1}
    stage_1 = run_bundle_workflow(BUNDLE, "train_autoencoder", {**data, "output_dir": str(run), "max_epochs": 1})
    cohorts = stage_1.parser.get_parsed_content("cohorts")
    # patient041 recorded no voxel spacing: left out; of each group's two patients one trains, one is held out
    assert sorted(cohorts.train.subjects() + cohorts.test.subjects()) == [
        "patient001", "patient002", "patient061", "patient062"]
    assert sorted({r["group"] for r in cohorts.test.rows}) == ["DCM", "NOR"] and len(cohorts.test.subjects()) == 2
    assert sorted({r["group"] for r in cohorts.train.rows}) == ["DCM", "NOR"] and len(cohorts.train) == 120
    run_bundle_workflow(BUNDLE, "train_diffusion", {**data, "output_dir": str(run), "max_epochs": 1})
    models = run / "models"
    assert all((models / name).is_file() for name in ("autoencoder.safetensors", "latent_scaler.safetensors",
                                                      "model.safetensors", "conditions.json",
                                                      "feature_extractor.safetensors"))

    report_dir = tmp_path / "evaluation"
    run_bundle_workflow(BUNDLE, "evaluate", {
        **data, "models_dir": str(models), "output_dir": str(report_dir), "num_inference_steps": 2,
        "max_samples": 8, "probe_components": 4, "pca_components": 4, "diversity_pairs": 4, "cine_seeds": 1,
        "cine_frames": 6, "sweep_seeds": 2,
    })
    report = json.loads((report_dir / "evaluation.json").read_text())
    assert report["test_subjects"] == 2 and report["n_synthetic"] == 8
    probes = report["probe_fidelity"]["conditions"]
    assert probes["phase"]["real"]["metric"] == "circular_r" and probes["group"]["real"]["metric"] == "auroc_ovr"
    sweeps = report["probe_sweep_fidelity"]["conditions"]
    assert set(sweeps) == {"bmi", "slice_position"} and len(sweeps["bmi"]["per_value"]) == 5
    groups = report["category_sweep_fidelity"]["conditions"]["group"]
    assert groups["categories"] == ["NOR", "DCM"] and groups["untrained"] == ["HCM", "MINF", "RV"]
    assert set(report["cine_contraction"]["groups"]) == {"DCM", "NOR"}
    assert tree_digest(BUNDLE) == before  # nothing written into the bundle


def _centre_minus_border(frame: np.ndarray) -> float:
    """Mean intensity of the central 32 x 32 pixels (the heart of a short-axis crop) minus that of the 8-pixel border."""
    border = np.concatenate([frame[:8].ravel(), frame[-8:].ravel(), frame[8:-8, :8].ravel(), frame[8:-8, -8:].ravel()])
    return float(frame[32:64, 32:64].mean() - border.mean())


@pytest.fixture(scope="module")
def shipped_frames(tmp_path_factory):
    if not (BUNDLE / "models" / "model.safetensors").is_file():
        pytest.fail(f"{BUNDLE} ships no weights (models/model.safetensors)")
    out = tmp_path_factory.mktemp("cardiac_shipped") / "generated"
    run_bundle_workflow(BUNDLE, "inference", {
        "output_dir": str(out), "num_samples": 3, "num_inference_steps": 10, "group": "DCM", "bmi": 27.0,
        "phase": 0.0, "slice_position": 0.5, "progress": False,
    })
    return out


def test_shipped_weights_generate_finite_short_axis_frames_with_the_requested_conditions(shipped_frames):
    rows = read_manifest(shipped_frames / "manifest.csv")
    assert [(r["group"], r["bmi"], r["phase"], r["slice_position"], r["seed"]) for r in rows] == [
        ("DCM", "27.0", "0.0", "0.5", str(seed)) for seed in range(3)]
    frames = []
    for i in range(3):
        image = nib.load(shipped_frames / f"frame_{i}.nii.gz")
        assert image.shape == (*SIZE, 1) and image.header.get_zooms() == pytest.approx((1.5, 1.5, 10.0))
        assert image.header["descrip"].item() == b"SYNTHETIC group=DCM bmi=27 phase=0 slice_position=0.5"
        sidecar = json.loads((shipped_frames / f"frame_{i}.json").read_text())
        assert sidecar["model_id"].startswith("cardiac_mri_generative_diffusion-") and sidecar["synthetic"] is True
        assert sidecar["conditions"] == {"group": "DCM", "bmi": 27.0, "phase": 0.0, "slice_position": 0.5}
        data = image.get_fdata()[..., 0]
        assert np.isfinite(data).all() and -0.25 < data.min() and data.max() < 1.25  # decoded, not clipped
        frames.append(data)
    # a heart-centred crop as in the ACDC training frames (bright blood pool and myocardium in the middle, darker
    # lung and background at the border), not noise or a blank
    assert all(_centre_minus_border(f) > 0.1 for f in frames), [_centre_minus_border(f) for f in frames]
    assert not np.allclose(frames[0], frames[1])  # seeds differ


def test_cine_from_the_cli_is_one_coherent_loop_with_its_frame_time(run_cli, tmp_path):
    out = tmp_path / "cine"
    code, text = run_cli(["generate", "cardiac_mri_generative_diffusion", "--group", "DCM", "--bmi", "31", "--cine",
                          "--cine-frames", "8", "--steps", "10", "--output-dir", str(out), "--override", "progress=false"])
    assert code == 0, text
    rows = read_manifest(out / "manifest.csv")
    assert [float(r["phase"]) for r in rows] == pytest.approx([t / 8 for t in range(8)])
    assert {(r["group"], r["bmi"], r["seed"]) for r in rows} == {("DCM", "31.0", "0")}
    cine = nib.load(out / "cine.nii.gz")
    assert cine.shape == (*SIZE, 1, 8) and cine.header.get_zooms() == pytest.approx((1.5, 1.5, 10.0, 125.0))
    assert cine.header["descrip"].item().startswith(b"SYNTHETIC cine=8 group=DCM bmi=31")
    assert (out / "cine.gif").is_file() and (out / "cine_contraction.png").is_file()
    loop = cine.get_fdata()[:, :, 0]  # (x, y, t)
    step = [np.abs(loop[..., t] - loop[..., (t + 1) % 8]).mean() for t in range(8)]  # includes the end meeting the start

    other = tmp_path / "other_seed"
    code, text = run_cli(["generate", "cardiac_mri_generative_diffusion", "--group", "DCM", "--bmi", "31", "--phase",
                          "0", "--seed", "5", "--num-samples", "1", "--steps", "10", "--output-dir", str(other),
                          "--override", "progress=false"])
    assert code == 0, text
    unrelated = np.abs(loop[..., 0] - nib.load(other / "frame_0.nii.gz").get_fdata()[..., 0]).mean()
    # one subject moving through its cycle: each frame is much nearer the next than another seed's frame is
    assert max(step) < 0.5 * unrelated, (step, unrelated)


def test_bmi_sweep_draws_its_strip(run_cli, tmp_path):
    out = tmp_path / "sweep"
    code, text = run_cli(["sweep", "cardiac_mri_generative_diffusion", "--phenotype", "bmi", "--start", "20", "--stop",
                          "35", "--num-values", "2", "--num-seeds", "2", "--group", "NOR", "--phase", "0",
                          "--slice-position", "0.5", "--steps", "5", "--output-dir", str(out),
                          "--override", "progress=false"])
    assert code == 0, text
    rows = read_manifest(out / "manifest.csv")
    assert [(r["bmi"], r["seed"]) for r in rows] == [("20.0", "0"), ("20.0", "1"), ("35.0", "0"), ("35.0", "1")]
    assert (out / "sweep_bmi.png").is_file()


def test_monai_gen_lists_the_bundle_with_its_conditions_and_non_commercial_licence():
    info = {b.name: b for b in list_bundles()}["cardiac_mri_generative_diffusion"]
    assert info.conditions.names == ["group", "bmi", "phase", "slice_position"]
    assert [s.kind for s in info.conditions.specs] == ["categorical", "continuous", "periodic", "continuous"]
    metadata = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert "CC BY-NC-SA 4.0" in metadata["data_source"] and "Non-commercial" in metadata["intended_use"]
    assert "CC BY-NC-SA 4.0" in (BUNDLE / "LICENSE").read_text()
