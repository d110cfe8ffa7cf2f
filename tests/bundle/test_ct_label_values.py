"""The CT bundle with its shipped weights for a label map in another scheme: TotalSegmentator's per-class mask
``aorta.nii.gz`` (1 = aorta) of the held-out CTA crop, said in the bundle's ``total`` scheme with ``--label-values
1=52``. The generated volume puts soft tissue where the mask says aorta; read without the value map, the mask's 1 is the
scheme's spleen label and the model draws no vessel there."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import apply_affine

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "ct_generative_diffusion"
pytestmark = pytest.mark.slow


def _hu_inside_and_outside(out: Path, mask: nib.Nifti1Image) -> tuple[float, float]:
    """Median HU of the generated volume inside / outside the mask (nearest mask voxel of each generated voxel)."""
    image = nib.load(out / "ct_0.nii.gz")
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in image.shape], indexing="ij"), -1).reshape(-1, 3)
    voxels = np.round(apply_affine(np.linalg.inv(mask.affine) @ image.affine, grid)).astype(int)
    inside_grid = np.all((voxels >= 0) & (voxels < mask.shape), axis=1)
    in_mask = np.zeros(len(grid), bool)
    in_mask[inside_grid] = np.asarray(mask.dataobj)[tuple(voxels[inside_grid].T)] > 0
    hu = image.get_fdata().reshape(-1)
    return float(np.median(hu[in_mask])), float(np.median(hu[inside_grid & ~in_mask]))


def test_a_per_class_mask_with_its_value_map_gets_its_organ(run_cli, tmp_path, shared_data):
    mask_file = shared_data / "ct" / "totalsegmentator" / "aorta_report" / "test_result" / "models" / "aorta.nii.gz"
    if not mask_file.is_file():
        pytest.skip(f"{mask_file} is absent")
    mask = nib.load(mask_file)
    fast = ["--label-map", str(mask_file), "--num-samples", "1", "--steps", "10", "--override", "progress=false"]
    code, text = run_cli(["generate", str(BUNDLE), "--output-dir", str(tmp_path / "aorta"), *fast, "--label-values", "1=52"])
    assert code == 0, text
    aorta, around = _hu_inside_and_outside(tmp_path / "aorta", mask)
    assert -100 < aorta < 300 and aorta > around + 300  # a soft-tissue vessel where the mask is (non-contrast model)
    sidecar = json.loads((tmp_path / "aorta" / "ct_0.json").read_text())
    assert sidecar["label_map_values"] == {"1": 52}  # what the map's values meant travels with the CT

    code, text = run_cli(["generate", str(BUNDLE), "--output-dir", str(tmp_path / "as_spleen"), *fast])
    assert code == 0, text
    as_spleen, _ = _hu_inside_and_outside(tmp_path / "as_spleen", mask)
    assert as_spleen < aorta - 300  # the same file without its value map asks for another organ
