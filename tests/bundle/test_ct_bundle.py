"""The CT bundle (issue 15) with its shipped weights, as a user runs it: ``monai-gen generate ct_generative_diffusion``
writes a CT in HU (NIfTI with its 3 mm RAS affine, a synthetic CT DICOM series that reads back to the same integer HU,
three-view previews), a CT for a given segmentation that lies on it and follows its organs, and a bigger volume on
request. Its configs' training stages are exercised at 16^3 by ``tests/tutorials`` (tutorial 3, a user's folder)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.affines import apply_affine

from monai_gen.data.dicom_series import LoadDICOMSeries

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "ct_generative_diffusion"
FAST = ["--steps", "10", "--override", "progress=false"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def abdomen(shared_data):
    folder = shared_data / "ct" / "totalsegmentator"
    if not (folder / "example_seg.nii.gz").is_file():
        pytest.skip(f"{folder} is absent")
    return folder


def _generate(run_cli, out: Path, *options: str) -> nib.Nifti1Image:
    code, text = run_cli(["generate", str(BUNDLE), "--output-dir", str(out), *options, *FAST])
    assert code == 0, text
    return nib.load(out / "ct_0.nii.gz")


def test_generate_writes_a_ct_in_hu_as_nifti_dicom_and_previews(run_cli, tmp_path, tree_digest):
    before = tree_digest(BUNDLE)
    image = _generate(run_cli, tmp_path, "--craniocaudal-position", "0.5", "--num-samples", "1", "--previews")
    assert image.shape == (48, 48, 48) and image.header.get_zooms() == (3.0, 3.0, 3.0)
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert image.header["descrip"].item() == b"SYNTHETIC craniocaudal_position=0.5"
    hu = image.get_fdata()
    assert -1000 <= hu.min() and hu.max() <= 1000  # inside the HU window
    assert (hu > -200).mean() > 0.2 and np.percentile(hu, 90) > 0  # body tissue, not a volume of air
    series = sorted((tmp_path / "ct_0_dicom").glob("*.dcm"))
    first = pydicom.dcmread(series[0])
    assert len(series) == 48 and first.Modality == "CT" and first.SeriesDescription == "SYNTHETIC CT"
    np.testing.assert_array_equal(LoadDICOMSeries()(tmp_path / "ct_0_dicom")[0].numpy(), np.round(hu))
    assert all((tmp_path / f"ct_0_{plane}.png").stat().st_size > 5_000 for plane in ("axial", "coronal", "sagittal"))
    assert (tmp_path / "contact_sheet.png").is_file()
    sidecar = json.loads((tmp_path / "ct_0.json").read_text())
    assert sidecar["synthetic"] is True and sidecar["conditions"] == {"craniocaudal_position": 0.5}
    assert tree_digest(BUNDLE) == before  # nothing written into the bundle


def test_a_ct_for_a_segmentation_lies_on_it_and_follows_its_organs(run_cli, tmp_path, abdomen):
    """The abdomen's own label map (a training subject's: this checks that the map is followed, not generalisation;
    held-out figures are in the bundle's README): lung dark, bone bright, liver soft tissue, where the map says."""
    segmentation = abdomen / "example_seg.nii.gz"
    image = _generate(run_cli, tmp_path / "for_seg", "--label-map", str(segmentation), "--num-samples", "1")
    plain = _generate(run_cli, tmp_path / "plain", "--num-samples", "1").get_fdata().reshape(-1)
    hu = image.get_fdata().reshape(-1)
    labels = nib.load(segmentation)
    centres = [apply_affine(img.affine, (np.array(img.shape) - 1) / 2) for img in (labels, image)]
    assert np.abs(centres[0] - centres[1]).max() <= 3.0  # on the segmentation, to a voxel

    grid = np.stack(np.meshgrid(*[np.arange(n) for n in image.shape], indexing="ij"), -1).reshape(-1, 3)
    voxels = np.round(apply_affine(np.linalg.inv(labels.affine) @ image.affine, grid)).astype(int)  # nearest
    inside = np.all((voxels >= 0) & (voxels < labels.shape), axis=1)
    organ = np.full(len(grid), -1)
    organ[inside] = np.asarray(labels.dataobj)[tuple(voxels[inside].T)]
    real = nib.load(abdomen / "example_ct_sm.nii.gz").get_fdata()[tuple(voxels[inside].T)]
    median = {name: np.median(hu[np.isin(organ, values)]) for name, values in
              {"liver": [5], "lung": [10, 11, 12, 13, 14], "bone": list(range(25, 51)) + list(range(92, 116))}.items()}
    assert -50 < median["liver"] < 200 and median["lung"] < -600 and median["bone"] > median["liver"] + 30
    follows, ignores = np.corrcoef(hu[inside], real)[0, 1], np.corrcoef(plain[inside], real)[0, 1]
    assert follows > 0.4 and follows > ignores + 0.3  # the voxels follow the CT the map was drawn on; without it not
    sidecar = json.loads((tmp_path / "for_seg" / "ct_0.json").read_text())
    assert sidecar["label_map_sha256"] == hashlib.sha256(segmentation.read_bytes()).hexdigest()
    assert str(segmentation.name) not in json.dumps(sidecar)  # the map by its content, not its (identifying) path


def test_a_bigger_volume_on_request(run_cli, tmp_path):
    image = _generate(run_cli, tmp_path, "--volume-size", "64", "64", "96", "--num-samples", "1")
    assert image.shape == (64, 64, 96) and np.isfinite(image.get_fdata()).all()
    code, text = run_cli(["generate", str(BUNDLE), "--volume-size", "50", "64", "64", "--output-dir", str(tmp_path / "x")])
    assert code == 2 and "divisible by the compression factor 4" in text and "Traceback" not in text
