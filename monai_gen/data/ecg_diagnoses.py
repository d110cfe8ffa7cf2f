"""Diagnosis labels of an ECG record from its header: left ventricular hypertrophy, left axis deviation, atrial
fibrillation, each ``"yes"`` / ``"no"``, or None when the record carries no diagnosis labels at all.

Two labelling conventions are read (both kept in the ECG meta by :class:`~monai_gen.data.ecg_readers.WFDBReader`):

- PhysioNet/CinC 2020-2021 ``Dx:`` SNOMED-CT codes (``dx_codes``). A record's codes are its whole label set, so a
  code's absence reads as ``"no"``.
- LUDB's diagnosis statements in words (``diagnoses``: ``Rhythm: Atrial fibrillation.``, ``Electric axis of the
  heart: left axis deviation.``, ``Left ventricular hypertrophy.``). Cardiologists wrote every statement that
  applies, so an absent one reads as ``"no"``; the axis is unknown (None) when the record has no axis statement.

A record with neither (CPSC 2018 ``.mat``, PTB's free-text clinical summary) has every label None: the model sees
its null token, never a guessed ``"no"``.

Examples:
    >>> diagnosis_labels({"dx_codes": ["164873001", "426783006"]})
    {'lvh': 'yes', 'left_axis_deviation': 'no', 'atrial_fibrillation': 'no'}
    >>> diagnosis_labels({"diagnoses": ["Rhythm: Atrial fibrillation.", "Electric axis of the heart: normal."]})
    {'lvh': 'no', 'left_axis_deviation': 'no', 'atrial_fibrillation': 'yes'}
    >>> diagnosis_labels({})
    {'lvh': None, 'left_axis_deviation': None, 'atrial_fibrillation': None}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monai_gen.data.ecg_meta import DIAGNOSES, DX_CODES

__all__ = ["DiagnosisLabel", "DIAGNOSIS_LABELS", "LABEL_CATEGORIES", "diagnosis_labels"]

LABEL_CATEGORIES = ("no", "yes")
"""The categories of every diagnosis condition, in the order the bundle's metadata declares them."""


@dataclass(frozen=True)
class DiagnosisLabel:
    """One diagnosis: its SNOMED-CT codes (CinC) and the LUDB statement words that mean it.

    Attributes:
        snomed: codes any one of which means ``"yes"``.
        words: lower-case phrases any one of which, inside a LUDB statement, means ``"yes"``.
        topic: lower-case phrase a LUDB statement must contain for the label to be known at all (the axis is
            stated in its own line, sometimes left out); empty when any diagnosis list settles the label.
    """

    snomed: tuple[str, ...]
    words: tuple[str, ...]
    topic: str = ""


DIAGNOSIS_LABELS: dict[str, DiagnosisLabel] = {
    "lvh": DiagnosisLabel(snomed=("164873001",), words=("left ventricular hypertrophy",)),
    "left_axis_deviation": DiagnosisLabel(
        snomed=("39732003",), words=("left axis deviation",), topic="electric axis of the heart"
    ),
    "atrial_fibrillation": DiagnosisLabel(snomed=("164889003",), words=("atrial fibrillation",)),
}
"""The diagnosis conditions the ECG bundle declares, by condition name."""


def diagnosis_labels(meta: Mapping[str, Any]) -> dict[str, str | None]:
    """``{name: "yes" | "no" | None}`` for every label of :data:`DIAGNOSIS_LABELS`, from an ECG's meta.

    Args:
        meta: an ECG MetaTensor's meta (or any mapping) holding ``dx_codes`` and / or ``diagnoses``.
    """
    codes = {str(c).strip() for c in meta.get(DX_CODES) or ()}
    statements = [str(s).lower() for s in meta.get(DIAGNOSES) or ()]
    labels: dict[str, str | None] = {}
    for name, label in DIAGNOSIS_LABELS.items():
        if codes:
            labels[name] = LABEL_CATEGORIES[bool(codes & set(label.snomed))]
        elif statements and (not label.topic or any(label.topic in s for s in statements)):
            labels[name] = LABEL_CATEGORIES[any(w in s for s in statements for w in label.words)]
        else:
            labels[name] = None
    return labels
