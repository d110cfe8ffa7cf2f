"""The explorer over a 3D CT bundle (the tiny test bundle, trained for one epoch per stage under tmp): three orthogonal
planes with HU presets, a slice through any plane, the bundle's NIfTI / DICOM / preview export, bad planes answered."""

from __future__ import annotations

import base64
import io

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from .conftest import call

pytestmark = pytest.mark.slow  # trains the tiny CT bundle once (about 10 s), then loads it in the package's server


def _image(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("L"))


def test_controls_offer_the_planes_and_hu_presets(explorer, tiny_ct_bundle):
    _, url = explorer
    status, controls = call(url + f"api/controls?bundle={tiny_ct_bundle}")
    assert status == 200, controls
    view = controls["view"]
    assert view["kind"] == "ct" and view["planes"] == ["axial", "coronal", "sagittal"] and view["unit"] == "HU"
    assert view["presets"]["lung"] == [-600.0, 1500.0] and view["window"] == [-160.0, 240.0]
    assert controls["cine"] is None and [c["name"] for c in controls["conditions"]] == ["craniocaudal_position"]


def test_sample_shows_three_planes_and_any_slice_redraws(explorer, tiny_ct_bundle):
    _, url = explorer
    status, shown = call(url + "api/sample", {"bundle": str(tiny_ct_bundle), "seed": 3, "steps": 5,
                                              "conditions": {"craniocaudal_position": 0.5}})
    assert status == 200, shown
    assert list(shown["figures"]) == ["axial", "coronal", "sagittal"]
    assert shown["plane_sizes"] == {"axial": 16, "coronal": 16, "sagittal": 16}  # a 16^3 patch at 4 mm
    planes = {name: _image(figure) for name, figure in shown["figures"].items()}
    assert len({p.tobytes() for p in planes.values()}) == 3  # three different cuts of one volume
    query = f"api/figure?bundle={tiny_ct_bundle}&id={shown['sample_id']}"
    status, central = call(url + query + "&plane=coronal&index=8&low=-160&high=240")
    assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(central)).convert("L")), planes["coronal"])
    status, edge = call(url + query + "&plane=coronal&index=1&low=-160&high=240")
    assert status == 200 and edge != central
    _, lung = call(url + query + "&plane=coronal&index=8&low=-1350&high=150")
    assert lung != central
    for bad, message in [("&plane=oblique", "this bundle's view has the planes axial, coronal, sagittal"),
                         ("&plane=axial&index=16", "axial slice index 16 is outside the volume's 0..15"),
                         ("&index=3", "a slice index needs its plane")]:
        status, answer = call(url + query + bad)
        assert status == 400 and message in answer["error"], answer


def test_export_is_the_bundle_ct_with_its_series_and_previews(explorer, tiny_ct_bundle, tmp_path):
    from monai_gen.bundle.registry import run_bundle_workflow

    _, url = explorer
    body = {"bundle": str(tiny_ct_bundle), "seed": 4, "steps": 4, "conditions": {"craniocaudal_position": 0.3}}
    _, shown = call(url + "api/sample", body)
    status, exported = call(url + "api/export", {"bundle": str(tiny_ct_bundle), "sample_id": shown["sample_id"]})
    assert status == 200, exported
    names = {f.rsplit("/", 1)[-1] for f in exported["files"]}
    stem = f"tiny_ct_bundle_{shown['sample_id']}"
    assert {f"{stem}.nii.gz", f"{stem}.json", f"{stem}_axial.png", f"{stem}_coronal.png", f"{stem}_sagittal.png"} <= names
    assert sum(n.endswith(".dcm") for n in names) == 16  # one CT DICOM instance per axial slice
    ours = nib.load(next(f for f in exported["files"] if f.endswith(".nii.gz")))
    run_bundle_workflow(tiny_ct_bundle, "inference", {"output_dir": str(tmp_path), "seed": 4, "num_inference_steps": 4,
                                                      "craniocaudal_position": 0.3, "progress": False})
    theirs = nib.load(tmp_path / "ct_0.nii.gz")  # monai-gen generate's CT for the same seed and request
    np.testing.assert_array_equal(ours.get_fdata(), theirs.get_fdata())
    assert nib.aff2axcodes(ours.affine) == ("R", "A", "S") and ours.header.get_zooms() == (4.0, 4.0, 4.0)
