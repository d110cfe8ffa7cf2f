"""MS-SSIM diversity on real IXI T1 slices: a collapsed generator scores as less diverse than real slices."""

from __future__ import annotations

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_gen.metrics.image import MS_SSIM_WEIGHTS, MSSSIMDiversity, ms_ssim_weights, pairwise_ms_ssim


@pytest.fixture(scope="module")
def real_slices(shared_data) -> torch.Tensor:
    """``(12, 1, 64, 64)`` central crops of axial slices 30..60 of three IXI volumes, scaled to [0, 1] per volume."""
    files = sorted((shared_data / "brain_mri" / "ixi_t1_2mm" / "t1").glob("*_T1.nii.gz"))[:3]
    if len(files) < 3:
        pytest.skip("IXI T1 volumes are absent")
    slices = []
    for f in files:
        volume = np.asarray(nib.load(f).dataobj, dtype=np.float32)
        volume = np.clip(volume / np.percentile(volume, 99.5), 0, 1)
        slices += [volume[28:92, 28:92, k] for k in (30, 40, 50, 60)]
    return torch.from_numpy(np.stack(slices))[:, None]


def test_weights_keep_the_scales_a_small_image_allows():
    assert ms_ssim_weights((256, 256), 11) == pytest.approx(MS_SSIM_WEIGHTS, rel=1e-3)
    four = ms_ssim_weights((64, 64), 7)  # 64 // 16 = 4 <= 6 rules out the fifth scale
    assert len(four) == 4 and sum(four) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="too small"):
        ms_ssim_weights((8, 8), 11)


def test_pairs_of_one_image_score_one_and_real_pairs_less(real_slices):
    same = pairwise_ms_ssim(real_slices[:1].repeat(5, 1, 1, 1), max_pairs=8)
    assert same["mean"] == pytest.approx(1.0, abs=1e-4)
    real = pairwise_ms_ssim(real_slices, max_pairs=32)
    assert 0.05 < real["mean"] < 0.95 and real["pairs"] > 10
    with pytest.raises(ValueError, match="at least two images"):
        pairwise_ms_ssim(real_slices[:1])


def test_diversity_measure_flags_a_collapsed_generator(real_slices):
    generator = torch.Generator().manual_seed(0)
    collapsed = (real_slices[:1] + 0.01 * torch.randn(8, 1, 64, 64, generator=generator)).clamp(0, 1)
    data = SimpleNamespace(synthetic=collapsed, test=SimpleNamespace(items=real_slices), seed=0)
    measure = MSSSIMDiversity(max_pairs=16)
    section = measure(data)
    assert section["synthetic_pairs"]["mean"] > 0.9 > section["real_test_pairs"]["mean"]
    assert section["difference"] > 0.1
    lines = measure.markdown(section)
    assert lines[0].startswith("## Diversity") and any(line.startswith("| synthetic |") for line in lines)
