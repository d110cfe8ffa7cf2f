"""The CT autoencoder comparison's HU bands, on a real CT: a band's error is the error of the voxels whose real HU lies
in it, and nothing else."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch

from benchmarks.ct_autoencoder_choice import band_errors


def test_each_band_holds_the_error_of_its_own_real_voxels_only(shared_data):
    real = torch.as_tensor(nib.load(shared_data / "ct" / "totalsegmentator" / "example_ct_sm.nii.gz").get_fdata(),
                           dtype=torch.float32)[None, None]
    soft = (real >= -200) & (real < 200)
    reconstruction = real + 40.0 * soft - 10.0 * (real < -500)  # soft tissue 40 HU too bright, air 10 HU too dark
    bands = band_errors(real, reconstruction)
    assert bands["soft_tissue"]["mae_hu"] == 40.0 and bands["air_lung"]["mae_hu"] == 10.0
    assert bands["contrast_bone"]["mae_hu"] == 0.0
    fractions = [b["voxel_fraction"] for b in bands.values()]
    assert 0 < min(fractions) and sum(fractions) < 1  # three real bands, with gaps (-500 to -200: fat, partial lung)
    np.testing.assert_allclose(bands["soft_tissue"]["voxel_fraction"], soft.float().mean().item())
