"""CT patch geometry: where a 3D patch lies in its volume, as a craniocaudal position and as a voxel offset.

A patch cut from a volume by a MONAI crop (``RandSpatialCropSamples``, ``GridPatch``, ``RandCropByLabelClasses``...)
keeps a MetaTensor affine whose axes are the volume's and whose translation is the world position of its first voxel.
These functions read the patch's place back from the two affines, so no crop transform has to be rewritten to report
where it cut.

The craniocaudal position runs along the world S axis (the third world axis of RAS and of LPS alike): 0 at the most
inferior voxel centre of the volume, 1 at the most superior one, the patch's centre voxel in between. It is relative
to the volume the crop saw (a user whose volumes cover different body regions can map it to the body with a table
column, see :class:`~monai_gen.transforms.ct.dictionary.CraniocaudalPatchesd`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from monai_gen.data.ct_records import LABEL_FILE, LABEL_VALUES

__all__ = ["CRANIOCAUDAL_POSITION", "PATCH_START", "LABEL_FILE", "LABEL_VALUES", "craniocaudal_position", "patch_start"]

CRANIOCAUDAL_POSITION = "craniocaudal_position"
"""Row / dictionary key of a patch's craniocaudal position in [0, 1] (0 inferior, 1 superior)."""
PATCH_START = "patch_start"
"""Row / dictionary key of a patch's first voxel as a voxel index ``[i, j, k]`` of the volume it was cut from."""

_S_AXIS = 2  # superior is +z in RAS and in LPS


def _affine(affine: np.ndarray | torch.Tensor) -> np.ndarray:
    return np.asarray(torch.as_tensor(affine).detach().cpu(), dtype=np.float64)


def _s_range(affine: np.ndarray, shape: Sequence[int]) -> tuple[float, float]:
    """Lowest and highest world S coordinate (mm) of the voxel centres of a grid: an affine map, so at its corners."""
    corners = np.array(np.meshgrid(*[[0, int(n) - 1] for n in shape], indexing="ij")).reshape(len(shape), -1)
    s = affine[_S_AXIS, :3] @ corners + affine[_S_AXIS, 3]
    return float(s.min()), float(s.max())


def craniocaudal_position(
    patch_affine: np.ndarray | torch.Tensor,
    patch_shape: Sequence[int],
    volume_affine: np.ndarray | torch.Tensor,
    volume_shape: Sequence[int],
) -> float:
    """Craniocaudal position in [0, 1] of a patch's centre within its volume (0: most inferior voxel, 1: most superior).

    Args:
        patch_affine, volume_affine: ``(4, 4)`` voxel-to-world affines (mm, RAS or LPS).
        patch_shape, volume_shape: spatial shapes ``(x, y, z)``.

    Raises:
        ValueError: the volume has no extent along S (one axial slice: no craniocaudal axis to place a patch on).
    """
    patch, volume = _affine(patch_affine), _affine(volume_affine)
    low, high = _s_range(volume, volume_shape)
    if high - low < 1e-6:
        raise ValueError(
            f"a volume of shape {tuple(volume_shape)} has no extent along the craniocaudal (S) axis, so a patch has no "
            "craniocaudal position; give a 3D CT that spans several axial slices."
        )
    centre = np.append((np.asarray(patch_shape, dtype=np.float64) - 1) / 2, 1.0)
    return float(np.clip(((patch @ centre)[_S_AXIS] - low) / (high - low), 0.0, 1.0))


def patch_start(
    patch_affine: np.ndarray | torch.Tensor, volume_affine: np.ndarray | torch.Tensor, *, tolerance: float = 1e-3
) -> list[int]:
    """The voxel index ``[i, j, k]`` of the volume at which the patch's first voxel lies.

    Raises:
        ValueError: the patch is not a crop of the volume's grid (other voxel axes, or an offset that is not a whole
            number of voxels: the transform resampled instead of cropping).
    """
    patch, volume = _affine(patch_affine), _affine(volume_affine)
    if not np.allclose(patch[:3, :3], volume[:3, :3], atol=tolerance):
        raise ValueError(
            f"the patch's voxel axes {np.round(patch[:3, :3], 4).tolist()} differ from its volume's "
            f"{np.round(volume[:3, :3], 4).tolist()}: the transform did not only crop."
        )
    index = np.linalg.solve(volume[:3, :3], patch[:3, 3] - volume[:3, 3])
    if np.abs(index - np.round(index)).max() > tolerance:
        raise ValueError(f"the patch starts at voxel {np.round(index, 4).tolist()} of its volume, not on a voxel.")
    return [int(v) for v in np.round(index)]
