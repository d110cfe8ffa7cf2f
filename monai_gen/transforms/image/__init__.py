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
    CheckHounsfieldUnits,
    CheckImageValues,
    CheckVolumeGeometry,
    CineToFrames,
    HounsfieldWindow,
    VolumeToSlices,
    check_label_map_geometry,
)
from monai_gen.transforms.image.dictionary import (
    CheckHounsfieldUnitsd,
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
    "CheckHounsfieldUnits",
    "CheckHounsfieldUnitsd",
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
    "check_label_map_geometry",
]
