"""Organ label maps as the spatial condition of a latent CT model.

A request (or a cohort row) names its label map by reference: ``organ_label_file`` (a NIfTI of integer organ labels on the
grid of its CT) and, for a training patch, ``patch_start`` (the patch's first voxel in the preprocessed volume, written
by :class:`~monai_gen.transforms.ct.dictionary.CraniocaudalPatchesd`). :class:`OrganLabelMaps` reads the label map
through the bundle's own volume preprocessing (the same ``Compose`` the CTs go through, so the label voxels are the CT
voxels: same orientation, spacing and padding), cuts the patch, and turns it into one channel per organ holding the
fraction of each latent voxel's image voxels that belong to that organ (average pooling by the autoencoder's
compression). The denoiser gets these channels concatenated to its latent input
(:class:`~monai_gen.networks.conditioning.ConditionalDenoiser` ``spatial_channels``), so a CT can be generated to match
a given segmentation; a request without a label map gets zeros and a mask of 0 (the unconditional input).

Organ label values follow one label scheme across label maps; the bundles here use TotalSegmentator's ``total`` task
(v2 class map: 1 spleen, 2 / 3 kidneys, 5 liver, 6 stomach, 10-14 lung lobes, 18-20 bowel, 25-50 sacrum and vertebrae,
51 heart, 52 aorta, ...). A label map in another scheme says what its values mean with ``organ_label_values``
(``{file value: scheme value}``, e.g. ``{"1": 52}`` for TotalSegmentator's per-class ``aorta.nii.gz`` mask).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.networks.layers.factories import Pool
from monai.transforms import ResizeWithPadOrCrop

from monai_gen.transforms.ct.array import LABEL_FILE, LABEL_VALUES, PATCH_START

__all__ = ["OrganLabelMaps"]


class OrganLabelMaps:
    """Label maps by reference -> label patches ``(1, *patch_size)`` -> organ fractions ``(K, *patch_size / f)``.

    Args:
        organs: organ name -> the label values that belong to it (channel ``k`` is the ``k``-th organ), e.g.
            ``{"liver": [5], "kidney": [2, 3], "vertebra": list(range(25, 51))}``.
        patch_size: spatial size (voxels) of the images the model makes: training patches and generated volumes.
        compression: the autoencoder's spatial compression factor ``f`` (the latent grid is ``patch_size / f``).
        load: the volume preprocessing: ``load({label_key: file})[label_key]`` is the label map on its CT's
            preprocessed grid (the bundle's ``Compose`` with ``allow_missing_keys``, reading the label key only).
        label_key: dictionary key of the label map inside ``load``.
        file_key, start_key: row / request keys of the label file and of the patch's start voxel.
        values_key: row / request key of the file's value map ``{file value: scheme value}`` (JSON keys may be
            strings); absent or None = the file's values are the scheme's.
        label_file: the label map used for a request that names none (a user's segmentation in an inference
            config); None = such requests are unconditioned.
        label_values: the value map of ``label_file`` (e.g. ``{1: 52}`` for a binary aorta mask); None = the scheme's.
        cache_size: label volumes kept in memory (least recently used first out).

    Raises:
        ValueError: no organs, an organ without label values, a value in two organs, a patch size not divisible by
            ``compression``, a value map that is not whole non-negative numbers.

    Examples:
        >>> maps = OrganLabelMaps({"liver": [5], "spleen": [1]}, patch_size=(32, 32, 32), compression=4, load=prep)
        >>> cond = maps([{"organ_label_file": "seg.nii.gz", "patch_start": [10, 20, 0]}, {}])  # doctest: +SKIP
        >>> cond["spatial_condition"].shape, cond["spatial_condition_mask"].tolist()  # doctest: +SKIP
        (torch.Size([2, 2, 8, 8, 8]), [1.0, 0.0])
    """

    def __init__(
        self,
        organs: Mapping[str, Sequence[int]],
        *,
        patch_size: Sequence[int],
        compression: int,
        load: Callable[[dict[str, Any]], Mapping[str, Any]],
        label_key: str = "label",
        file_key: str = LABEL_FILE,
        start_key: str = PATCH_START,
        values_key: str = LABEL_VALUES,
        label_file: str | None = None,
        label_values: Mapping[Any, Any] | None = None,
        cache_size: int = 8,
    ) -> None:
        self.organs = {str(k): [int(v) for v in values] for k, values in dict(organs).items()}
        self._check_organs()
        self.patch_size = tuple(int(s) for s in patch_size)
        self.compression = int(compression)
        if self.compression < 1 or any(s % self.compression for s in self.patch_size):
            raise ValueError(
                f"OrganLabelMaps: patch_size {list(self.patch_size)} must be divisible by the compression factor "
                f"{compression} along every axis."
            )
        self.load, self.label_key, self.file_key, self.start_key = load, label_key, file_key, start_key
        self.values_key, self.label_file, self.cache_size = values_key, label_file, int(cache_size)
        self.label_values = _value_map(label_values, where="label_values")
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._affines: dict[str, np.ndarray] = {}

    def _check_organs(self) -> None:
        if not self.organs:
            raise ValueError("OrganLabelMaps: organs must name at least one organ with its label values.")
        seen: dict[int, str] = {}
        for name, values in self.organs.items():
            if not values:
                raise ValueError(f"OrganLabelMaps: organ {name!r} has no label values.")
            for value in values:
                if value in seen:
                    raise ValueError(f"OrganLabelMaps: label value {value} is in both {seen[value]!r} and {name!r}.")
                seen[value] = name

    @property
    def names(self) -> list[str]:
        """The organ names, in channel order."""
        return list(self.organs)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """``(K, *patch_size / f)``: the spatial condition of one sample."""
        return (len(self.organs), *(s // self.compression for s in self.patch_size))

    def organ_masks(self, labels: torch.Tensor) -> torch.Tensor:
        """``(B, 1, *spatial)`` integer labels -> ``(B, K, *spatial)`` float32 masks, 1 where a voxel is organ ``k``."""
        labels = torch.as_tensor(labels)
        if labels.ndim < 3 or labels.shape[1] != 1:
            raise ValueError(f"label maps must be (B, 1, *spatial), got shape {tuple(labels.shape)}.")
        masks = [torch.isin(labels[:, 0], torch.tensor(v, device=labels.device)) for v in self.organs.values()]
        return torch.stack(masks, dim=1).float()

    def encode(self, labels: torch.Tensor) -> torch.Tensor:
        """``(B, 1, *spatial)`` label maps -> ``(B, K, *spatial / f)``: each organ's voxel fraction per latent voxel."""
        masks = self.organ_masks(labels)
        pool = Pool[Pool.AVG, masks.ndim - 2](kernel_size=self.compression, stride=self.compression)
        if any(s % self.compression for s in masks.shape[2:]):
            raise ValueError(
                f"label maps of spatial size {tuple(masks.shape[2:])} are not divisible by the compression factor "
                f"{self.compression}."
            )
        return pool(masks)

    def volume(self, file: str) -> torch.Tensor:
        """The label map ``(1, x, y, z)`` of ``file`` on its CT's preprocessed grid (cached)."""
        file = str(file)
        if file in self._cache:
            self._cache.move_to_end(file)
            return self._cache[file]
        labels = self.load({self.label_key: file})[self.label_key]
        values = np.asarray(torch.as_tensor(labels).detach().cpu())
        if labels.ndim != 4 or labels.shape[0] != 1:
            raise ValueError(f"label map {file}: expected one channel of a 3D volume, got shape {tuple(labels.shape)}.")
        if values.min() < 0 or not np.array_equal(values, np.round(values)):
            raise ValueError(f"label map {file}: labels must be whole non-negative numbers (resampled with 'nearest').")
        volume = torch.as_tensor(values.astype(np.int64))
        self._affines[file] = np.asarray(getattr(labels, "affine", torch.eye(4)), dtype=np.float64)
        self._cache[file] = volume
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return volume

    def affine(self, file: str | None = None) -> np.ndarray:
        """The voxel-to-world (RAS, mm) affine ``(4, 4)`` of the volume generated for ``file`` (default: ``label_file``):
        the preprocessed label map centre-cropped / padded to ``patch_size``, as :meth:`patch` cuts it without a start,
        so a CT generated for a segmentation overlays it in a viewer.

        Raises:
            ValueError: no file given and no ``label_file``.
        """
        file = file or self.label_file
        if file is None:
            raise ValueError("OrganLabelMaps.affine: no label map given and no label_file set.")
        volume = self.volume(file)
        placed = ResizeWithPadOrCrop(self.patch_size)(MetaTensor(volume.float(), affine=self._affines[str(file)]))
        return np.asarray(placed.affine, dtype=np.float64)

    def patch(self, row: Mapping[str, Any]) -> torch.Tensor | None:
        """The label patch ``(1, *patch_size)`` a row / request refers to, or None when it names no label map.

        With ``start_key`` the patch starts at that voxel of the preprocessed label volume; without it the whole
        volume is centre-cropped or padded (background) to ``patch_size`` (a user's segmentation to generate for).

        A row's value map (``values_key``; ``label_values`` for ``label_file``) turns the file's values into the
        scheme's.

        Raises:
            ValueError: naming the file: the patch does not fit inside the label volume, or the file holds a non-zero
                value its value map does not name.
        """
        file = row.get(self.file_key)
        values = _value_map(row.get(self.values_key), where=f"{self.values_key} of {file}") if file else self.label_values
        file = file or self.label_file
        if file is None:
            return None
        volume = _relabel(self.volume(file), values, file)
        start = row.get(self.start_key)
        if start is None:
            return torch.as_tensor(ResizeWithPadOrCrop(self.patch_size)(volume.float())).long()
        start = [int(s) for s in start]
        spatial = volume.shape[1:]
        if len(start) != len(spatial) or any(
            s < 0 or s + p > n for s, p, n in zip(start, self.patch_size, spatial, strict=True)
        ):
            raise ValueError(
                f"label map {file}: a patch of {list(self.patch_size)} voxels at {start} does not fit inside its "
                f"preprocessed volume of {list(spatial)} voxels; was it cut with another patch size or preprocessing?"
            )
        return volume[(slice(None), *(slice(s, s + p) for s, p in zip(start, self.patch_size, strict=True)))]

    def conditions(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """``{"spatial_condition": (B, K, *latent), "spatial_condition_mask": (B,)}`` for rows / requests."""
        spatial = torch.zeros(len(rows), *self.latent_shape)
        mask = torch.zeros(len(rows))
        for i, row in enumerate(rows):
            patch = self.patch(row)
            if patch is not None:
                spatial[i] = self.encode(patch[None])[0]
                mask[i] = 1.0
        return {"spatial_condition": spatial, "spatial_condition_mask": mask}

    def __call__(self, requests: Sequence[Any]) -> dict[str, torch.Tensor]:
        """:meth:`conditions` of generation requests (:class:`~monai_gen.engines.requests.SampleRequest` or rows)."""
        return self.conditions([getattr(r, "conditions", r) for r in requests])

    def training_items(self, items: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> list[dict]:
        """``items`` (e.g. :func:`~monai_gen.engines.cohort.training_items`) with each row's spatial condition added."""
        if len(items) != len(rows):
            raise ValueError(f"training_items: {len(items)} items but {len(rows)} rows.")
        out = []
        for item, row in zip(items, rows, strict=True):
            cond = self.conditions([row])
            out.append({**item, **{k: v[0] for k, v in cond.items()}})
        return out




def _value_map(values: Mapping[Any, Any] | None, *, where: str) -> dict[int, int] | None:
    """``{file value: scheme value}`` with whole non-negative numbers (JSON string keys accepted), or None."""
    if values is None:
        return None
    try:
        mapped = {int(k): int(v) for k, v in dict(values).items()}
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: expected {{file value: scheme value}} of whole numbers, got {values!r}.") from err
    if any(k < 0 or v < 0 for k, v in mapped.items()):
        raise ValueError(f"{where}: label values must be non-negative, got {values!r}.")
    return mapped


def _relabel(volume: torch.Tensor, values: Mapping[int, int] | None, file: str) -> torch.Tensor:
    """``volume`` with each file value replaced by its scheme value (0 stays background unless mapped)."""
    if values is None:
        return volume
    present = set(torch.unique(volume).tolist()) - {0}
    unnamed = sorted(present - set(values))
    if unnamed:
        raise ValueError(
            f"label map {file}: its value map {dict(values)} does not say what the values {unnamed} mean in the "
            "bundle's label scheme; name every non-zero value."
        )
    lookup = torch.zeros(int(volume.max()) + 1, dtype=volume.dtype)
    for source, target in values.items():
        if source < lookup.numel():
            lookup[source] = target
    return lookup[volume]
