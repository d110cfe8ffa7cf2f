"""Dictionary transforms for CT volumes: 3D training patches that carry their craniocaudal position.

:class:`CraniocaudalPatchesd` runs a MONAI dictionary crop that returns a dictionary or a list of them
(``RandSpatialCropSamplesd`` for random patches, ``RandCropByLabelClassesd`` to oversample organs, ``SpatialCropd``...;
not ``GridPatchd``, which stacks its patches into one tensor) and writes into each patch's
dictionary where the crop cut it (:func:`~monai_gen.transforms.ct.array.craniocaudal_position` and
:func:`~monai_gen.transforms.ct.array.patch_start` from the patch's and the volume's affines), so the patches become
cohort items with their position as a condition and their label-map location as a reference.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable

from monai_gen.transforms.ct.array import CRANIOCAUDAL_POSITION, PATCH_START, craniocaudal_position, patch_start

__all__ = ["CraniocaudalPatchesd"]


class CraniocaudalPatchesd(MapTransform, Randomizable):
    """Cut patches with a MONAI dictionary crop; give each its craniocaudal position and its start voxel.

    The first of ``keys`` is the reference volume (the CT, a MetaTensor ``(1, x, y, z)``); its affine before and each
    patch's affine after the crop place the patch. Each output dictionary gets ``position_key`` (a float in [0, 1]:
    0 at the volume's most inferior voxel centre, 1 at its most superior one, for the patch's centre voxel) and
    ``start_key`` (the patch's first voxel as ``[i, j, k]`` of the volume).

    A volume that covers only part of the body can be placed on a common scale with ``region_key``: a record field
    ``[low, high]`` (e.g. from a table: where the volume's inferior and superior ends lie on the scale the model is
    conditioned on); the position is then ``low + (high - low) * position``. Without it (or with the field absent or
    None) the position is relative to the volume.

    Args:
        keys: the reference image key (first), e.g. ``"image"``.
        cropper: a MONAI dictionary crop returning a dictionary or a list of them (e.g.
            ``RandSpatialCropSamplesd(["image", "label"], roi_size, num_samples=4, random_size=False)``); it must
            only crop (see :func:`~monai_gen.transforms.ct.array.patch_start`). Its random state is this
            transform's (``set_random_state`` reaches it, so a seeded ``Compose`` cuts the same patches again).
        position_key: key of the craniocaudal position in each output.
        start_key: key of the start voxel in each output.
        region_key: record field holding ``[low, high]`` for the volume, or None.
        allow_missing_keys: do not raise for an absent reference key (the dictionary is cropped without positions).

    Raises:
        ValueError: naming the file: the reference is not a 3D MetaTensor, has no craniocaudal extent, the crop did not
            only crop, or ``region_key``'s value is not two numbers with ``0 <= low < high <= 1``.

    Examples:
        >>> patches = CraniocaudalPatchesd("image", RandSpatialCropSamplesd(["image", "label"], (32, 32, 32),
        ...     num_samples=4, random_size=False))
        >>> [p["craniocaudal_position"] for p in patches({"image": ct, "label": labels})]  # doctest: +SKIP
    """

    def __init__(
        self,
        keys: KeysCollection,
        cropper: Callable[[dict[Hashable, Any]], Any],
        *,
        position_key: str = CRANIOCAUDAL_POSITION,
        start_key: str = PATCH_START,
        region_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not callable(cropper):
            raise TypeError(f"CraniocaudalPatchesd: cropper must be a dictionary transform, got {type(cropper).__name__}.")
        self.cropper, self.position_key, self.start_key, self.region_key = cropper, position_key, start_key, region_key

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> Randomizable:
        super().set_random_state(seed, state)
        if isinstance(self.cropper, Randomizable):
            self.cropper.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        """Nothing to draw here: the cropper draws its own patches."""

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        """One dictionary per patch, each with its position and start voxel."""
        d = dict(data)
        key = next(iter(self.key_iterator(d)), None)
        outputs = self.cropper(d)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        if key is None:
            return outputs
        volume = d[key]
        name = volume.meta.get("filename_or_obj", key) if isinstance(volume, MetaTensor) else key
        if not isinstance(volume, MetaTensor) or volume.ndim != 4:
            raise ValueError(
                f"{name}: CraniocaudalPatchesd needs a 3D MetaTensor (1, x, y, z) with its affine under {key!r} "
                f"(LoadImaged + EnsureChannelFirstd), got {type(volume).__name__} of shape {tuple(volume.shape)}."
            )
        low, high = self._region(d, name)
        for out in outputs:
            patch = out[key]
            try:
                relative = craniocaudal_position(patch.affine, patch.shape[1:], volume.affine, volume.shape[1:])
                out[self.start_key] = patch_start(patch.affine, volume.affine)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from err
            out[self.position_key] = low + (high - low) * relative
        return outputs

    def _region(self, d: Mapping[Hashable, Any], name: Any) -> tuple[float, float]:
        value = d.get(self.region_key) if self.region_key is not None else None
        if value is None:
            return 0.0, 1.0
        try:
            low, high = (float(v) for v in value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: {self.region_key} must be two numbers [low, high], got {value!r}.") from err
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"{name}: {self.region_key} must satisfy 0 <= low < high <= 1, got {value!r}.")
        return low, high


