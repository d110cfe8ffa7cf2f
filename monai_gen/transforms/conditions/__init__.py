"""Phenotype conditions: specs, table reading, and transforms to the model's ``(values, mask)`` tensors.

The transforms (``array`` / ``dictionary``, which import MONAI and torch) load on first use, so the command line can
read a bundle's conditions without importing them.
"""

from __future__ import annotations

import importlib
from typing import Any

from .spec import ConditionKind, ConditionSet, ConditionSpec, is_missing
from .table import read_condition_table

_LAZY = {
    "EncodeConditions": ".array",
    "DecodeConditions": ".array",
    "as_condition_set": ".array",
    "EncodeConditionsd": ".dictionary",
}

__all__ = [
    "ConditionKind",
    "ConditionSpec",
    "ConditionSet",
    "is_missing",
    "read_condition_table",
    "EncodeConditions",
    "DecodeConditions",
    "EncodeConditionsd",
    "as_condition_set",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
