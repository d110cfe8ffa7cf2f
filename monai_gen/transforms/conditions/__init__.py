"""Phenotype conditions: specs, table reading, and transforms to the model's ``(values, mask)`` tensors."""

from __future__ import annotations

from .array import DecodeConditions, EncodeConditions, as_condition_set
from .dictionary import EncodeConditionsd
from .spec import ConditionKind, ConditionSet, ConditionSpec, is_missing
from .table import read_condition_table

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
