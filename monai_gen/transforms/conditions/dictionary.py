"""Dictionary transform that adds the condition tensors to a MONAI data dict."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.data import MetaTensor
from monai.transforms import Transform

from .array import EncodeConditions
from .spec import ConditionSet

__all__ = ["EncodeConditionsd"]


class EncodeConditionsd(Transform):
    """Add ``values_key`` / ``mask_key`` tensors encoding the phenotypes found in the data dict.

    Each condition is looked up by name in the data dict first, then in the metadata of the MetaTensor under
    each of ``meta_keys`` (e.g. an ECG's ``age`` / ``sex`` from its header). A condition found nowhere is
    missing (masked), unless ``allow_missing_conditions`` is False. (A plain ``Transform`` rather than a
    ``MapTransform``: it reads many keys and writes two, and may have no metadata key at all.)

    Args:
        conditions: the model's :class:`ConditionSet`, its JSON path, or a list of spec dicts.
        meta_keys: data-dict keys of MetaTensors whose ``meta`` may hold phenotypes.
        values_key, mask_key: where the ``(P,)`` tensors are written.
        one_hot: expand categorical phenotypes to one column per category.
        allow_missing_conditions: if False, a condition absent from the dict and metadata is an error.

    Raises:
        ValueError: an invalid value, or a missing condition when not allowed; the message names the item's
            ``filename_or_obj`` when the metadata has one.
    """

    backend = EncodeConditions.backend

    def __init__(
        self,
        conditions: ConditionSet | str | os.PathLike | Sequence[Any],
        *,
        meta_keys: Sequence[Hashable] = (),
        values_key: str = "conditions",
        mask_key: str = "condition_mask",
        one_hot: bool = False,
        allow_missing_conditions: bool = True,
    ) -> None:
        self.meta_keys = list(meta_keys)
        self.encoder = EncodeConditions(conditions, one_hot=one_hot)
        self.values_key, self.mask_key = values_key, mask_key
        self.allow_missing_conditions = allow_missing_conditions

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        row, where = {}, ""
        for key in self.meta_keys:
            if isinstance(d.get(key), MetaTensor):
                row.update({k: v for k, v in d[key].meta.items() if k in self.encoder.conditions.names})
                where = where or str(d[key].meta.get("filename_or_obj", ""))
        row.update({name: d[name] for name in self.encoder.conditions.names if name in d})
        absent = [name for name in self.encoder.conditions.names if name not in row]
        if absent and not self.allow_missing_conditions:
            raise ValueError(f"{where or 'data item'}: conditions {absent} are neither in the data dict nor in its metadata.")
        d[self.values_key], d[self.mask_key] = self.encoder(row, where=where)
        return d

