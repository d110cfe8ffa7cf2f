"""Array transforms between a phenotype row and the model's condition tensors."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.transforms import Transform

from .spec import ConditionSet, ConditionSpec

__all__ = ["EncodeConditions", "DecodeConditions", "as_condition_set"]


def as_condition_set(conditions: ConditionSet | str | os.PathLike | Sequence[ConditionSpec | Mapping[str, Any]]) -> ConditionSet:
    """Accept a :class:`ConditionSet`, a path to its JSON, or a list of spec dicts (as a bundle config gives)."""
    if isinstance(conditions, ConditionSet):
        return conditions
    if isinstance(conditions, (str, os.PathLike)):
        return ConditionSet.load(conditions)
    return ConditionSet.from_dict(list(conditions))


class EncodeConditions(Transform):
    """Phenotype row → ``(values, mask)``, float32 ``(P,)`` each (see :mod:`monai_gen.transforms.conditions.spec`).

    Args:
        conditions: the model's :class:`ConditionSet`, its JSON path, or a list of spec dicts.
        one_hot: expand categorical phenotypes to one column per category.

    Raises:
        ValueError: a value out of range or an unknown category (the message names the condition).
    """

    backend = [torch.Tensor]

    def __init__(self, conditions: ConditionSet | str | os.PathLike | Sequence[Any], *, one_hot: bool = False) -> None:
        self.conditions = as_condition_set(conditions)
        self.one_hot = one_hot

    def __call__(self, row: Mapping[str, Any], *, where: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        return self.conditions.encode(row, one_hot=self.one_hot, where=where)


class DecodeConditions(Transform):
    """``(values, mask)`` of one sample → ``{name: physical value or category label, None if masked}``."""

    backend = [torch.Tensor]

    def __init__(self, conditions: ConditionSet | str | os.PathLike | Sequence[Any]) -> None:
        self.conditions = as_condition_set(conditions)

    def __call__(self, values: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, Any]:
        return self.conditions.decode(values, mask)
