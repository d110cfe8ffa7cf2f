"""ExplorerSession over the shipped brain MRI bundle: an image view with an intensity window, the bundle's feature
extractor as the measurement, the bundle's sweep strip and its NIfTI / DICOM / PNG writers for export."""

from __future__ import annotations

import io
import json

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from monai_gen.explore.controls import parse_request

pytestmark = pytest.mark.slow  # loads the brain bundle's autoencoder, denoiser and feature extractor (about 10 s)


@pytest.fixture(scope="module")
def brain():
    from monai_gen.explore.session import ExplorerSession

    return ExplorerSession("brain_mri_generative_diffusion", device="cpu")


def test_controls_and_probe_estimates(brain):
    controls = brain.controls()
    assert controls["view"]["kind"] == "image" and controls["view"]["window"] == [0.0, 1.0]
    by_name = {c["name"]: c for c in controls["conditions"]}
    assert by_name["slice_position"]["step"] == 0.01 and by_name["sequence"]["trained_categories"] == []
    request = parse_request({"conditions": {"slice_position": 0.6, "age": 70, "sex": "F"}, "seed": 0}, brain.conditions)
    explored = brain.generate(request)
    assert tuple(explored.sample.shape) == (1, 96, 120)
    assert set(explored.measured) == set(controls["view"]["measures"]) == {"age", "sex", "slice_position"}
    # the shipped extractor reads slice position well (bundle README: probe R 0.91 on held-out slices)
    assert explored.measured["slice_position"] == pytest.approx(0.6, abs=0.15)


def test_window_changes_the_drawing_not_the_sample(brain):
    explored = brain.generate(parse_request({"conditions": {"slice_position": 0.5}, "seed": 1}, brain.conditions))
    full = np.asarray(Image.open(io.BytesIO(brain.view.figure(explored.sample))))
    narrow = np.asarray(Image.open(io.BytesIO(brain.view.figure(explored.sample, window=(0.2, 0.6)))))
    assert full.shape == narrow.shape == (120, 96)  # the writer's orientation: anterior up
    assert (narrow == 255).mean() > (full == 255).mean()  # a lower white point saturates more of the brain


def test_sweep_and_export(brain, tmp_path):
    request = parse_request({"conditions": {"age": 40}, "seed": 2}, brain.conditions)
    strip = Image.open(io.BytesIO(brain.sweep(request, "slice_position", start=0.3, stop=0.7, num_values=3)))
    assert strip.height > 1.5 * strip.width  # three rows of one seed column
    explored = brain.generate(request)
    files = brain.export(explored.sample_id, tmp_path)
    names = {f.name for f in files}
    stem = f"brain_mri_generative_diffusion_{explored.sample_id}"
    assert {f"{stem}.nii.gz", f"{stem}.png", f"{stem}.json", f"{stem}_dicom.json"} <= names
    dicom = pydicom.dcmread(next(f for f in files if f.suffix == ".dcm"))
    assert dicom.Modality == "MR" and "DERIVED" in dicom.ImageType  # a synthetic series, marked as such
    written = np.asarray(nib.load(tmp_path / f"{stem}.nii.gz").dataobj, dtype=np.float32)
    np.testing.assert_allclose(written.reshape(96, 120), explored.sample[0].numpy(), atol=1e-6)
    sidecar = json.loads((tmp_path / f"{stem}.json").read_text(encoding="utf-8"))
    assert sidecar["synthetic"] is True and sidecar["conditions"] == {"age": 40.0} and sidecar["seed"] == 2
