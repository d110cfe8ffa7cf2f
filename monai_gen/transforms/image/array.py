"""Image transforms: volume -> 2D slices with their position, cine -> 2D frames with their phase, CT HU window,
and the input checks a bundle runs on every volume before using it (:class:`CheckImageValues`,
:class:`CheckVolumeGeometry`).

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
from monai.transforms.traits import InvertibleTrait
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_numpy, look_up_option

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
    "WORLD_AXES",
    "CheckImageValues",
    "CheckVolumeGeometry",
    "CheckHounsfieldUnits",
    "check_label_map_geometry",
]

SLICE_INDEX = "slice_index"
SLICE_POSITION = "slice_position"
FRAME_INDEX = "frame_index"
CARDIAC_PHASE = "phase"
IS_ED = "is_ed"
IS_ES = "is_es"

WORLD_AXES = ("left-right", "anterior-posterior", "inferior-superior")
"""The world axes of an RAS (or LPS) affine, in order: what :class:`CheckVolumeGeometry` measures along."""


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


class HounsfieldWindow(ScaleIntensityRange, InvertibleTrait):
    """Clip CT intensities (Hounsfield units) to ``[hu_min, hu_max]`` and map them linearly to [-1, 1]; and back.

    ``y = 2 * (clip(x, hu_min, hu_max) - hu_min) / (hu_max - hu_min) - 1``: ``hu_min`` -> -1, ``hu_max`` -> 1;
    a thin preset of MONAI's ``ScaleIntensityRange`` (same backends, meta kept). The default window
    [-1000, 1000] HU keeps air to dense bone.

    :meth:`inverse` maps model space back to HU, ``x = (clip(y, -1, 1) + 1) / 2 * (hu_max - hu_min) + hu_min``: the
    explicit inverse generation needs (a sample has no forward history to undo). It clips to [-1, 1] first, so a
    generated value never leaves the window the model was trained on. One object both ways, like
    :class:`~monai_gen.transforms.normalisation.LinearNormalisation`, so a bundle's ``normalisation`` id can be this
    window: training maps HU to [-1, 1], generation maps samples back to HU.

    Args:
        hu_min: HU mapped to -1.
        hu_max: HU mapped to 1 (must be > ``hu_min``).
        dtype: output dtype.

    Raises:
        ValueError: ``hu_max <= hu_min``.

    Examples:
        >>> window = HounsfieldWindow(-1000, 1000)
        >>> window(torch.tensor([-1200.0, 0.0, 500.0])).tolist(), window.inverse(torch.tensor([-1.0, 0.0, 0.5])).tolist()
        ([-1.0, 0.0, 0.5], [-1000.0, 0.0, 500.0])

    See:
        Medical Diffusion (shared/papers/001), CT preprocessing: HU conversion, then scaling to [-1, 1].
    """

    def __init__(self, hu_min: float = -1000.0, hu_max: float = 1000.0, *, dtype: Any = np.float32) -> None:
        if not hu_max > hu_min:
            raise ValueError(f"HounsfieldWindow: hu_max must exceed hu_min, got hu_min={hu_min}, hu_max={hu_max}.")
        super().__init__(a_min=hu_min, a_max=hu_max, b_min=-1.0, b_max=1.0, clip=True, dtype=dtype)
        self.hu_min, self.hu_max = float(hu_min), float(hu_max)

    def inverse(self, data: NdarrayOrTensor) -> NdarrayOrTensor:
        """Model space ``(..., *spatial)`` in [-1, 1] -> HU in ``[hu_min, hu_max]``; same type as ``data``."""
        y = torch.as_tensor(data, dtype=torch.float32).clamp(-1.0, 1.0)
        hu = (y + 1.0) * (0.5 * (self.hu_max - self.hu_min)) + self.hu_min
        return convert_to_dst_type(hu, data, dtype=torch.float32)[0]


def _image_name(img: NdarrayOrTensor) -> str:
    """The file a MetaTensor was loaded from (its ``filename_or_obj``), else ``"image"``: the subject of a message."""
    name = img.meta.get("filename_or_obj") if isinstance(img, MetaTensor) else None
    return str(name) if name else "image"


class CheckImageValues(Transform):
    """Reject an image that cannot be a scan: no voxels, NaN / infinite values, or one value everywhere.

    The image is returned unchanged. Run it right after loading, before any transform that would turn the problem
    into a library error (percentile scaling of a NaN volume) or hide it (clipping).

    Raises:
        ValueError: naming the file (a MetaTensor's ``filename_or_obj``) and the problem.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """``img`` ``(C, *spatial)``, checked."""
        name, array = _image_name(img), convert_to_numpy(img)
        if array.size == 0:
            raise ValueError(f"{name}: the image holds no voxels (shape {tuple(array.shape)}).")
        finite = np.isfinite(array)
        if not finite.all():
            raise ValueError(
                f"{name}: {int((~finite).sum())} of {array.size} voxels are NaN or infinite; a scan has finite values."
            )
        if array.min() == array.max():
            raise ValueError(f"{name}: every voxel has the value {array.flat[0]:g}; the image is empty.")
        return img


class CheckHounsfieldUnits(Transform):
    """Reject a volume that is not a CT in Hounsfield units: 2D input, or intensities no CT has.

    A CT in HU holds air outside the body or in the lungs (about -1000 HU; scanners pad outside the field of view
    with -1024 to -3024), so its minimum lies in ``min_hu_range``, and its maximum (bone, contrast, metal) in
    ``max_hu_range``. An MR volume, a CT already scaled to ``[0, 1]`` or stored without its rescale intercept
    (0 ... 4095) fails, with a message that says what was found and what to do.

    Args:
        min_hu_range: ``(low, high)`` the volume's minimum must lie in.
        max_hu_range: ``(low, high)`` the volume's maximum must lie in.

    Raises:
        ValueError: naming the file: not one channel and 3 spatial axes, or a minimum / maximum outside its range.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self, min_hu_range: Sequence[float] = (-3100.0, -900.0), max_hu_range: Sequence[float] = (100.0, 32767.0)
    ) -> None:
        self.min_hu_range = (float(min_hu_range[0]), float(min_hu_range[1]))
        self.max_hu_range = (float(max_hu_range[0]), float(max_hu_range[1]))

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """``img`` ``(1, x, y, z)`` in HU, checked and returned unchanged."""
        name, array = _image_name(img), convert_to_numpy(img)
        if array.ndim != 4 or array.shape[0] != 1:
            raise ValueError(
                f"{name}: a CT volume is one channel and 3 spatial axes (1, x, y, z), got shape {tuple(array.shape)}."
            )
        low, high = float(array.min()), float(array.max())
        for label, value, (lo, hi) in (("minimum", low, self.min_hu_range), ("maximum", high, self.max_hu_range)):
            if not lo <= value <= hi:
                raise ValueError(
                    f"{name}: intensities {low:g} to {high:g} are not Hounsfield units (a CT's {label} lies in "
                    f"{lo:g} to {hi:g} HU: air near -1000, bone and contrast above 100). Give the CT in HU (DICOM: "
                    "RescaleSlope / RescaleIntercept applied), not an MR image or a rescaled volume."
                )
        return img


def check_label_map_geometry(image: MetaTensor, label: MetaTensor, *, tolerance_mm: float = 1e-3) -> None:
    """Raise unless ``label`` ``(1, x, y, z)`` is an integer label map on ``image``'s voxel grid.

    The spatial shapes must be equal, the affines equal within ``tolerance_mm``, and the labels whole non-negative
    numbers, so label ``k`` at a voxel means that voxel of the image.

    Raises:
        ValueError: naming both files and what differs.
    """
    names = f"label map {_image_name(label)} of image {_image_name(image)}"
    if tuple(label.shape[1:]) != tuple(image.shape[1:]) or label.shape[0] != 1:
        raise ValueError(
            f"{names}: shape {tuple(label.shape)} does not match the image's {tuple(image.shape)} (one channel, the "
            "same voxels); resample the label map to the image with nearest-neighbour interpolation first."
        )
    difference = float((label.affine.double() - image.affine.double()).abs().max())
    if difference > tolerance_mm:
        raise ValueError(
            f"{names}: the affines differ by up to {difference:.3g} mm; the label map must lie on the image's voxel grid."
        )
    values = convert_to_numpy(label)
    if values.min() < 0 or not np.array_equal(values, np.round(values)):
        raise ValueError(f"{names}: labels must be whole non-negative numbers, got values from {values.min():g}.")


class CheckVolumeGeometry(Transform):
    """Reject a channel-first MetaTensor volume ``(C, x, y, z)`` that is not the kind of scan a bundle was made for.

    Checks, in order (each optional except the first), with the affine mapping every voxel axis to the world axis
    (:data:`WORLD_AXES`) it runs along most:

    1. ``channels`` channels and 3 spatial axes (a 4D NIfTI loads as one channel per volume);
    2. voxel size: ``spacing_mm`` (per world axis, left-right first) within ``spacing_tolerance_mm``;
    3. orientation: the world axis the image is most mirror-symmetric across, once its foreground is centred, is
       ``mirror_axis`` (``"left-right"`` for a head or brain: the mid-sagittal plane). A volume whose voxel axes
       were permuted without its header, or whose header is wrong, fails it; a flip along an axis cannot be seen;
    4. foreground size: the foreground (voxels above ``foreground_threshold`` times the 99th intensity percentile)
       spans, between its 1st and 99th coordinate percentiles, ``foreground_mm[a] = (low, high)`` mm along world
       axis ``a`` (a head is about 130-160 mm wide, 160-210 mm long).

    Measured on the 160 IXI T1 volumes of ``shared/data/brain_mri`` (2 mm): foreground 130-158 x 160-208 x
    178-216 mm (threshold 0.1); left-right is the most symmetric axis of all 160 (by at least 0.07 in
    correlation) and of none once their first and last voxel axes are swapped.

    Args:
        channels: the number of channels expected.
        spacing_mm: expected voxel size along each world axis (mm), or None.
        spacing_tolerance_mm: allowed deviation from ``spacing_mm``.
        foreground_mm: ``(low, high)`` extent of the foreground per world axis (mm), or None.
        foreground_threshold: foreground level as a fraction of the 99th intensity percentile.
        mirror_axis: one of :data:`WORLD_AXES`, or None.

    Raises:
        ValueError: naming the file and what is wrong, with the measured value and the expected one.

    See:
        Liu, Collins, Rothfus, "Robust midsagittal plane extraction from normal and pathological 3-D neuroradiology
        images", IEEE TMI 20(3), 2001: the brain's bilateral symmetry defines its left-right axis.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        channels: int = 1,
        *,
        spacing_mm: Sequence[float] | None = None,
        spacing_tolerance_mm: float = 0.1,
        foreground_mm: Sequence[Sequence[float]] | None = None,
        foreground_threshold: float = 0.1,
        mirror_axis: str | None = None,
    ) -> None:
        for label, value in (("spacing_mm", spacing_mm), ("foreground_mm", foreground_mm)):
            if value is not None and len(value) != 3:
                raise ValueError(
                    f"CheckVolumeGeometry: {label} needs one entry per world axis {WORLD_AXES}, got {value}."
                )
        if foreground_mm is not None and not all(len(r) == 2 and 0 <= r[0] <= r[1] for r in foreground_mm):
            raise ValueError(f"CheckVolumeGeometry: foreground_mm must hold (low, high) pairs, got {foreground_mm}.")
        if not 0 < foreground_threshold < 1:
            raise ValueError(
                f"CheckVolumeGeometry: foreground_threshold must be in (0, 1), got {foreground_threshold}."
            )
        self.channels = int(channels)
        self.spacing_mm = None if spacing_mm is None else np.asarray(spacing_mm, dtype=np.float64)
        self.spacing_tolerance_mm = float(spacing_tolerance_mm)
        self.foreground_mm = None if foreground_mm is None else np.asarray(foreground_mm, dtype=np.float64)
        self.foreground_threshold = float(foreground_threshold)
        self.mirror_axis = None if mirror_axis is None else look_up_option(mirror_axis, WORLD_AXES)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """``img`` ``(C, x, y, z)``, checked (a MetaTensor: its affine gives the geometry)."""
        name = _image_name(img)
        if img.ndim != 4 or img.shape[0] != self.channels:
            raise ValueError(
                f"{name}: expected {self.channels} channel(s) of a 3D volume, (C, x, y, z), got shape "
                f"{tuple(img.shape)}; a 4D file (several volumes, a time series) loads with one channel per volume."
            )
        if not isinstance(img, MetaTensor):
            raise ValueError(f"{name}: CheckVolumeGeometry needs a MetaTensor (LoadImage) to know the voxel geometry.")
        affine = img.affine.detach().cpu().numpy().astype(np.float64)
        world = _world_axes(affine, name)
        spacing = np.empty(3)
        spacing[world] = np.linalg.norm(affine[:3, :3], axis=0)
        array = convert_to_numpy(img, dtype=np.float32).max(axis=0)
        self._check_spacing(spacing, name)
        self._check_mirror_axis(array, world, name)
        self._check_foreground(array, spacing, world, name)
        return img

    def _check_spacing(self, spacing: np.ndarray, name: str) -> None:
        if self.spacing_mm is not None and np.any(np.abs(spacing - self.spacing_mm) > self.spacing_tolerance_mm):
            raise ValueError(
                f"{name}: voxel size {_mm(spacing)} (left-right, anterior-posterior, inferior-superior), expected "
                f"{_mm(self.spacing_mm)} +- {self.spacing_tolerance_mm:g} mm; resample it first (MONAI Spacing)."
            )

    def _check_foreground(self, array: np.ndarray, spacing: np.ndarray, world: np.ndarray, name: str) -> None:
        if self.foreground_mm is None:
            return
        coordinates = np.nonzero(array > self.foreground_threshold * np.percentile(array, 99))
        extent = np.zeros(3)
        extent[world] = [np.subtract(*np.percentile(c, [99, 1])) if c.size else 0.0 for c in coordinates]
        extent *= spacing
        outside = [a for a in range(3) if not self.foreground_mm[a, 0] <= extent[a] <= self.foreground_mm[a, 1]]
        if outside:
            low, high = self.foreground_mm[:, 0], self.foreground_mm[:, 1]
            expected = ", ".join(f"{WORLD_AXES[a]} {low[a]:g}-{high[a]:g}" for a in outside)
            raise ValueError(
                f"{name}: the foreground spans {_mm(extent)} (left-right, anterior-posterior, inferior-superior); "
                f"expected {expected} mm: not the anatomy this model was trained on, or a wrong voxel size in its "
                "header."
            )

    def _check_mirror_axis(self, array: np.ndarray, world: np.ndarray, name: str) -> None:
        if self.mirror_axis is None:
            return
        symmetry = np.empty(3)
        symmetry[world] = [_mirror_correlation(array, axis) for axis in range(3)]
        best = int(np.argmax(symmetry))
        if WORLD_AXES[best] != self.mirror_axis:
            raise ValueError(
                f"{name}: the image is most mirror-symmetric along the {WORLD_AXES[best]} axis (correlation "
                f"{symmetry[best]:.2f}, {symmetry[WORLD_AXES.index(self.mirror_axis)]:.2f} along {self.mirror_axis}), "
                f"expected {self.mirror_axis}: its header's orientation does not match its voxels (axes swapped?)."
            )


def _world_axes(affine: np.ndarray, name: str) -> np.ndarray:
    """The world axis (0, 1, 2) each voxel axis runs along most; an error when two voxel axes share one."""
    world = np.argmax(np.abs(affine[:3, :3]), axis=0)
    if len(set(world.tolist())) != 3:
        raise ValueError(
            f"{name}: the affine {np.round(affine, 3).tolist()} does not give each voxel axis its own world axis."
        )
    return world


def _mirror_correlation(array: np.ndarray, axis: int) -> float:
    """Correlation of ``array`` with its mirror image across ``axis``, its intensity centroid moved to the centre."""
    profile = array.sum(axis=tuple(a for a in range(array.ndim) if a != axis), dtype=np.float64)
    centroid = float((profile * np.arange(profile.size)).sum() / max(profile.sum(), 1e-12))
    centred = np.roll(array, int(round((profile.size - 1) / 2 - centroid)), axis=axis)
    return float(np.corrcoef(centred.ravel(), np.flip(centred, axis).ravel())[0, 1])


def _mm(values: np.ndarray) -> str:
    return " x ".join(f"{v:.3g}" for v in values) + " mm"
