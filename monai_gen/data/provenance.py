"""Generation provenance: a JSON sidecar beside every synthetic output file.

A sidecar records how a synthetic sample was made (model id, seed, conditions, sampler, steps...) and
marks it as synthetic, so a file found later can be traced back to its generator and never mistaken for
patient data.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_gen.utils.atomic import atomic_write_json

__all__ = ["provenance_path", "write_provenance", "to_json_compatible", "file_sha256"]

# Suffixes stripped from an output name to build its sidecar name (longest first).
_OUTPUT_SUFFIXES = (".nii.gz", ".nii", ".dcm", ".hea", ".dat", ".mat", ".png", ".npy", ".pt", ".safetensors")


def provenance_path(output: str | os.PathLike) -> Path:
    """Sidecar path for ``output``: ``sample_0001.nii.gz`` → ``sample_0001.json``.

    A folder output (a DICOM series) gets ``<folder>.json`` beside the folder; a WFDB record given as its
    record path without suffix (``out/ecg_0001``) gets ``out/ecg_0001.json``.
    """
    output = Path(output)
    name = output.name
    for suffix in _OUTPUT_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return output.with_name(f"{name}.json")


def write_provenance(output: str | os.PathLike, provenance: Mapping[str, Any]) -> Path:
    """Write the provenance of ``output`` atomically as its JSON sidecar and return the sidecar path.

    Adds ``synthetic: true``, the monai_gen version and a UTC creation time to the given fields.

    Args:
        output: the synthetic file (or DICOM series folder / WFDB record path) being described.
        provenance: generation details, e.g. ``{"model_id": ..., "seed": 3, "conditions": {...}}``.
            Numpy / torch scalars and arrays are converted to JSON numbers and lists.

    Raises:
        TypeError: a value cannot be represented in JSON (the message names its key).
    """
    from monai_gen import __version__

    record = {"synthetic": True, "generator": f"monai_gen {__version__}", "created_utc": _utc_now()}
    record.update({str(k): to_json_compatible(v, key=str(k)) for k, v in provenance.items()})
    record["output"] = Path(output).name
    return atomic_write_json(provenance_path(output), record)


def to_json_compatible(value: Any, *, key: str = "value") -> Any:
    """Convert numpy / torch values, paths and containers to plain JSON types (NaN → ``None``).

    Raises:
        TypeError: for an object with no JSON form; the message names ``key``.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [to_json_compatible(v, key=key) for v in value.tolist()] if value.ndim else to_json_compatible(value.item(), key=key)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): to_json_compatible(v, key=f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_json_compatible(v, key=key) for v in value]
    raise TypeError(f"provenance field {key!r} has a value of type {type(value).__name__} that JSON cannot hold: {value!r}")


def file_sha256(path: str | os.PathLike | None) -> str | None:
    """The SHA-256 (hex) of a file's bytes (None for None): how a sidecar names an input the sample was made from
    (e.g. the label map a CT was generated for) without its path or name, which may identify a patient."""
    if path is None:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
