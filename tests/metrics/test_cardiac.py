"""Bright blood-pool area of real ACDC cines: contraction by group, and the measure's input checks."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from monai_gen.data.acdc import acdc_records
from monai_gen.metrics.cardiac import bright_area_curve, contraction_ratio


@pytest.fixture(scope="module")
def ratios(shared_data):
    """Per ACDC patient: its group and the median contraction ratio over the slices between base and apex."""
    result = {}
    for record in acdc_records(shared_data / "cardiac_mri/acdc_subset", missing_spacing="keep"):  # pixel areas
        voxels = np.asarray(nib.load(record["image"]).dataobj, dtype=np.float32)  # (x, y, slice, time)
        per_slice = [
            contraction_ratio(bright_area_curve(voxels[:, :, z].transpose(2, 0, 1)), record["ed_frame"], record["es_frame"])
            for z in range(1, voxels.shape[2] - 1)
        ]
        result[record["subject_id"]] = (record["group"], float(np.median(per_slice)))
    return result


def test_normal_hearts_contract_more_than_dilated_or_infarcted_ones(ratios):
    by_group = {}
    for group, ratio in ratios.values():
        by_group.setdefault(group, []).append(ratio)
    assert min(by_group["NOR"]) > 0.45  # normal ejection
    assert max(by_group["DCM"] + by_group["MINF"]) < min(by_group["NOR"]) - 0.15  # impaired left ventricles
    assert all(r > 0.25 for r in by_group["HCM"])  # hypertrophic hearts still eject


def test_a_still_cine_does_not_contract_and_bad_input_is_named():
    frame = np.zeros((40, 40))
    frame[12:28, 12:28] = 1.0  # a bright square in the centre
    still = np.repeat(frame[None], 5, axis=0)
    curve = bright_area_curve(still, pixel_area_mm2=2.0)
    assert curve.shape == (5,) and curve[0] > 0 and np.ptp(curve) == 0
    assert contraction_ratio(curve, 0, 3) == 0.0
    shrinking = np.stack([np.pad(np.ones((16 - 2 * t, 16 - 2 * t)), 12 + t) for t in range(4)])
    assert np.all(np.diff(bright_area_curve(shrinking, smoothing_sigma=0.5)) < 0)
    with pytest.raises(ValueError, match=r"expected a cine \(T, H, W\) with T >= 2 frames, got shape \(40, 40\)"):
        bright_area_curve(frame)
    with pytest.raises(ValueError, match="the cine is constant"):
        bright_area_curve(np.ones((3, 8, 8)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        bright_area_curve(np.full((3, 8, 8), np.nan))
    with pytest.raises(ValueError, match=r"es_frame=7 is outside the curve's frames 0..4"):
        contraction_ratio(curve, 0, 7)
