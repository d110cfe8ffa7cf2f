"""Dictionary versions of :mod:`monai_gen.transforms.image.array`.

The slicing transforms return a list of dictionaries (one per slice / frame); every item that is not split is
deep-copied into each, and the slice / frame meta (``slice_index``, ``slice_position``, ``frame_index``,
``phase``, ``is_ed``, ``is_es``) is also written as plain entries of the dictionary so that
``list_data_collate`` batches them into tensors ready for conditioning.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from copy import deepcopy
from typing import Any

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.transforms.traits import InvertibleTrait

from monai_gen.transforms.image.array import (
    CARDIAC_PHASE,
    FRAME_INDEX,
    IS_ED,
    IS_ES,
    SLICE_INDEX,
    SLICE_POSITION,
    CheckHounsfieldUnits,
    CheckImageValues,
    CheckVolumeGeometry,
    CineToFrames,
    HounsfieldWindow,
    VolumeToSlices,
    check_label_map_geometry,
)

__all__ = [
    "VolumeToSlicesd", "CineToFramesd", "HounsfieldWindowd", "CheckImageValuesd", "CheckVolumeGeometryd", "CheckHounsfieldUnitsd",
]

_SAMPLE_KEYS = (SLICE_INDEX, SLICE_POSITION, FRAME_INDEX, CARDIAC_PHASE, IS_ED, IS_ES)


def _split(
    d: Mapping[Hashable, Any], keys: list[Hashable], split: Callable[[Any], list[Any]], to_dict: bool
) -> list[dict[Hashable, Any]]:
    """One dictionary per sample: ``split`` applied to every key, the rest deep-copied, sample meta copied."""
    pieces = {key: split(d[key]) for key in keys}
    counts = {key: len(p) for key, p in pieces.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(f"the keys split into different numbers of samples: {counts}; give them the same shape.")
    results = []
    for i in range(next(iter(counts.values()), 0)):
        sample = {k: deepcopy(v) for k, v in d.items() if k not in pieces}
        sample.update({key: p[i] for key, p in pieces.items()})
        first = sample[keys[0]]
        if to_dict and isinstance(first, MetaTensor):
            sample.update({k: first.meta[k] for k in _SAMPLE_KEYS if k in first.meta})
        results.append(sample)
    return results


class VolumeToSlicesd(MapTransform):
    """Dictionary :class:`~monai_gen.transforms.image.array.VolumeToSlices`: every key sliced the same way.

    Args:
        keys: keys of the ``(C, x, y, z)`` volumes (image and label alike).
        axis: spatial axis to slice along.
        indices: slice indices to keep (default all).
        meta_to_dict: also write ``slice_index`` / ``slice_position`` of the first key as dictionary entries.
        allow_missing_keys: do not raise for absent keys.
    """

    backend = VolumeToSlices.backend

    def __init__(
        self,
        keys: KeysCollection,
        axis: int = 2,
        *,
        indices: Sequence[int] | None = None,
        meta_to_dict: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.slicer = VolumeToSlices(axis, indices=indices)
        self.meta_to_dict = meta_to_dict

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> list[dict[Hashable, NdarrayOrTensor]]:
        """A list with one dictionary per slice."""
        return _split(data, list(self.key_iterator(dict(data))), self.slicer, self.meta_to_dict)


class CineToFramesd(MapTransform):
    """Dictionary :class:`~monai_gen.transforms.image.array.CineToFrames`.

    Args:
        keys: keys of the ``(T, x, y, z)`` cines.
        ed_frame: 0-based end-diastolic frame, or None.
        es_frame: 0-based end-systolic frame, or None.
        ed_key: entry of the dictionary holding the 0-based ED frame (overrides ``ed_frame`` when present).
        es_key: entry holding the 0-based ES frame (overrides ``es_frame`` when present).
        slices: slice indices to keep (default all).
        unit_spacing: ``"warn"``, ``"raise"`` or ``"ignore"`` for a cine with 1 mm spacing on every axis.
        meta_to_dict: also write the frame / slice meta of the first key as dictionary entries.
        allow_missing_keys: do not raise for absent keys.
    """

    backend = CineToFrames.backend

    def __init__(
        self,
        keys: KeysCollection,
        ed_frame: int | None = None,
        es_frame: int | None = None,
        *,
        ed_key: Hashable | None = None,
        es_key: Hashable | None = None,
        slices: Sequence[int] | None = None,
        unit_spacing: str = "warn",
        meta_to_dict: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ed_frame, self.es_frame, self.ed_key, self.es_key = ed_frame, es_frame, ed_key, es_key
        self.slices, self.unit_spacing, self.meta_to_dict = slices, unit_spacing, meta_to_dict

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> list[dict[Hashable, NdarrayOrTensor]]:
        """A list with one dictionary per (slice, frame), slice-major."""
        ed = int(data[self.ed_key]) if self.ed_key is not None and self.ed_key in data else self.ed_frame
        es = int(data[self.es_key]) if self.es_key is not None and self.es_key in data else self.es_frame
        splitter = CineToFrames(ed, es, slices=self.slices, unit_spacing=self.unit_spacing)
        return _split(data, list(self.key_iterator(dict(data))), splitter, self.meta_to_dict)


class HounsfieldWindowd(MapTransform, InvertibleTrait):
    """Dictionary :class:`~monai_gen.transforms.image.array.HounsfieldWindow`: HU window mapped to [-1, 1], and its
    explicit :meth:`inverse` (model space back to HU) for generated samples.

    Args:
        keys: keys of the CT images (HU).
        hu_min: HU mapped to -1.
        hu_max: HU mapped to 1.
        dtype: output dtype.
        allow_missing_keys: do not raise for absent keys.
    """

    backend = HounsfieldWindow.backend

    def __init__(
        self,
        keys: KeysCollection,
        hu_min: float = -1000.0,
        hu_max: float = 1000.0,
        *,
        dtype: Any = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.window = HounsfieldWindow(hu_min, hu_max, dtype=dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """``data`` with every key windowed."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.window(d[key])
        return d

    def inverse(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """``data`` with every key mapped from model space back to HU."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.window.inverse(d[key])
        return d


class CheckImageValuesd(MapTransform):
    """Dictionary :class:`~monai_gen.transforms.image.array.CheckImageValues`: every key checked, nothing changed.

    Args:
        keys: keys of the images.
        allow_missing_keys: do not raise for absent keys.
    """

    backend = CheckImageValues.backend

    def __init__(self, keys: KeysCollection, *, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.check = CheckImageValues()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """``data``, unchanged, once every key passed."""
        d = dict(data)
        for key in self.key_iterator(d):
            self.check(d[key])
        return d


class CheckVolumeGeometryd(MapTransform):
    """Dictionary :class:`~monai_gen.transforms.image.array.CheckVolumeGeometry`: every key checked, nothing changed.

    Args:
        keys: keys of the ``(C, x, y, z)`` MetaTensor volumes.
        channels, spacing_mm, spacing_tolerance_mm, foreground_mm, foreground_threshold, mirror_axis: as in
            :class:`~monai_gen.transforms.image.array.CheckVolumeGeometry`.
        allow_missing_keys: do not raise for absent keys.
    """

    backend = CheckVolumeGeometry.backend

    def __init__(
        self,
        keys: KeysCollection,
        channels: int = 1,
        *,
        spacing_mm: Sequence[float] | None = None,
        spacing_tolerance_mm: float = 0.1,
        foreground_mm: Sequence[Sequence[float]] | None = None,
        foreground_threshold: float = 0.1,
        mirror_axis: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.check = CheckVolumeGeometry(
            channels, spacing_mm=spacing_mm, spacing_tolerance_mm=spacing_tolerance_mm, foreground_mm=foreground_mm,
            foreground_threshold=foreground_threshold, mirror_axis=mirror_axis,
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """``data``, unchanged, once every key passed."""
        d = dict(data)
        for key in self.key_iterator(d):
            self.check(d[key])
        return d


class CheckHounsfieldUnitsd(MapTransform):
    """Dictionary :class:`~monai_gen.transforms.image.array.CheckHounsfieldUnits`, and the label maps that go with
    the CT (:func:`~monai_gen.transforms.image.array.check_label_map_geometry`): nothing is changed.

    Args:
        keys: keys of the ``(1, x, y, z)`` CT volumes in HU.
        label_key: key of an organ label map that must lie on the first key's voxel grid (checked when present).
        min_hu_range, max_hu_range: as in :class:`~monai_gen.transforms.image.array.CheckHounsfieldUnits`.
        allow_missing_keys: do not raise for absent keys.
    """

    backend = CheckHounsfieldUnits.backend

    def __init__(
        self,
        keys: KeysCollection,
        *,
        label_key: Hashable | None = None,
        min_hu_range: Sequence[float] = (-3100.0, -900.0),
        max_hu_range: Sequence[float] = (100.0, 32767.0),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.check = CheckHounsfieldUnits(min_hu_range, max_hu_range)
        self.label_key = label_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """``data``, unchanged, once every key passed."""
        d = dict(data)
        keys = list(self.key_iterator(d))
        for key in keys:
            self.check(d[key])
        if self.label_key is not None and self.label_key in d and keys:
            check_label_map_geometry(d[keys[0]], d[self.label_key])
        return d
