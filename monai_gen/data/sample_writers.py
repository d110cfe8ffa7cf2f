"""Sample writers: the components a generation config builds by ``_target_`` to write each synthetic sample.

:class:`~monai_gen.engines.generation.GenerationJob` calls ``writer(sample, stem, provenance) -> list[Path]`` once per
sample: ``sample`` is ``(C, *spatial)`` in physical units (a MetaTensor carries its affine and metadata), ``stem`` the
output path without suffix (``out/ecg_07``), ``provenance`` the model id, seed, conditions... that go to the JSON
sidecar. Each writer here wraps one of the library's atomic file writers; :class:`SampleWriters` runs several for one
sample (e.g. NIfTI + PNG), so a config lists its outputs instead of a Python closure writing them.

Examples:
    >>> writer = SampleWriters([NiftiSampleWriter(spacing_mm=(2.0, 2.0)), PNGSampleWriter(window=(0.0, 1.0))])
    >>> files = writer(torch.rand(1, 64, 64), Path("out/slice_0"), {"model_id": "m", "seed": 0})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from monai_gen.data.dicom_writer import write_dicom_series
from monai_gen.data.nifti_writer import write_nifti
from monai_gen.data.provenance import write_provenance
from monai_gen.data.wfdb_writer import write_wfdb
from monai_gen.utils.atomic import atomic_output_path

__all__ = ["WFDBSampleWriter", "NiftiSampleWriter", "DicomSeriesSampleWriter", "PNGSampleWriter", "SampleWriters"]


class WFDBSampleWriter:
    """One WFDB record (``<stem>.hea`` + ``.dat``) and its sidecar per ECG sample ``(leads, samples)`` in mV.

    The header's comments hold the requested conditions (``# heart_rate: 75.0``) after the SYNTHETIC line; nothing
    else of the provenance goes into the clinical file.

    Args:
        fs: sampling rate in Hz.
        lead_names: one name per lead, in sample order.
    """

    def __init__(self, fs: float, lead_names: Sequence[str]) -> None:
        self.fs, self.lead_names = float(fs), list(lead_names)

    def __call__(self, sample: torch.Tensor, stem: Path, provenance: Mapping[str, Any]) -> list[Path]:
        comments = [f"{k}: {v}" for k, v in provenance.get("conditions", {}).items()]
        return write_wfdb(sample, stem, fs=self.fs, lead_names=self.lead_names, provenance=provenance, comments=comments)


class NiftiSampleWriter:
    """``<stem>.nii.gz`` and its sidecar per image sample ``(C, *spatial)``.

    Args:
        spacing_mm: voxel size along each spatial axis; the affine is then ``diag(spacing, 1)`` (RAS). None keeps the
            sample's own affine (a MetaTensor) or the identity.
        output_dtype: data type stored in the file.
    """

    def __init__(self, spacing_mm: Sequence[float] | None = None, output_dtype: Any = np.float32) -> None:
        self.spacing_mm = None if spacing_mm is None else [float(s) for s in spacing_mm]
        self.output_dtype = output_dtype

    def __call__(self, sample: torch.Tensor, stem: Path, provenance: Mapping[str, Any]) -> list[Path]:
        affine = None
        if self.spacing_mm is not None:
            if len(self.spacing_mm) != sample.ndim - 1:
                raise ValueError(f"{stem}: spacing_mm {self.spacing_mm} does not match a sample of shape {tuple(sample.shape)}.")
            affine = np.diag([*self.spacing_mm, *[1.0] * (3 - len(self.spacing_mm)), 1.0])
        return write_nifti(sample, Path(f"{stem}.nii.gz"), affine=affine, output_dtype=self.output_dtype, provenance=provenance)


class DicomSeriesSampleWriter:
    """A synthetic DICOM series in the folder ``<stem>_dicom/`` (one file per slice) per volume ``(1, x, y, z)``.

    Args:
        modality: ``"MR"`` or ``"CT"``.
        series_description: prefixed with ``SYNTHETIC``.
        affine: voxel-to-RAS affine in mm; None takes the sample's own (MetaTensor) or the identity.
    """

    def __init__(self, modality: str = "MR", series_description: str = "SYNTHETIC", affine: Any = None) -> None:
        self.modality, self.series_description, self.affine = modality, series_description, affine

    def __call__(self, sample: torch.Tensor, stem: Path, provenance: Mapping[str, Any]) -> list[Path]:
        volume = sample if sample.ndim == 4 else sample[..., None]  # a 2D slice is a one-slice series
        return write_dicom_series(
            volume, Path(f"{stem}_dicom"), affine=self.affine, modality=self.modality,
            series_description=self.series_description, provenance=provenance,
        )


class PNGSampleWriter:
    """``<stem>.png``: an 8-bit grey preview of an image sample (2D as it is; 3D as its three mid-planes side by side).

    Args:
        window: ``(low, high)`` intensities mapped to black and white; None uses the sample's 0.5 / 99.5 percentiles.
        channel: the channel drawn.
        sidecar: also write ``<stem>.json`` (True when the PNG is the only output of a sample).
    """

    def __init__(self, window: Sequence[float] | None = None, channel: int = 0, sidecar: bool = False) -> None:
        self.window = None if window is None else (float(window[0]), float(window[1]))
        self.channel, self.sidecar = int(channel), bool(sidecar)

    def __call__(self, sample: torch.Tensor, stem: Path, provenance: Mapping[str, Any]) -> list[Path]:
        image = np.asarray(torch.as_tensor(sample)[self.channel].detach().cpu(), dtype=np.float32)
        if image.ndim == 3:
            image = _mid_planes(image)
        if image.ndim != 2:
            raise ValueError(f"{stem}: a PNG preview needs a 2D or 3D image, got a sample of shape {tuple(sample.shape)}.")
        low, high = self.window or tuple(np.percentile(image, [0.5, 99.5]))
        grey = np.clip((image - low) / max(high - low, 1e-12), 0, 1)
        path = Path(f"{stem}.png")
        with atomic_output_path(path) as tmp:
            # array axis 0 is x (left-right), axis 1 is y: transpose and flip so anterior is up, as viewers show it
            Image.fromarray(np.flipud((grey.T * 255).round().astype(np.uint8))).save(tmp, format="PNG")
        return [path, write_provenance(path, provenance)] if self.sidecar else [path]


class SampleWriters:
    """Several writers for each sample, files returned in order (each writer's sidecar is the same ``<stem>.json``).

    Args:
        writers: the writers to run, e.g. ``[NiftiSampleWriter(...), PNGSampleWriter()]``.
    """

    def __init__(self, writers: Sequence[Any]) -> None:
        if not writers:
            raise ValueError("SampleWriters needs at least one writer.")
        self.writers = list(writers)

    def __call__(self, sample: torch.Tensor, stem: Path, provenance: Mapping[str, Any]) -> list[Path]:
        files: list[Path] = []
        for writer in self.writers:
            files.extend(f for f in writer(sample, stem, provenance) if f not in files)
        return files


def _mid_planes(volume: np.ndarray) -> np.ndarray:
    """The three orthogonal mid-planes of ``(x, y, z)``, each padded to a common height, side by side along x."""
    planes = [volume[volume.shape[0] // 2], volume[:, volume.shape[1] // 2], volume[:, :, volume.shape[2] // 2]]
    planes = [planes[2], planes[1], planes[0]]  # axial (x, y), coronal (x, z), sagittal (y, z)
    height = max(p.shape[1] for p in planes)
    padded = [np.pad(p, ((0, 0), (0, height - p.shape[1])), constant_values=float(volume.min())) for p in planes]
    return np.concatenate(padded, axis=0)
