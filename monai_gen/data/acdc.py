"""ACDC cine studies: each patient's ``Info.cfg`` (ED / ES frames, group, height, weight) as a checked record.

ACDC (Bernard et al., IEEE TMI 2018) ships one folder per patient: ``patientNNN_4d.nii.gz``, a short-axis cine
``(x, y, slice, time)``, and ``Info.cfg``, lines ``Key: value`` with ``ED``, ``ES`` (1-based frame numbers),
``Group`` (DCM, HCM, MINF, NOR, RV), ``Height`` (cm), ``Weight`` (kg) and ``NbFrame``. :func:`acdc_records` turns
a folder of them into the record dictionaries a bundle's cohort reads (image path, subject id, conditions), after
checking every field and the cine's own frame count in its NIfTI header, so a malformed study fails while the
table is read, naming the file and the field.

Some redistributed ACDC copies lost their voxel spacing: their header records 1 x 1 x 1 with the spatial unit
unknown. Such a cine has no physical pixel size; :func:`acdc_records` says so and, as asked, stops, leaves it out or
keeps it with ``spacing_mm`` None, never inventing one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib

from monai_gen.engines.cohort import SUBJECT_KEY
from monai_gen.transforms.conditions import ConditionSet

__all__ = ["ACDC_GROUPS", "HEIGHT_RANGE_CM", "WEIGHT_RANGE_KG", "MISSING_SPACING", "read_acdc_info", "acdc_records"]

logger = logging.getLogger(__name__)

ACDC_GROUPS = ("DCM", "HCM", "MINF", "NOR", "RV")
"""Dilated / hypertrophic cardiomyopathy, myocardial infarction, normal, abnormal right ventricle."""

HEIGHT_RANGE_CM = (50.0, 250.0)
WEIGHT_RANGE_KG = (10.0, 300.0)
_REQUIRED = ("ED", "ES", "Group", "Height", "Weight", "NbFrame")
MISSING_SPACING = ("error", "skip", "keep")
"""What :func:`acdc_records` does with a cine whose voxel spacing was not recorded."""


def read_acdc_info(path: str | os.PathLike) -> dict[str, Any]:
    """One patient's ``Info.cfg`` as checked values.

    Returns:
        ``{"group": str, "height_cm": float, "weight_kg": float, "bmi": float (kg/m^2), "num_frames": int,
        "ed_frame": int, "es_frame": int}``, the frames 0-based (ACDC counts from 1).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a field is missing, repeated or malformed, the group is not an ACDC group, height or weight lie
            outside :data:`HEIGHT_RANGE_CM` / :data:`WEIGHT_RANGE_KG`, or ED / ES lie outside ``1..NbFrame``; the
            message names the file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ACDC info file {path} does not exist.")
    fields: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or key.strip() in fields:
            problem = "is not 'Key: value'" if not sep else f"repeats {key.strip()!r}"
            raise ValueError(f"{path}, line {number} {problem}: {line!r}.")
        fields[key.strip()] = value.strip()
    missing = [key for key in _REQUIRED if not fields.get(key)]
    if missing:
        raise ValueError(f"{path} has no value for {missing} (an ACDC Info.cfg holds {list(_REQUIRED)}).")
    frames = _number(fields, "NbFrame", path, whole=True)
    height, weight = _number(fields, "Height", path), _number(fields, "Weight", path)
    for name, value, (low, high), unit in (
        ("Height", height, HEIGHT_RANGE_CM, "cm"),
        ("Weight", weight, WEIGHT_RANGE_KG, "kg"),
    ):
        if not low <= value <= high:
            raise ValueError(f"{path}: {name} = {value:g} {unit} is outside the plausible range {low:g}-{high:g} {unit}.")
    if frames < 2:
        raise ValueError(f"{path}: NbFrame = {frames}; a cine has at least 2 frames.")
    ed, es = (_number(fields, key, path, whole=True) for key in ("ED", "ES"))
    for name, frame in (("ED", ed), ("ES", es)):
        if not 1 <= frame <= frames:
            raise ValueError(f"{path}: {name} = {frame} is outside the cine's frames 1..{frames} (NbFrame).")
    group = fields["Group"].upper()
    if group not in ACDC_GROUPS:
        raise ValueError(f"{path}: Group = {fields['Group']!r} is not one of the ACDC groups {list(ACDC_GROUPS)}.")
    return {
        "group": group,
        "height_cm": height,
        "weight_kg": weight,
        "bmi": weight / (height / 100.0) ** 2,
        "num_frames": frames,
        "ed_frame": ed - 1,
        "es_frame": es - 1,
    }


def acdc_records(
    folder: str | os.PathLike,
    *,
    patients: Sequence[str] | None = None,
    conditions: ConditionSet | Sequence[Mapping[str, Any]] | None = None,
    missing_spacing: str = "error",
    file_key: str = "image",
    subject_key: str = SUBJECT_KEY,
) -> list[dict[str, Any]]:
    """Record dictionaries of the ACDC patients in ``folder``: ``{file_key: cine path, subject_key: id, ...}``.

    Each record holds :func:`read_acdc_info`'s fields and ``spacing_mm``, the recorded ``(x, y, slice)`` voxel
    size (None when the header records none). The cine's NIfTI header (not its voxels) is read to check it is 4D
    with ``NbFrame`` frames.

    Args:
        folder: holds ``patientNNN/`` folders, each with ``Info.cfg`` and ``patientNNN_4d.nii.gz``.
        patients: the patient ids to take (default every ``patient*`` folder, sorted).
        conditions: the model's conditions; the fields named like one (``group``, ``bmi``) are checked against it.
        missing_spacing: one of :data:`MISSING_SPACING` for a cine without a recorded voxel spacing: raise, leave the
            patient out (logged, naming them), or keep it with ``spacing_mm`` None.
        file_key, subject_key: dictionary keys of the cine file and the patient id.

    Raises:
        FileNotFoundError: ``folder``, a patient folder, its ``Info.cfg`` or its cine is missing.
        ValueError: no patient folder; a malformed ``Info.cfg`` (see :func:`read_acdc_info`); a cine that is not 4D
            or whose frame count differs from ``NbFrame``; a value the model's conditions reject; a cine without a
            recorded spacing (``missing_spacing="error"``); no patient left.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"ACDC folder {folder} does not exist.")
    ids = sorted(p.name for p in folder.glob("patient*") if p.is_dir()) if patients is None else list(patients)
    if not ids:
        raise ValueError(f"ACDC folder {folder} holds no patient* folders.")
    if missing_spacing not in MISSING_SPACING:
        raise ValueError(f"acdc_records: missing_spacing must be one of {list(MISSING_SPACING)}, got {missing_spacing!r}.")
    specs = conditions if conditions is None or isinstance(conditions, ConditionSet) else ConditionSet(conditions)
    records, without_spacing = [], []
    for patient in ids:
        info = read_acdc_info(folder / patient / "Info.cfg")
        cine = folder / patient / f"{patient}_4d.nii.gz"
        spacing = _recorded_spacing(cine, info["num_frames"])
        if specs is not None:
            for name in set(specs.names) & set(info):
                specs[name].canonical_value(info[name], where=f"{folder / patient / 'Info.cfg'} ({name})")
        if spacing is None:
            without_spacing.append(patient)
            if missing_spacing == "error":
                raise ValueError(
                    f"{cine} records no voxel spacing (1 x 1 x 1, spatial unit unknown): its pixel size is unknown. "
                    "Leave it out (missing_spacing='skip') or keep it without a spacing (missing_spacing='keep')."
                )
            if missing_spacing == "skip":
                continue
        records.append({file_key: str(cine), subject_key: patient, **info, "spacing_mm": spacing})
    if without_spacing:
        done = "left out" if missing_spacing == "skip" else "kept without a spacing"
        logger.warning("%d ACDC cine(s) record no voxel spacing, %s: %s", len(without_spacing), done, without_spacing)
    if not records:
        raise ValueError(f"no ACDC patient of {folder} is left ({len(without_spacing)} without a recorded spacing).")
    return records


def _number(fields: Mapping[str, str], key: str, path: Path, *, whole: bool = False) -> Any:
    text = fields[key]
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}: {key} = {text!r} is not a number.") from None
    if whole:
        if not value.is_integer():
            raise ValueError(f"{path}: {key} = {text!r} is not a whole number of frames.")
        return int(value)
    return value


def _recorded_spacing(path: Path, frames: int) -> tuple[float, float, float] | None:
    """The cine's ``(x, y, slice)`` voxel size in mm from its header (None when unrecorded), after checking that it
    is 4D with ``frames`` frames."""
    if not path.is_file():
        raise FileNotFoundError(f"ACDC cine {path} does not exist.")
    header = nib.load(path).header
    shape = header.get_data_shape()
    if len(shape) != 4 or shape[3] < 2:
        raise ValueError(f"{path} has shape {tuple(shape)}: a cine is 4D (x, y, slice, time) with at least 2 frames.")
    if shape[3] != frames:
        raise ValueError(f"{path} has {shape[3]} frames but its Info.cfg says NbFrame = {frames}.")
    zooms = tuple(float(z) for z in header.get_zooms()[:3])
    if header.get_xyzt_units()[0] == "unknown" and zooms == (1.0, 1.0, 1.0):
        return None
    return zooms
