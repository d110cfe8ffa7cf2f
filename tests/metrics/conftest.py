"""Real data for the metric tests: ECG windows (N, 12, 500) in mV from the cinc2021 records, axial IXI T1 slices, and
patches of two TotalSegmentator CTs with their organ label maps."""

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
    RandSpatialCropSamplesd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Spacingd,
    SpatialPadd,
)

from monai_gen.data.dicom_series import DICOMSeriesReader
from monai_gen.engines.cohort import build_cohort, records_from_table
from monai_gen.transforms.ct import CraniocaudalPatchesd, OrganLabelMaps
from monai_gen.transforms.image import VolumeToSlicesd

CT_KEYS = ["image", "label"]
CT_ORGANS = {"liver": [5], "spleen": [1], "vertebra": list(range(25, 51)), "adrenal": [8, 9]}


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


def _ct_preprocessing(patch) -> Compose:
    """A CT bundle's volume preprocessing: RAS, 4 mm, HU window [-1000, 1000], padded (air / background) to a patch."""
    return Compose([
        LoadImaged(CT_KEYS, reader=DICOMSeriesReader(), image_only=True, allow_missing_keys=True),
        EnsureChannelFirstd(CT_KEYS, allow_missing_keys=True),
        Orientationd(CT_KEYS, "RAS", labels=None, allow_missing_keys=True),
        Spacingd(CT_KEYS, (4.0, 4.0, 4.0), mode=["bilinear", "nearest"], allow_missing_keys=True),
        ScaleIntensityRanged("image", -1000, 1000, -1000, 1000, clip=True, allow_missing_keys=True),
        SpatialPadd("image", patch, value=-1000, allow_missing_keys=True),
        SpatialPadd("label", patch, allow_missing_keys=True),
    ])


@pytest.fixture(scope="session")
def ct_patch_cohorts(shared_data):
    """``make(patch=(32, 32, 32), num_samples=4)`` -> ``(train, test, labels)``: ``num_samples`` random patches (seeded)
    in HU of the abdominal CT (training subject ``a``, 92 x 76 x 23 voxels at 4 mm) and of the contrast-enhanced DICOM
    series (test subject ``c``, 126 x 126 x 10), each row with its craniocaudal position, patch start and label map,
    and the :class:`OrganLabelMaps` of :data:`CT_ORGANS` on that preprocessing. Each setting is built once a session."""
    source = shared_data / "ct" / "totalsegmentator"
    if not (source / "example_ct_dicom").is_dir():
        pytest.skip(f"{source} is absent")
    built = {}

    def make(patch=(32, 32, 32), num_samples=4):
        key = (tuple(patch), int(num_samples))
        if key not in built:
            volume = _ct_preprocessing(patch)
            patches = Compose([volume, CraniocaudalPatchesd("image", RandSpatialCropSamplesd(
                CT_KEYS, patch, num_samples=num_samples, random_size=False))]).set_random_state(0)
            fields = ["craniocaudal_position", "patch_start", "organ_label_file"]
            cohorts = [build_cohort([{"image": str(source / image), "label": str(source / label),
                                      "organ_label_file": str(source / label), "subject_id": subject}],
                                    patches, fields=fields)
                       for image, label, subject in [("example_ct_sm.nii.gz", "example_seg.nii.gz", "a"),
                                                     ("example_ct_dicom", "example_seg_dicom.nii.gz", "c")]]
            built[key] = (*cohorts, OrganLabelMaps(CT_ORGANS, patch_size=patch, compression=4, load=volume))
        return built[key]

    return make
