"""monai_gen.transforms.image: volume / cine slicing with positions, CT Hounsfield window."""

from __future__ import annotations

from monai_gen.transforms.image.array import (
    CARDIAC_PHASE,
    FRAME_INDEX,
    IS_ED,
    IS_ES,
    SLICE_INDEX,
    SLICE_POSITION,
    CineToFrames,
    HounsfieldWindow,
    VolumeToSlices,
)
from monai_gen.transforms.image.dictionary import CineToFramesd, HounsfieldWindowd, VolumeToSlicesd

__all__ = [
    "CARDIAC_PHASE",
    "FRAME_INDEX",
    "IS_ED",
    "IS_ES",
    "SLICE_INDEX",
    "SLICE_POSITION",
    "CineToFrames",
    "CineToFramesd",
    "HounsfieldWindow",
    "HounsfieldWindowd",
    "VolumeToSlices",
    "VolumeToSlicesd",
]
