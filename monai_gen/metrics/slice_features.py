"""2.5D views of 3D volumes for the image suite's features: slices along the axial, coronal and sagittal planes.

A 2D feature network sees a 3D volume through its slices ("2.5D"): MAISI (Guo et al., WACV 2025) scores synthetic CT by
the Fréchet distance of 2D features of its XY, YZ and ZX slices, plane by plane (MONAI tutorials,
``generation/maisi/scripts/compute_fid_2-5d_ct.py``, with RadImageNet weights). No pretrained 2D medical network can be
downloaded here, so the features are the image suite's (:mod:`monai_gen.metrics.image_features`), trained on 2D slices
of the real training volumes taken along the three planes:

- :func:`volume_slices` cuts the ``n_slices`` central slices (``slice_step`` apart) of each volume ``(N, C, X, Y, Z)``
  across one plane's axis. Volumes are RAS (X left -> right, Y posterior -> anterior, Z inferior -> superior): an axial
  slice fixes Z, a coronal one Y, a sagittal one X. Slices are padded (or cropped) symmetrically to one ``slice_size``
  with ``pad_value`` (air, -1000 HU, for CT), so one 2D network reads every plane of a non-cubic patch;
- :func:`slice_items` stacks the slices of a cohort's volumes along the planes, one row per slice: its volume's row
  plus ``slice_plane`` and ``slice_offset`` (the slice's index along its axis / (axis length - 1), in [0, 1]);
- :func:`cached_slice_feature_extractor` trains (or reloads) an
  :class:`~monai_gen.metrics.image_features.ImageFeatureExtractor` on those slices to predict the plane, the slice
  offset and the volume's conditions (e.g. the craniocaudal position), through
  :func:`~monai_gen.metrics.image_features.cached_feature_extractor` (safetensors, reused by fingerprint).

The measure reading these features is :class:`monai_gen.metrics.image.SliceFrechetDistance`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from monai.transforms import ResizeWithPadOrCrop
from monai.utils import convert_to_tensor, look_up_option

from monai_gen.metrics.image_features import ImageFeatureExtractor, cached_feature_extractor

__all__ = ["SLICE_PLANES", "SLICE_PLANE", "SLICE_OFFSET", "SliceSet", "central_slice_indices", "volume_slices",
           "slice_items", "cached_slice_feature_extractor"]

SLICE_PLANES = {"axial": 2, "coronal": 1, "sagittal": 0}
"""Each plane's fixed spatial axis in an RAS volume ``(X, Y, Z)``: axial slices fix Z, coronal Y, sagittal X."""
SLICE_PLANE = "slice_plane"
"""Row key of a slice's plane (one of :data:`SLICE_PLANES`)."""
SLICE_OFFSET = "slice_offset"
"""Row key of a slice's place along its plane's axis: index / (axis length - 1), 0 at the first voxel, 1 at the last."""


class SliceSet(NamedTuple):
    """2D slices ``(M, C, *slice_size)`` and one row per slice (what :func:`cached_feature_extractor` trains on)."""

    items: torch.Tensor
    rows: list[dict[str, Any]]


def central_slice_indices(size: int, n_slices: int | None = 8, slice_step: int = 1) -> list[int]:
    """The indices of the ``n_slices`` central slices, ``slice_step`` apart, of an axis of ``size`` voxels.

    Args:
        size: voxels along the axis.
        n_slices: slices wanted; None = as many as fit ``slice_step`` apart (every slice for a step of 1).
        slice_step: voxels between consecutive slices.

    Raises:
        ValueError: ``n_slices`` or ``slice_step`` below 1, or slices spanning more than the axis.
    """
    step = int(slice_step)
    if step < 1 or (n_slices is not None and int(n_slices) < 1):
        raise ValueError(f"n_slices and slice_step must be >= 1, got n_slices={n_slices!r}, slice_step={slice_step!r}.")
    count = (int(size) - 1) // step + 1 if n_slices is None else int(n_slices)
    span = (count - 1) * step + 1
    if span > size:
        raise ValueError(f"{count} slices {step} voxel(s) apart span {span} voxels, more than the axis's {size}; "
                         "ask for fewer slices or a smaller slice_step.")
    start = (int(size) - span) // 2
    return list(range(start, start + span, step))


def _slice_size(spatial: Sequence[int], slice_size: Sequence[int] | None) -> tuple[int, int]:
    if slice_size is None:  # square of the longest side: every plane of the volume fits uncropped
        return (max(spatial),) * 2
    size = tuple(int(s) for s in slice_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"slice_size must be two positive sizes (voxels), got {slice_size!r}.")
    return size


def volume_slices(
    volumes: torch.Tensor,
    plane: str,
    *,
    n_slices: int | None = 8,
    slice_step: int = 1,
    slice_size: Sequence[int] | None = None,
    pad_value: float = -1000.0,
) -> torch.Tensor:
    """The central slices of ``plane`` of each volume, volume by volume: ``(N, C, X, Y, Z)`` -> ``(N * k, C, *slice_size)``.

    Args:
        volumes: ``(N, C, X, Y, Z)`` in RAS orientation (physical units, e.g. HU).
        plane: ``"axial"`` (slices ``[..., z]``, in-plane ``(X, Y)``), ``"coronal"`` (``[..., y, :]``, ``(X, Z)``) or
            ``"sagittal"`` (``[..., x, :, :]``, ``(Y, Z)``).
        n_slices, slice_step: which slices, see :func:`central_slice_indices`.
        slice_size: in-plane size every slice is padded or cropped to (symmetrically); None = a square of the
            volume's longest side, so the three planes of one volume share a size.
        pad_value: the value padding adds (e.g. -1000 HU, air).

    Raises:
        ValueError: volumes that are not ``(N, C, X, Y, Z)``, an unknown plane, or slices that do not fit the axis.
    """
    volumes = convert_to_tensor(volumes, dtype=torch.float32, track_meta=False)
    if volumes.ndim != 5:
        raise ValueError(f"2.5D slices need volumes (N, C, X, Y, Z), got shape {tuple(volumes.shape)}.")
    dim = 2 + look_up_option(plane, SLICE_PLANES)
    index = torch.as_tensor(central_slice_indices(volumes.shape[dim], n_slices, slice_step))
    slices = volumes.index_select(dim, index).movedim(dim, 1)  # (N, k, C, a, b)
    slices = slices.reshape(-1, *slices.shape[2:])
    size = _slice_size(volumes.shape[2:], slice_size)
    if tuple(slices.shape[2:]) == size:
        return slices
    fitted = ResizeWithPadOrCrop(size, value=float(pad_value))(slices.reshape(-1, *slices.shape[2:]))
    return convert_to_tensor(fitted, track_meta=False).reshape(*slices.shape[:2], *size)


def slice_items(
    items: torch.Tensor,
    rows: Sequence[Mapping[str, Any]],
    *,
    planes: Sequence[str] = tuple(SLICE_PLANES),
    n_slices: int | None = 8,
    slice_step: int = 1,
    slice_size: Sequence[int] | None = None,
    pad_value: float = -1000.0,
) -> SliceSet:
    """The slices of every plane of ``items`` ``(N, C, X, Y, Z)``, with one row per slice: the volume's row plus
    ``slice_plane`` and ``slice_offset`` (plane by plane, volume by volume within a plane).

    Args:
        items: RAS volumes ``(N, C, X, Y, Z)``.
        rows: one row per volume.
        planes: planes to cut (names of :data:`SLICE_PLANES`).
        n_slices, slice_step, slice_size, pad_value: see :func:`volume_slices`.

    Raises:
        ValueError: items and rows differ in number, no plane, or as :func:`volume_slices`.
    """
    if len(items) != len(rows) or not planes:
        raise ValueError(f"slice_items needs one row per volume and at least one plane, got {len(items)} volumes, "
                         f"{len(rows)} rows, planes {list(planes)}.")
    size = _slice_size(items.shape[2:], slice_size)
    stacks, out = [], []
    for plane in planes:
        stacks.append(volume_slices(items, plane, n_slices=n_slices, slice_step=slice_step, slice_size=size,
                                    pad_value=pad_value))
        length = items.shape[2 + look_up_option(plane, SLICE_PLANES)]
        offsets = [i / max(1, length - 1) for i in central_slice_indices(length, n_slices, slice_step)]
        out += [{**row, SLICE_PLANE: plane, SLICE_OFFSET: offset} for row in rows for offset in offsets]
    return SliceSet(torch.cat(stacks), out)


def cached_slice_feature_extractor(
    path: str | os.PathLike,
    cohort: Any,
    *,
    reuse: Sequence[str | os.PathLike] = (),
    planes: Sequence[str] = tuple(SLICE_PLANES),
    n_slices: int | None = 8,
    slice_step: int = 1,
    slice_size: Sequence[int] | None = None,
    pad_value: float = -1000.0,
    continuous: Sequence[str] = (SLICE_OFFSET,),
    categorical: Mapping[str, Sequence[str]] | None = None,
    widths: Sequence[int] = (8, 16, 32, 64),
    max_epochs: int = 20,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> ImageFeatureExtractor:
    """A 2D extractor trained on the slices (:func:`slice_items`) of the real training volumes, or the one saved at
    ``path`` if it was trained on the same slices and settings (:func:`cached_feature_extractor`).

    Its head predicts the slice's plane (with two planes or more), the ``continuous`` conditions of the slice rows
    (``slice_offset`` and any of the volume's, e.g. ``craniocaudal_position``) and the ``categorical`` ones.

    Args:
        path: the safetensors file (e.g. in the evaluation's output folder).
        cohort: the real *training* cohort of volumes ``(N, C, X, Y, Z)`` (its ``items`` and ``rows``).
        reuse: other saved extractors to use when they match (e.g. the bundle's shipped one), see
            :func:`~monai_gen.metrics.image_features.cached_feature_extractor`.
        planes, n_slices, slice_step, slice_size, pad_value: the training slices, see :func:`slice_items`.
        continuous, categorical, widths, max_epochs, batch_size, learning_rate, seed, device: see
            :func:`~monai_gen.metrics.image_features.train_feature_extractor`.
    """
    slices = slice_items(cohort.items, cohort.rows, planes=planes, n_slices=n_slices, slice_step=slice_step,
                         slice_size=slice_size, pad_value=pad_value)
    targets = dict(categorical or {})
    if len(planes) > 1:
        targets[SLICE_PLANE] = list(planes)
    return cached_feature_extractor(path, slices, reuse=reuse, continuous=continuous, categorical=targets,
                                    widths=widths, max_epochs=max_epochs, batch_size=batch_size,
                                    learning_rate=learning_rate, seed=seed, device=device)
