"""Sample writers: the components a generation config builds by ``_target_`` to write each synthetic sample.

:class:`~monai_gen.engines.generation.GenerationJob` calls ``writer(sample, stem, provenance) -> list[Path]`` once per
sample: ``sample`` is ``(C, *spatial)`` in physical units (a MetaTensor carries its affine and metadata), ``stem`` the
output path without suffix (``out/ecg_07``), ``provenance`` the model id, seed, conditions... that go to the JSON
sidecar. Each writer here wraps one of the library's atomic file writers; :class:`SampleWriters` runs several for one
sample (e.g. NIfTI + PNG), so a config lists its outputs instead of a Python closure writing them.
:class:`ArrayShardWriter` writes a whole batch as one array file instead, for a cohort generated to train models;
:func:`output_writer` is how an inference config picks one of the two by its ``output_format``.

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
from monai_gen.data.nifti_writer import NIFTI_DESCRIPTION_BYTES, write_nifti
from monai_gen.data.provenance import write_provenance
from monai_gen.data.wfdb_writer import write_wfdb
from monai_gen.utils.atomic import atomic_output_path

__all__ = [
    "WFDBSampleWriter", "NiftiSampleWriter", "DicomSeriesSampleWriter", "PNGSampleWriter", "SampleWriters",
    "ArrayShardWriter", "read_shard_samples", "output_writer", "synthetic_description",
]

ARRAY_FORMAT = "array"


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

    The header's description (``descrip``, which viewers show) reads ``SYNTHETIC`` followed by the requested
    conditions (``SYNTHETIC age=70 sex=F slice_position=0.6``), cut to the field's 80 bytes; the sidecar holds
    them in full.

    Args:
        spacing_mm: voxel size along each spatial axis (mm); the affine is then ``diag(spacing, 1)`` (RAS). A 2D
            sample (written as a one-slice volume ``(x, y, 1)``) may take one more entry, the thickness of the slice,
            so viewers show its true voxel size. None takes ``affine``, else the sample's own affine (a MetaTensor)
            or the identity.
        output_dtype: data type stored in the file.
        affine: voxel-to-RAS affine ``(4, 4)`` in mm (e.g. that of the segmentation a CT was generated for), instead
            of ``spacing_mm``.

    Raises:
        ValueError: both ``affine`` and ``spacing_mm`` given; at writing, ``spacing_mm`` not matching the sample's
            spatial dimensions.
    """

    def __init__(
        self, spacing_mm: Sequence[float] | None = None, output_dtype: Any = np.float32, affine: Any = None
    ) -> None:
        if affine is not None and spacing_mm is not None:
            raise ValueError("NiftiSampleWriter takes an affine or spacing_mm, not both.")
        self.spacing_mm = None if spacing_mm is None else [float(s) for s in spacing_mm]
        self.output_dtype, self.affine = output_dtype, affine

    def __call__(self, sample: torch.Tensor, stem: Path, provenance: Mapping[str, Any]) -> list[Path]:
        affine = _spacing_affine(sample, self.spacing_mm, stem)
        return write_nifti(
            sample, Path(f"{stem}.nii.gz"), affine=self.affine if affine is None else affine,
            output_dtype=self.output_dtype, provenance=provenance,
            description=synthetic_description(provenance),
        )


class DicomSeriesSampleWriter:
    """A synthetic DICOM series in the folder ``<stem>_dicom/`` (one file per slice) per volume ``(1, x, y, z)``;
    a 2D sample ``(1, x, y)`` is a one-slice series.

    Args:
        modality: ``"MR"`` or ``"CT"``.
        series_description: prefixed with ``SYNTHETIC``.
        affine: voxel-to-RAS affine in mm; None takes ``spacing_mm``, else the sample's own (MetaTensor) or the
            identity.
        spacing_mm: voxel size along each spatial axis (mm), as in :class:`NiftiSampleWriter` (a 2D sample may add
            its slice thickness); the affine is ``diag(spacing, 1)`` (RAS).

    Raises:
        ValueError: both ``affine`` and ``spacing_mm`` given; at writing, ``spacing_mm`` not matching the sample.
    """

    def __init__(
        self,
        modality: str = "MR",
        series_description: str = "SYNTHETIC",
        affine: Any = None,
        spacing_mm: Sequence[float] | None = None,
    ) -> None:
        if affine is not None and spacing_mm is not None:
            raise ValueError("DicomSeriesSampleWriter takes an affine or spacing_mm, not both.")
        self.modality, self.series_description, self.affine = modality, series_description, affine
        self.spacing_mm = None if spacing_mm is None else [float(s) for s in spacing_mm]

    def __call__(self, sample: torch.Tensor, stem: Path, provenance: Mapping[str, Any]) -> list[Path]:
        affine = _spacing_affine(sample, self.spacing_mm, stem)
        volume = sample if sample.ndim == 4 else sample[..., None]  # a 2D slice is a one-slice series
        return write_dicom_series(
            volume, Path(f"{stem}_dicom"), affine=self.affine if affine is None else affine, modality=self.modality,
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


class ArrayShardWriter:
    """One ``shard_<first sample>.safetensors`` per batch: the samples as one tensor, for machine learning.

    The file holds ``samples`` ``(B, C, *spatial)`` (float32, physical units) and, in its metadata, the sample names,
    seeds and requested conditions (JSON); ``shard_<first sample>.json`` beside it is the batch's provenance sidecar
    (model id, sampler, steps... and each sample's seed and conditions). ``manifest.csv`` lists every sample with its
    shard, so ``safetensors.torch.load_file(shard)["samples"][k]`` is the ``k``-th sample of that shard in manifest
    order. A shard is written atomically: after a crash it exists whole or not at all.

    Examples:
        >>> job = GenerationJob(requests, generate_batch=generate, writer=ArrayShardWriter(), batch_size=256,
        ...                     output_dir="cohort")  # doctest: +SKIP
    """

    def write_batch(
        self, samples: torch.Tensor, requests: Sequence[Any], provenances: Sequence[Mapping[str, Any]], output_dir: Path
    ) -> list[list[Path]]:
        """Write the batch; returns, per sample, the files that hold it (its shard and the shard's sidecar)."""
        import json

        from safetensors.torch import save_file

        stem = Path(output_dir) / f"shard_{requests[0].name}"
        path = stem.with_suffix(".safetensors")
        per_sample = [
            {"name": r.name, "seed": p["seed"], "conditions": p["conditions"],
             **({"pass_through": p["pass_through"]} if "pass_through" in p else {})}
            for r, p in zip(requests, provenances, strict=True)
        ]
        metadata = {"samples": json.dumps(per_sample)}  # one key: safetensors orders several arbitrarily
        with atomic_output_path(path) as tmp:
            save_file({"samples": torch.as_tensor(samples).detach().cpu().float().contiguous()}, str(tmp), metadata=metadata)
        shared = {k: v for k, v in provenances[0].items() if k not in ("seed", "conditions", "pass_through")}
        sidecar = write_provenance(path, {**shared, "samples": per_sample})
        return [[path, sidecar] for _ in requests]


def read_shard_samples(shard: Path, wanted: set[str]) -> dict[str, np.ndarray]:
    """The samples named in ``wanted`` that an :class:`ArrayShardWriter` shard holds, by name (each ``(C, *spatial)``).

    Reads the shard's tensor only when it holds one of them (its names are in the header).
    """
    import json

    from safetensors import safe_open

    with safe_open(str(shard), framework="pt") as handle:
        names = [entry["name"] for entry in json.loads(handle.metadata()["samples"])]
        if not wanted.intersection(names):
            return {}
        samples = handle.get_tensor("samples")
    return {n: samples[k].numpy() for k, n in enumerate(names) if n in wanted}


def output_writer(
    output_format: str, clinical: Mapping[str, Any], *, per_sample_options: Mapping[str, bool] | None = None
) -> Any:
    """The writer of an inference config's ``output_format``: a clinical format's writer, or ``"array"`` shards.

    Args:
        output_format: a key of ``clinical`` (e.g. ``"nifti"``, ``"wfdb"``) or ``"array"`` (:class:`ArrayShardWriter`).
        clinical: the bundle's per-sample writer of each clinical format it offers, by format name.
        per_sample_options: config options that add or read per-sample files (``write_dicom``,
            ``per_sample_previews``, a cine assembled from its frames' NIfTI files...) and whether each is set; array
            shards hold no per-sample file, so a set one is refused with ``"array"`` rather than silently dropped.

    Raises:
        ValueError: ``output_format`` is not offered, or ``"array"`` is asked together with a set per-sample option.

    Examples:
        >>> output_writer("array", {"nifti": NiftiSampleWriter()})  # doctest: +ELLIPSIS
        <monai_gen.data.sample_writers.ArrayShardWriter object at ...>
    """
    offered = [*clinical, ARRAY_FORMAT]
    if output_format not in offered:
        raise ValueError(f"output_format {output_format!r} is not offered; choose from {', '.join(offered)}.")
    if output_format != ARRAY_FORMAT:
        return clinical[output_format]
    clashing = [name for name, given in (per_sample_options or {}).items() if given]
    if clashing:
        raise ValueError(
            f"output_format 'array' writes one shard per batch and no per-sample files, which {', '.join(clashing)} "
            f"needs; use output_format {next(iter(clinical))!r} for it."
        )
    return ArrayShardWriter()


def _spacing_affine(sample: torch.Tensor, spacing_mm: Sequence[float] | None, stem: Path) -> np.ndarray | None:
    """``diag(spacing, 1)`` for ``sample`` ``(C, *spatial)`` (a 2D one may add its slice thickness); None without."""
    if spacing_mm is None:
        return None
    spatial = sample.ndim - 1
    if not (len(spacing_mm) == spatial or spatial == 2 and len(spacing_mm) == 3):
        raise ValueError(
            f"{stem}: spacing_mm {list(spacing_mm)} does not match a sample of shape {tuple(sample.shape)} (one entry "
            "per spatial axis; a 2D sample may add its slice thickness)."
        )
    return np.diag([*spacing_mm, *[1.0] * (3 - len(spacing_mm)), 1.0])


def synthetic_description(provenance: Mapping[str, Any]) -> str:
    """``SYNTHETIC k=v ...`` of the requested conditions, ASCII, cut to the NIfTI description's 80 bytes."""
    conditions = provenance.get("conditions", {})
    conditions = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in conditions.items())
    text = f"SYNTHETIC {conditions}".strip().encode("ascii", "replace").decode("ascii")
    return text[:NIFTI_DESCRIPTION_BYTES]


def _mid_planes(volume: np.ndarray) -> np.ndarray:
    """The three orthogonal mid-planes of ``(x, y, z)``, each padded to a common height, side by side along x."""
    planes = [volume[volume.shape[0] // 2], volume[:, volume.shape[1] // 2], volume[:, :, volume.shape[2] // 2]]
    planes = [planes[2], planes[1], planes[0]]  # axial (x, y), coronal (x, z), sagittal (y, z)
    height = max(p.shape[1] for p in planes)
    padded = [np.pad(p, ((0, 0), (0, height - p.shape[1])), constant_values=float(volume.min())) for p in planes]
    return np.concatenate(padded, axis=0)
