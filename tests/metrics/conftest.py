"""Real data for the metric tests: ECG windows (N, 12, 500) in mV from the cinc2021 records, and axial IXI T1 slices."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb
from monai.transforms import (
    CenterSpatialCropd,
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    Orientationd,
    ScaleIntensityRangePercentilesd,
)

from monai_gen.engines.cohort import build_cohort, records_from_table
from monai_gen.transforms.image import VolumeToSlicesd


@pytest.fixture(scope="session")
def ecg_windows(shared_data) -> np.ndarray:
    windows = []
    for header in sorted((shared_data / "ecg" / "cinc2021").glob("*.hea"))[:40]:
        signal = wfdb.rdrecord(str(header.with_suffix(""))).p_signal.T.astype(np.float32)
        windows.extend(np.nan_to_num(signal[:, start : start + 500]) for start in (0, 2000, 4000))
    return np.stack(windows)


@pytest.fixture(scope="session")
def ixi_slices(shared_data):
    """Five axial slices (64 x 64, [0, 1] per volume) of each of 16 IXI subjects, in subject order, with age, sex and
    slice position. The volumes are stored P-S-R, so they are turned to RAS first: axis 2 is then inferior ->
    superior (axial)."""
    folder = shared_data / "brain_mri" / "ixi_t1_2mm"
    if not (folder / "participants.csv").is_file():
        pytest.skip(f"{folder} is absent")
    records = records_from_table(folder / "participants.csv", folder / "t1", id_column="MRID",
                                 file_pattern="{id}_T1.nii.gz", columns={"Age": "age", "Sex": "sex"})[:16]
    prepare = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image"),
                       Orientationd("image", axcodes="RAS", labels=None),
                       ScaleIntensityRangePercentilesd("image", 0.5, 99.5, 0.0, 1.0, clip=True),
                       VolumeToSlicesd("image", axis=2, indices=[40, 50, 60, 70, 80]),
                       CenterSpatialCropd("image", [64, 64])])
    return build_cohort(records, prepare, fields=["age", "sex", "slice_position"])
