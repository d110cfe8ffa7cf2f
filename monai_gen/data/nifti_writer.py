"""Write a synthetic image as NIfTI with the correct affine, atomically, with its provenance sidecar.

The array is written by MONAI's :class:`~monai.data.NibabelWriter` (channel-first in, channel-last NIfTI out,
sform = qform = the affine). NIfTI's world space is RAS: a MetaTensor whose ``meta["space"]`` is ``LPS`` (e.g.
loaded with ``affine_lps_to_ras=False``) has its affine converted first, so the written file places every voxel
where the source placed it. A ``description`` goes into the header's ``descrip`` field (80 bytes), which viewers
show beside the image (e.g. "SYNTHETIC ... slice_position=0.6").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import DtypeLike
from monai.data import MetaTensor, NibabelWriter
from monai.data.utils import orientation_ras_lps
from monai.utils import SpaceKeys, optional_import

from monai_gen.data.provenance import to_json_compatible, write_provenance
from monai_gen.utils.atomic import atomic_output_path

nib, _ = optional_import("nibabel")

__all__ = ["NIFTI_DESCRIPTION_BYTES", "write_nifti"]

_SUFFIXES = (".nii", ".nii.gz")
NIFTI_DESCRIPTION_BYTES = 80
"""Size of the NIfTI-1 header's ``descrip`` field."""


def write_nifti(
    image: np.ndarray | torch.Tensor,
    path: str | os.PathLike,
    *,
    affine: np.ndarray | torch.Tensor | None = None,
    channel_dim: int | None = 0,
    output_dtype: DtypeLike = np.float32,
    provenance: Mapping[str, Any] | None = None,
    description: str | None = None,
    frame_time_ms: float | None = None,
) -> list[Path]:
    """Write ``image`` ``(C, *spatial)`` to ``path`` (``.nii`` / ``.nii.gz``) and its JSON provenance sidecar.

    Args:
        image: channel-first image; a MetaTensor gives its affine (mm) and space (RAS or LPS).
        path: destination NIfTI file.
        affine: ``(4, 4)`` voxel-to-RAS affine in mm; overrides the MetaTensor's (default identity for arrays).
        channel_dim: channel axis of ``image`` (``None`` for no channel axis); one channel is squeezed. A 2D image
            is written as a one-slice volume ``(x, y, 1)``, so the affine's third column (slice thickness) is kept.
        output_dtype: data type stored in the file.
        provenance: generation provenance (model id, seed, conditions...) for the sidecar.
        description: text for the header's ``descrip`` field (ASCII, at most 80 bytes).
        frame_time_ms: write a time series: ``image`` is ``(T, *spatial)`` with ``channel_dim`` 0 holding the
            ``T >= 2`` frames, e.g. a synthetic cine; the file is 4D ``(x, y, z, t)`` (a 2D frame as a one-slice
            volume, ``(x, y, 1, t)``) with ``pixdim[4]`` the time between frames and units mm / ms.

    Returns:
        ``[nifti file, sidecar]``.

    Raises:
        ValueError: wrong suffix, NaN / infinite values, affine not ``(4, 4)`` / singular, a description that is
            not ASCII or longer than 80 bytes; with ``frame_time_ms``: fewer than 2 frames, frames that are not 2D /
            3D, a channel axis other than 0, or a frame time that is not a positive number.
        TypeError: a provenance value JSON cannot hold (checked before anything is written).
    """
    path = Path(path)
    if not path.name.endswith(_SUFFIXES):
        raise ValueError(f"NIfTI path {path} must end with .nii or .nii.gz.")
    record = {str(k): to_json_compatible(v, key=str(k)) for k, v in (provenance or {}).items()}
    array = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image)
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: the image contains NaN or infinite values; nothing was written.")
    ras = _ras_affine(image, affine, path)
    if frame_time_ms is not None:
        array = _as_time_series(array, channel_dim, frame_time_ms, path)
    header = _header(description, output_dtype, path, frame_time_ms)
    writer = NibabelWriter(output_dtype=output_dtype)
    writer.set_data_array(array, channel_dim=channel_dim, squeeze_end_dims=False)  # channel last, >= 3 spatial axes
    if writer.data_obj.shape[-1] == 1:  # drop a single channel only: a 2D image stays (x, y, 1), its voxel 3D
        writer.data_obj = writer.data_obj[..., 0]
    # The affine is set directly: ``set_metadata(..., resample=False)`` still runs MONAI 1.6.1's resampler,
    # which fails on oblique / permuted affines such as IXI's ("Affine ... is not invertible").
    writer.affine = ras
    with atomic_output_path(path) as tmp:
        writer.write(tmp, header=header)
    return [path, write_provenance(path, record)]


def _as_time_series(array: np.ndarray, channel_dim: int | None, frame_time_ms: float, path: Path) -> np.ndarray:
    """``(T, x, y[, z])`` frames, a 2D frame given its one-slice axis: ``(T, x, y, z)``."""
    if channel_dim != 0 or array.ndim not in (3, 4) or array.shape[0] < 2:
        raise ValueError(
            f"{path}: a time series is (T, x, y) or (T, x, y, z) with T >= 2 frames on channel_dim 0, got shape "
            f"{tuple(array.shape)} with channel_dim {channel_dim}."
        )
    if not (isinstance(frame_time_ms, (int, float)) and np.isfinite(frame_time_ms) and frame_time_ms > 0):
        raise ValueError(f"{path}: frame_time_ms must be a positive number of milliseconds, got {frame_time_ms!r}.")
    return array[..., None] if array.ndim == 3 else array


def _header(description: str | None, output_dtype: DtypeLike, path: Path, frame_time_ms: float | None) -> Any:
    """A NIfTI-1 header holding ``description`` and the frame time, or None (nibabel's default) without either."""
    if description is None and frame_time_ms is None:
        return None
    header = nib.Nifti1Header()
    header.set_data_dtype(output_dtype)  # nibabel takes the data type from a given header, not from the array
    if description is not None:
        if not description.isascii() or len(description) > NIFTI_DESCRIPTION_BYTES:
            raise ValueError(
                f"{path}: a NIfTI description must be ASCII of at most {NIFTI_DESCRIPTION_BYTES} bytes, got "
                f"{description!r}."
            )
        header["descrip"] = description.encode("ascii")
    if frame_time_ms is not None:  # the spatial zooms come from the affine when the file is written
        header.set_xyzt_units("mm", "msec")
        header["pixdim"][4] = float(frame_time_ms)
    return header


def _ras_affine(image: Any, affine: Any, path: Path) -> np.ndarray:
    """The voxel-to-RAS affine: given, else the MetaTensor's (converted from LPS when its space says so)."""
    space = SpaceKeys.RAS
    if affine is None and isinstance(image, MetaTensor):
        affine, space = image.affine, image.meta.get("space", SpaceKeys.RAS)
    if affine is None:
        return np.eye(4)
    affine = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    if affine.shape != (4, 4) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"{path}: affine must be an invertible (4, 4) matrix, got {affine.tolist()}.")
    return orientation_ras_lps(affine) if str(space) == SpaceKeys.LPS else affine
