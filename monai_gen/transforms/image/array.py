"""Image transforms: volume -> 2D slices with their position, cine -> 2D frames with their phase, CT HU window.

The slicing transforms are multi-sample transforms: like MONAI's ``RandSpatialCropSamples`` they return a list
of samples, so they work with :class:`monai.data.Dataset` + :func:`monai.data.list_data_collate` (the list is
flattened into the batch) or as the ``patch_func`` of :class:`monai.data.PatchDataset`.

Each 2D sample of a MetaTensor keeps a ``(4, 4)`` affine that places it in the world: its first two columns
are the in-plane voxel axes, the third the axis that was sliced (voxel ``(i, j)`` of the slice is voxel
``(i, j, 0)`` of that affine), and the translation is the position of the slice's first voxel. So
``affine @ [i, j, 0, 1]`` is the physical position (mm) of pixel ``(i, j)``, in the volume's space.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import ScaleIntensityRange, Transform
from monai.utils import TransformBackends, look_up_option

__all__ = [
    "SLICE_INDEX",
    "SLICE_POSITION",
    "FRAME_INDEX",
    "CARDIAC_PHASE",
    "IS_ED",
    "IS_ES",
    "VolumeToSlices",
    "CineToFrames",
    "HounsfieldWindow",
]

SLICE_INDEX = "slice_index"
SLICE_POSITION = "slice_position"
FRAME_INDEX = "frame_index"
CARDIAC_PHASE = "phase"
IS_ED = "is_ed"
IS_ES = "is_es"


def _slice_affine(affine: torch.Tensor, axis: int, index: int) -> torch.Tensor:
    """``(4, 4)`` affine of slice ``index`` along spatial ``axis``: in-plane columns first, then the sliced one."""
    affine = torch.as_tensor(affine, dtype=torch.float64)
    order = [a for a in range(3) if a != axis] + [axis]
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3] = affine[:3, order]
    out[:3, 3] = affine[:3, 3] + index * affine[:3, axis]
    return out


def _take(
    img: NdarrayOrTensor, dim: int, index: int | slice, extra: dict[str, Any], affine: torch.Tensor | None
) -> NdarrayOrTensor:
    """A copy of ``img[..., index, ...]`` (array dimension ``dim``); a MetaTensor gets ``extra`` meta and ``affine``."""
    selector = [slice(None)] * img.ndim
    selector[dim] = index
    if not isinstance(img, MetaTensor):
        return img[tuple(selector)].copy() if isinstance(img, np.ndarray) else img[tuple(selector)].clone()
    meta = {k: copy.deepcopy(v) for k, v in img.meta.items() if k != "affine"}
    data = img.as_tensor()[tuple(selector)].clone()
    meta.update(extra, spatial_shape=np.asarray(data.shape[1:]))
    return MetaTensor(data, affine=img.affine.clone() if affine is None else affine, meta=meta)


class VolumeToSlices(Transform):
    """Split a channel-first volume ``(C, x, y, z)`` into 2D slices ``(C, *in_plane)`` along one spatial axis.

    Slice ``k`` of ``n`` gets meta ``slice_index = k`` and ``slice_position = k / (n - 1)`` (0 at the first
    slice, 1 at the last; 0 when ``n == 1``), the normalised slice position that xMADD's brain-MRI model is
    conditioned on, and an affine that keeps it at its physical position (see the module docstring).
    numpy / torch inputs give slices of the same type without meta.

    Args:
        axis: spatial axis to slice along (0, 1 or 2; default 2, axial for an RAS/LPS-oriented volume).
        indices: the slice indices to keep (default all); positions are still relative to the whole volume.

    Returns:
        a list of ``len(indices)`` samples.

    See:
        xMADD (shared/papers/000), Fig. 5: brain MRI axial slices conditioned on the Z-slice position.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, axis: int = 2, *, indices: Sequence[int] | None = None) -> None:
        if axis not in (0, 1, 2):
            raise ValueError(f"VolumeToSlices: axis must be a spatial axis 0, 1 or 2, got {axis!r}.")
        self.axis = axis
        self.indices = None if indices is None else [int(i) for i in indices]

    def __call__(self, img: NdarrayOrTensor) -> list[NdarrayOrTensor]:
        """Slices of ``img`` ``(C, x, y, z)``, in index order."""
        if img.ndim != 4:
            raise ValueError(
                f"VolumeToSlices: expected a channel-first volume (C, x, y, z), got shape {tuple(img.shape)}."
            )
        count = int(img.shape[self.axis + 1])
        indices = range(count) if self.indices is None else self.indices
        bad = [i for i in indices if not 0 <= i < count]
        if bad:
            raise ValueError(f"VolumeToSlices: slice indices {bad} are outside 0..{count - 1} along axis {self.axis}.")
        affine = img.affine if isinstance(img, MetaTensor) else None
        return [
            _take(
                img,
                self.axis + 1,
                k,
                {SLICE_INDEX: k, SLICE_POSITION: k / max(count - 1, 1)},
                None if affine is None else _slice_affine(affine, self.axis, k),
            )
            for k in indices
        ]


class CineToFrames(Transform):
    """Split a cine ``(T, x, y, z)`` (time first, as MONAI's ``LoadImage`` loads a 4D NIfTI) into 2D frames.

    Returns one ``(1, x, y)`` sample per slice and time frame (slice-major). Frame ``t`` of ``T`` gets meta
    ``frame_index = t`` and ``phase = t / T`` (its position in the periodic cardiac cycle, in [0, 1)), the
    ``slice_index`` / ``slice_position`` of :class:`VolumeToSlices`, and ``is_ed`` / ``is_es`` flags when the
    end-diastolic / end-systolic frames are given (both False when not; 0-based: ACDC's ``Info.cfg`` counts from 1).

    A cine whose voxel spacing is exactly 1 mm on every axis has most likely lost its spacing (several ACDC
    files have): ``unit_spacing`` says whether to ``"warn"`` (default), ``"raise"`` or ``"ignore"``.

    Args:
        ed_frame: 0-based end-diastolic frame, or None.
        es_frame: 0-based end-systolic frame, or None.
        slices: slice indices to keep (default all).
        unit_spacing: what to do with an all-1 mm spacing.

    See:
        xMADD (shared/papers/000): cardiac MRI frames as 2D samples.
    """

    backend = VolumeToSlices.backend

    def __init__(
        self,
        ed_frame: int | None = None,
        es_frame: int | None = None,
        *,
        slices: Sequence[int] | None = None,
        unit_spacing: str = "warn",
    ) -> None:
        self.ed_frame, self.es_frame = ed_frame, es_frame
        self.to_slices = VolumeToSlices(2, indices=slices)
        self.unit_spacing = look_up_option(unit_spacing, ("warn", "raise", "ignore"))

    def __call__(self, img: NdarrayOrTensor) -> list[NdarrayOrTensor]:
        """Frames of ``img`` ``(T, x, y, z)``, slice by slice, each slice in time order."""
        if img.ndim != 4:
            raise ValueError(
                f"CineToFrames: expected a cine (T, x, y, z) with time first, got shape {tuple(img.shape)}."
            )
        frames = int(img.shape[0])
        for name, value in (("ed_frame", self.ed_frame), ("es_frame", self.es_frame)):
            if value is not None and not 0 <= value < frames:
                raise ValueError(f"CineToFrames: {name}={value} is outside the cine's frames 0..{frames - 1}.")
        self._check_spacing(img)
        flags = {t: {IS_ED: t == self.ed_frame, IS_ES: t == self.es_frame} for t in range(frames)}
        return [
            _take(sl, 0, slice(t, t + 1), {FRAME_INDEX: t, CARDIAC_PHASE: t / frames, **flags[t]}, None)
            for sl in self.to_slices(img)
            for t in range(frames)
        ]

    def _check_spacing(self, img: NdarrayOrTensor) -> None:
        """Warn or raise when a MetaTensor's voxel spacing is 1 mm on every axis."""
        if self.unit_spacing == "ignore" or not isinstance(img, MetaTensor):
            return
        if torch.allclose(img.pixdim.double(), torch.ones(3, dtype=torch.float64)):
            name = img.meta.get("filename_or_obj", "<in memory>")
            message = f"CineToFrames: {name} has a voxel spacing of 1 mm on every axis: its spacing was probably lost."
            if self.unit_spacing == "raise":
                raise ValueError(message)
            warnings.warn(message, stacklevel=2)


class HounsfieldWindow(ScaleIntensityRange):
    """Clip CT intensities (Hounsfield units) to ``[hu_min, hu_max]`` and map them linearly to [-1, 1].

    ``y = 2 * (clip(x, hu_min, hu_max) - hu_min) / (hu_max - hu_min) - 1``: ``hu_min`` -> -1, ``hu_max`` -> 1;
    a thin preset of MONAI's ``ScaleIntensityRange`` (same backends, meta kept). The default window
    [-1000, 1000] HU keeps air to dense bone.

    Args:
        hu_min: HU mapped to -1.
        hu_max: HU mapped to 1 (must be > ``hu_min``).
        dtype: output dtype.

    See:
        Medical Diffusion (shared/papers/001), CT preprocessing: HU conversion, then scaling to [-1, 1].
    """

    def __init__(self, hu_min: float = -1000.0, hu_max: float = 1000.0, *, dtype: Any = np.float32) -> None:
        if not hu_max > hu_min:
            raise ValueError(f"HounsfieldWindow: hu_max must exceed hu_min, got hu_min={hu_min}, hu_max={hu_max}.")
        super().__init__(a_min=hu_min, a_max=hu_max, b_min=-1.0, b_max=1.0, clip=True, dtype=dtype)
