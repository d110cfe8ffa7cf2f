"""``save_cine_gif``: a GIF loop lasts the cardiac cycle to the nearest 10 ms (GIF's time unit), whether the encoder
keeps every frame or merges identical ones, on frames of a real ACDC cine."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from monai_gen.visualize.cine import save_cine_gif


def _read_durations(path) -> list[int]:
    gif = Image.open(path)
    durations = []
    for k in range(gif.n_frames):
        gif.seek(k)
        durations.append(gif.info["duration"])
    return durations


@pytest.fixture(scope="module")
def cine(shared_data):
    """Six frames ``(6, H, W)`` of a real ACDC short-axis cine (mid slice)."""
    path = shared_data / "cardiac_mri/acdc_subset/patient001/patient001_4d.nii.gz"
    volume = np.asarray(nib.load(path).dataobj, dtype=np.float32)  # (x, y, z, t)
    return volume[:, :, volume.shape[2] // 2, :6].transpose(2, 0, 1)


def test_the_loop_lasts_the_cycle_with_every_frame_kept_or_identical_frames_merged(cine, tmp_path):
    kept = _read_durations(save_cine_gif(cine, tmp_path / "kept.gif", frame_time_ms=1000 / 6))
    assert len(kept) == 6 and sum(kept) == 1000 and all(d % 10 == 0 for d in kept)  # 170, 160, 170, 170, 160, 170
    frozen = np.repeat(cine[:1], 6, axis=0)  # an untrained model's identical frames: PIL merges them
    merged = _read_durations(save_cine_gif(frozen, tmp_path / "merged.gif", frame_time_ms=1000 / 6))
    assert len(merged) < 6 and sum(merged) == 1000
    assert sum(_read_durations(save_cine_gif(cine[:5], tmp_path / "five.gif", frame_time_ms=40.0))) == 200
