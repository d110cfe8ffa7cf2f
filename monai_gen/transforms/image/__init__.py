"""monai_gen.transforms.image: volume / cine slicing with positions, CT Hounsfield window, input checks."""

from __future__ import annotations

from monai_gen.transforms.image.array import (
    CARDIAC_PHASE,
    FRAME_INDEX,
    IS_ED,
    IS_ES,
    SLICE_INDEX,
    SLICE_POSITION,
    WORLD_AXES,
    CheckImageValues,
    CheckVolumeGeometry,
    CineToFrames,
    HounsfieldWindow,
    VolumeToSlices,
)
from monai_gen.transforms.image.dictionary import (
    CheckImageValuesd,
    CheckVolumeGeometryd,
    CineToFramesd,
    HounsfieldWindowd,
    VolumeToSlicesd,
)

__all__ = [
    "CARDIAC_PHASE",
    "FRAME_INDEX",
    "IS_ED",
    "IS_ES",
    "SLICE_INDEX",
    "SLICE_POSITION",
    "WORLD_AXES",
    "CheckImageValues",
    "CheckImageValuesd",
    "CheckVolumeGeometry",
    "CheckVolumeGeometryd",
    "CineToFrames",
    "CineToFramesd",
    "HounsfieldWindow",
    "HounsfieldWindowd",
    "VolumeToSlices",
    "VolumeToSlicesd",
]
