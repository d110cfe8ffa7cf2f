"""The ECG tensor contract: channel-first ``(leads, samples)`` float32 MetaTensor in mV, rate in the affine.

The sampling rate lives **only** in the affine, ``affine[0, 0] = 1 / fs`` (seconds per sample), the 1D
analogue of voxel spacing, so MONAI's crop / pad transforms keep it right. (MONAI 1.6 does not update the
translation of a 1D affine when cropping or padding, so the time origin is not tracked; the rate is.)
Header fields travel in the meta dictionary under the keys below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

__all__ = [
    "STANDARD_LEADS",
    "LEAD_NAMES",
    "UNITS",
    "RECORD_ID",
    "AGE",
    "SEX",
    "DX_CODES",
    "DIAGNOSES",
    "ecg_affine",
    "ecg_sampling_rate",
    "make_ecg",
    "normalise_sex",
]

STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
"""The standard 12-lead order."""

LEAD_NAMES = "lead_names"  # list[str], channel order
UNITS = "units"  # "mV"
RECORD_ID = "record_id"  # str
AGE = "age"  # float years; absent when unknown
SEX = "sex"  # "male" | "female"; absent when unknown
DX_CODES = "dx_codes"  # list[str] SNOMED-CT codes; absent when unknown
DIAGNOSES = "diagnoses"  # list[str] diagnosis statements in words (LUDB); absent when unknown

_SEX_WORDS = {"m": "male", "male": "male", "man": "male", "f": "female", "female": "female", "woman": "female"}


def ecg_affine(fs: float) -> np.ndarray:
    """The ``(2, 2)`` affine of a 1D signal sampled at ``fs`` Hz: ``[[1 / fs, 0], [0, 1]]``."""
    if not (np.isfinite(fs) and fs > 0):
        raise ValueError(f"sampling rate must be a positive number of Hz, got {fs}.")
    return np.array([[1.0 / float(fs), 0.0], [0.0, 1.0]])


def ecg_sampling_rate(ecg: MetaTensor) -> float:
    """Sampling rate in Hz of an ECG MetaTensor, read from its affine (rounded to 1e-6 Hz).

    Raises:
        TypeError: not a MetaTensor (a plain array carries no rate).
        ValueError: the affine is not a 1D signal affine.
    """
    if not isinstance(ecg, MetaTensor):
        raise TypeError(f"the sampling rate is stored in a MetaTensor's affine; got {type(ecg).__name__}.")
    affine = ecg.affine
    if affine.shape[-2:] != (2, 2) or not float(affine[..., 0, 0].reshape(-1)[0]) > 0:
        raise ValueError(f"not a 1D ECG affine (expected [[1/fs, 0], [0, 1]]), got {affine.tolist()}.")
    return round(1.0 / float(affine[..., 0, 0].reshape(-1)[0]), 6)


def normalise_sex(value: Any) -> str | None:
    """``"male"`` / ``"female"`` from header spellings (M, F, Male, female...); None when unknown."""
    if value is None:
        return None
    return _SEX_WORDS.get(str(value).strip().lower())


def make_ecg(
    signal: np.ndarray | torch.Tensor,
    fs: float,
    lead_names: Sequence[str],
    *,
    record_id: str = "",
    header: Mapping[str, Any] | None = None,
    source: str = "",
) -> MetaTensor:
    """Build the ECG MetaTensor from a ``(leads, samples)`` signal in mV.

    Args:
        signal: ``(leads, samples)`` in mV.
        fs: sampling rate in Hz.
        lead_names: one name per lead, in channel order.
        record_id: the record's identifier (e.g. the WFDB record name).
        header: optional ``age`` (years), ``sex``, ``dx_codes`` and ``diagnoses``; unknown values are left out of
            the meta.
        source: file name for error messages and ``filename_or_obj``.

    Raises:
        ValueError: wrong dimensionality, lead count not matching the names, NaN / infinite or flat signal.
    """
    array = torch.as_tensor(np.asarray(signal) if not isinstance(signal, torch.Tensor) else signal).float()
    where = f"{source}: " if source else ""
    if array.ndim != 2 or array.shape[1] < 2:
        raise ValueError(f"{where}an ECG must be (leads, samples); got shape {tuple(array.shape)}.")
    if array.shape[0] != len(lead_names):
        raise ValueError(f"{where}{array.shape[0]} leads but {len(lead_names)} lead names {list(lead_names)}.")
    bad = [name for name, lead in zip(lead_names, array, strict=True) if not torch.isfinite(lead).all()]
    if bad:
        raise ValueError(f"{where}leads {bad} contain NaN or infinite samples.")
    if bool((array.amax(dim=1) == array.amin(dim=1)).all()):
        raise ValueError(f"{where}every lead is flat (constant): no ECG signal recorded.")
    meta: dict[str, Any] = {LEAD_NAMES: [str(n) for n in lead_names], UNITS: "mV", RECORD_ID: str(record_id)}
    header = dict(header or {})
    if header.get("age") is not None and np.isfinite(float(header["age"])):
        meta[AGE] = float(header["age"])
    if normalise_sex(header.get("sex")):
        meta[SEX] = normalise_sex(header.get("sex"))
    if header.get("dx_codes"):
        meta[DX_CODES] = [str(c) for c in header["dx_codes"]]
    if header.get("diagnoses"):
        meta[DIAGNOSES] = [str(d) for d in header["diagnoses"]]
    if source:
        meta["filename_or_obj"] = source
    affine = torch.as_tensor(ecg_affine(fs), dtype=torch.float64)
    return MetaTensor(array, affine=affine, meta={**meta, "original_affine": affine.clone()})
