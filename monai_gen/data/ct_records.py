"""Record dictionaries of a folder of CT volumes (NIfTI files or DICOM series folders), with their organ label maps.

The first-class path for a user's own CTs: point :func:`ct_records` at a folder that holds one CT per NIfTI file
(``.nii`` / ``.nii.gz``) or per subfolder of DICOM files (one series), and optionally at a folder of label maps named
after the CTs (``<stem>_seg.nii.gz``). The records feed a CT bundle's preprocessing ``Compose``: ``LoadImaged`` with
:class:`~monai_gen.data.dicom_series.DICOMSeriesReader` as its reader reads both kinds, and the input checks
(:class:`~monai_gen.transforms.image.CheckHounsfieldUnitsd` with its label-map grid check) reject what is not a 3D CT
in HU or a label map off its CT's voxel grid, naming the file. :func:`add_label_maps` adds label maps to records made
another way (e.g. :func:`~monai_gen.engines.cohort.records_from_table` for a table with age and sex).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pydicom

__all__ = ["LABEL_FILE", "LABEL_VALUES", "NIFTI_SUFFIXES", "ct_records", "add_label_maps", "ct_stem"]

LABEL_FILE = "organ_label_file"
"""Record / row key of the organ label map file that goes with a CT (None: no label map). Not ``label_file``: MONAI's
``Spacingd`` takes every key that starts with ``<key>_`` for a meta dictionary of ``<key>`` (here ``label``)."""
LABEL_VALUES = "organ_label_values"
"""Record / row key of what the label map's own values mean in the bundle's label scheme, ``{file value: scheme value}``
(e.g. ``{"1": 52}`` for a binary aorta mask in TotalSegmentator's ``total`` scheme); None: the file uses the scheme."""
NIFTI_SUFFIXES = (".nii.gz", ".nii")
logger = logging.getLogger(__name__)


def ct_stem(path: str | os.PathLike) -> str:
    """A CT's name without its NIfTI suffix (``case_01.nii.gz`` -> ``case_01``); a DICOM folder's name."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_dicom_folder(folder: Path) -> bool:
    return any(f.is_file() and pydicom.misc.is_dicom(f) for f in sorted(folder.iterdir()))


def ct_records(
    folder: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    label_suffix: str = "_seg",
    subjects: Mapping[str, str] | None = None,
    image_key: str = "image",
    label_key: str = "label",
    subject_key: str = "subject_id",
) -> list[dict[str, Any]]:
    """One record per CT in ``folder``: ``{image_key: path, subject_key: id, LABEL_FILE: label path or None}``.

    Args:
        folder: holds the CTs: NIfTI files and / or subfolders of one DICOM series each (other files are ignored).
        labels: folder of label maps: CT ``<stem>`` pairs with ``<stem><label_suffix>.nii.gz`` (or ``.nii``) there,
            which also goes under ``label_key``; CTs without one get ``LABEL_FILE: None``. None: no label maps.
        label_suffix: what a label map's name adds to its CT's stem.
        subjects: CT stem -> subject id, for several CTs of one subject (kept on the same side of a split); a CT not
            listed is its own subject (its stem).
        image_key, label_key, subject_key: record keys.

    Returns:
        The records, sorted by CT name.

    Raises:
        FileNotFoundError: ``folder`` or ``labels`` does not exist.
        ValueError: naming the path: no CT in ``folder``, a subfolder holding no DICOM file, two CTs with one stem,
            or a ``subjects`` entry naming no CT.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"CT folder {folder} does not exist.")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_dir() and not _is_dicom_folder(path):
            raise ValueError(f"{path}: a subfolder of the CT folder must hold one DICOM series; it holds no DICOM file.")
        if not (path.is_dir() or path.name.lower().endswith(NIFTI_SUFFIXES)):
            continue
        stem = ct_stem(path)
        if stem in found:
            raise ValueError(f"{found[stem]} and {path} have the same name {stem!r}; give each CT its own name.")
        found[stem] = path
    if not found:
        raise ValueError(f"CT folder {folder} holds no NIfTI file (.nii, .nii.gz) and no DICOM series folder.")
    unknown = sorted(set(subjects or {}) - set(found))
    if unknown:
        raise ValueError(f"subjects names CTs {unknown} that {folder} does not hold (it holds {sorted(found)}).")
    records = [
        {image_key: str(path), subject_key: str((subjects or {}).get(stem, stem))} for stem, path in found.items()
    ]
    if labels is None:
        return [{**r, LABEL_FILE: None} for r in records]
    return add_label_maps(records, labels, label_suffix=label_suffix, image_key=image_key, label_key=label_key)


def add_label_maps(
    records: Sequence[Mapping[str, Any]],
    folder: str | os.PathLike,
    *,
    label_suffix: str = "_seg",
    image_key: str = "image",
    label_key: str = "label",
) -> list[dict[str, Any]]:
    """``records`` with the label map of each CT (``<stem><label_suffix>.nii.gz`` in ``folder``) under ``label_key``
    and ``LABEL_FILE``; a CT without one gets ``LABEL_FILE: None`` (and no ``label_key``), and a label map that
    matches no CT is logged.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"label map folder {folder} does not exist.")
    maps = {ct_stem(p): p for p in sorted(folder.iterdir()) if p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES)}
    out, used = [], set()
    for record in records:
        name = f"{ct_stem(record[image_key])}{label_suffix}"
        record = {k: v for k, v in record.items() if k != label_key}
        if name in maps:
            used.add(name)
            out.append({**record, label_key: str(maps[name]), LABEL_FILE: str(maps[name])})
        else:
            out.append({**record, LABEL_FILE: None})
    unmatched = sorted(set(maps) - used)
    if unmatched:
        logger.warning("%d label map(s) in %s match no CT (expected <CT stem>%s): %s", len(unmatched), folder,
                       label_suffix, unmatched[:5])
    return out
