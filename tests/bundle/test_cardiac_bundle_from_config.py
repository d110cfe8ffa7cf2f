"""A tiny cardiac cine latent-diffusion bundle from configuration alone (issue 14): ACDC cines -> frames with their
phase, both stages trained for one epoch, frames and a synthetic cine generated (NIfTI, GIF and one MR DICOM series with
the cine's timing), the suite plus the cine contraction check evaluated. Writes only under ``tmp_path``."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from monai_gen.bundle.registry import run_bundle_workflow, training_stages
from monai_gen.engines.generation import read_manifest

BUNDLE = Path(__file__).resolve().parent / "tiny_cardiac_bundle"
pytestmark = pytest.mark.slow


def test_tiny_cardiac_bundle_trains_generates_a_cine_and_evaluates_from_config(tmp_path, tree_digest):
    before = tree_digest(BUNDLE)
    train_dir = tmp_path / "train"
    data = {"patients": ["patient001", "patient002", "patient041", "patient061", "patient062"], "slice_indices": [3],
            "image_size": [32, 32], "test_fraction": 0.4, "batch_size": 8}
    stages = training_stages(BUNDLE)
    stage_1 = run_bundle_workflow(BUNDLE, stages[0], {**data, "output_dir": str(train_dir), "max_epochs": 1})
    cohort = stage_1.parser.get_parsed_content("cohort")
    # patient041 lost its voxel spacing: left out, never resampled with an invented one
    assert sorted({r["subject_id"] for r in cohort.rows}) == ["patient001", "patient002", "patient061", "patient062"]
    assert cohort.items.shape[1:] == (1, 32, 32) and len(cohort) == 120  # one slice x 30 frames each
    assert sum(r["is_es"] for r in cohort.rows) == 4 and {r["group"] for r in cohort.rows} == {"DCM", "NOR"}
    run_bundle_workflow(BUNDLE, stages[1], {**data, "output_dir": str(train_dir), "max_epochs": 1})
    models = train_dir / "models"
    conditions = json.loads((models / "conditions.json").read_text())["conditions"]
    assert [c["kind"] for c in conditions] == ["categorical", "continuous", "periodic", "continuous"]

    out = tmp_path / "cine"
    run_bundle_workflow(BUNDLE, "inference", {
        **data, "models_dir": str(models), "output_dir": str(out), "num_inference_steps": 2, "cine": True,
        "cine_frames": 6, "group": "DCM", "bmi": 27.5, "progress": False, "write_dicom": True,
    })
    rows = read_manifest(out / "manifest.csv")
    assert [float(r["phase"]) for r in rows] == pytest.approx([t / 6 for t in range(6)]) and {r["seed"] for r in rows} == {"0"}
    cine = nib.load(out / "cine.nii.gz")
    assert cine.shape == (32, 32, 1, 6) and cine.header.get_zooms() == pytest.approx((1.5, 1.5, 10.0, 1000 / 6))
    assert cine.header["descrip"].item() == b"SYNTHETIC cine=6 group=DCM bmi=27.5"
    gif = Image.open(out / "cine.gif")  # PIL merges identical frames (an untrained model's), adding their durations
    durations = []
    for k in range(gif.n_frames):
        gif.seek(k)
        durations.append(gif.info["duration"])
    assert sum(durations) == pytest.approx(6 * round(1000 / 6), abs=6) and (out / "cine_contraction.png").is_file()
    _assert_cine_dicom(out, cine, rows, patients=data["patients"])

    report_dir = tmp_path / "evaluation"
    run_bundle_workflow(BUNDLE, "evaluate", {
        **data, "models_dir": str(models), "output_dir": str(report_dir), "num_inference_steps": 2,
        "probe_components": 4, "pca_components": 4, "diversity_pairs": 4, "feature_epochs": 1, "cine_seeds": 1,
        "cine_frames": 6,
    })
    report = json.loads((report_dir / "evaluation.json").read_text())
    probes = report["probe_fidelity"]["conditions"]
    assert probes["phase"]["real"]["metric"] == "circular_r" and probes["group"]["real"]["metric"] == "auroc_ovr"
    contraction = report["cine_contraction"]["groups"]
    assert set(contraction) <= {"DCM", "NOR"} and contraction
    assert all(np.isfinite(g["real"]["median"]) for g in contraction.values())
    assert "## Cine contraction" in (report_dir / "evaluation.md").read_text()
    assert tree_digest(BUNDLE) == before


def _assert_cine_dicom(out, cine, rows, *, patients):
    """``write_dicom``: every frame its own one-slice series, and the cine one MR series ``cine_dicom/`` of the frames
    in phase order with the cine's timing, the frames' geometry and voxels, and nothing of the training patients."""
    import pydicom
    from monai.transforms import LoadImage

    files = sorted((out / "cine_dicom").iterdir())
    instances = [pydicom.dcmread(f) for f in files]
    frame_dicom = pydicom.dcmread(out / f"{rows[0]['name']}_dicom" / "slice_0001.dcm")
    assert [(ds.InstanceNumber, ds.TemporalPositionIdentifier) for ds in instances] == [(k, k) for k in range(1, 7)]
    assert [float(ds.TriggerTime) for ds in instances] == pytest.approx([k * 1000 / 6 for k in range(6)])
    for ds in instances:
        assert ds.NominalInterval == 1000 and ds.CardiacNumberOfImages == ds.NumberOfTemporalPositions == 6
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and ds.SeriesInstanceUID == instances[0].SeriesInstanceUID
        assert ds.SeriesDescription == "SYNTHETIC cine MRI short-axis" and str(ds.PatientName) == "SYNTHETIC^DATA"
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness"):
            assert ds[tag].value == frame_dicom[tag].value, tag  # 1.5 / 10 mm: exact in the NIfTI header too
    voxels = np.asarray(cine.dataobj, dtype=np.float64)[:, :, 0]  # (x, y, t)
    loaded = LoadImage(reader="PydicomReader", image_only=True)(str(out / "cine_dicom"))
    np.testing.assert_allclose(loaded.numpy(), voxels, atol=np.ptp(voxels) / 131070 + 1e-6)
    record = json.loads((out / "cine_dicom.json").read_text())
    assert record["conditions"] == {"group": "DCM", "bmi": 27.5} and record["synthetic"] is True
    for path in [*files, out / "cine_dicom.json"]:
        leaked = [p for p in patients if p.encode() in path.read_bytes()]
        assert not leaked, f"{path.name} names training patients {leaked}"
