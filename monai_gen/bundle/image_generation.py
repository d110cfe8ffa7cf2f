"""What an image bundle's ``inference.json`` calls besides the generic engines and writers: its figures.

A plain run draws ``contact_sheet.png`` (its first 16 samples, titled with their names, seeds and conditions; a PNG
per sample is the bundle's ``PNGSampleWriter``, on request); a sweep draws ``sweep_<condition>.png`` (rows = the swept values, columns = seeds, the image counterpart of the ECG sweep strip);
a cine job (:func:`monai_gen.engines.requests.cine_requests`) assembles its frames into ``cine.nii.gz``
``(x, y, 1, t)`` with the frame time, ``cine.gif``, ``cine_contraction.png`` and, if asked, the DICOM series
``cine_dicom/`` (MR Image Storage with the cine's temporal tags). Each is drawn once every sample
of the job exists, from the written NIfTI files (or the array shards of ``output_format=array``; a cine needs the
NIfTI frames), so a resumed or sharded job draws it too; slices are shown as
:class:`~monai_gen.data.sample_writers.PNGSampleWriter` shows them (anterior up).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from monai.utils import optional_import

from monai_gen.bundle.contact_sheet import (
    CONTACT_SHEET_NAME,
    CONTACT_SHEET_SIZE,
    contact_sheet_due,
    contact_sheet_title,
)
from monai_gen.data.dicom_writer import write_dicom_series
from monai_gen.data.nifti_writer import write_nifti
from monai_gen.data.provenance import provenance_path
from monai_gen.data.sample_writers import read_shard_samples, synthetic_description
from monai_gen.engines.requests import SampleRequest
from monai_gen.metrics.cardiac import bright_area_curve
from monai_gen.visualize.cine import plot_contraction_curves, save_cine_gif
from monai_gen.visualize.images import plot_image_grid
from monai_gen.visualize.sweep import plot_image_sweep

nib, _ = optional_import("nibabel")

__all__ = ["CINE_NAME", "image_preview", "cine_preview"]

CINE_NAME = "cine"
_SIDECAR_STAMPS = ("synthetic", "generator", "created_utc")  # written afresh for every file


def image_preview(
    *,
    requests: Sequence[SampleRequest],
    sweep: str | None = None,
    unit: str = "",
    window: Sequence[float] | None = None,
    contact_sheet_size: int = CONTACT_SHEET_SIZE,
) -> Callable[[torch.Tensor, list[SampleRequest], Path], Figure | None]:
    """A ``GenerationJob`` preview callback drawing the job's figure once the samples it shows are written.

    The callback returns the figure it drew (None when it drew none): ``figure.axes[i]`` is the cell of request
    ``i`` (contact sheet) or of value ``r`` and seed ``s`` at ``r * S + s`` (sweep).

    Args:
        requests: all requests of the job, each written as ``<name>.nii.gz`` (by ``NiftiSampleWriter``) or into
            an array shard (``ArrayShardWriter``); a volume is shown by its central axial slice.
        sweep: the swept condition (None for plain generation) and its ``unit``: the strip, once every sample exists.
        window: ``(low, high)`` intensities shown black and white; None: the 0.5 / 99.5 percentiles of all cells.
        contact_sheet_size: a plain job's ``contact_sheet.png`` shows its first this many samples, drawn when they are
            written (again only if a later batch regenerates one of them); 0 draws none.

    Raises:
        ValueError: ``contact_sheet_size < 0``.
    """
    if contact_sheet_size < 0:
        raise ValueError(f"contact_sheet_size must be >= 0, got {contact_sheet_size}.")
    all_requests = list(requests)
    shown = "shared" if window is None else (float(window[0]), float(window[1]))

    def preview(samples: torch.Tensor, batch: list[SampleRequest], output_dir: Path) -> Figure | None:
        if sweep is None:
            first = all_requests[:contact_sheet_size]
            due = contact_sheet_due(batch, first, output_dir)
            images = _written(output_dir, first, samples.shape[1:]) if due else None
            if images is None:
                return None
            titles = [contact_sheet_title(r) for r in first]
            return plot_image_grid(images, titles=titles, window=shown, path=output_dir / CONTACT_SHEET_NAME)
        images = _written(output_dir, all_requests, samples.shape[1:])
        if images is None:
            return None
        values = sorted({float(r.conditions[sweep]) for r in all_requests})
        seeds = sorted({r.seed for r in all_requests})
        grid = np.empty((len(values), len(seeds), *images.shape[1:]), dtype=images.dtype)
        for request, image in zip(all_requests, images, strict=True):
            grid[values.index(float(request.conditions[sweep])), seeds.index(request.seed)] = image
        return plot_image_sweep(
            grid, values, name=sweep, unit=unit, seeds=seeds, window=shown, path=output_dir / f"sweep_{sweep}.png"
        )

    return preview


def _written(folder: Path, requests: Sequence[SampleRequest], shape: Sequence[int]) -> np.ndarray | None:
    """``(N, C, H, W)`` of the requests' written samples as displayed (their NIfTI files, or the array shards of
    ``output_format=array``); None while one is missing."""
    found = {r.name: _displayed(folder / f"{r.name}.nii.gz", shape) for r in requests
             if (folder / f"{r.name}.nii.gz").is_file()}
    wanted = {r.name for r in requests} - set(found)
    for shard in sorted(folder.glob("shard_*.safetensors")) if wanted else ():
        found.update({name: _displayed_array(array, shape) for name, array in read_shard_samples(shard, wanted).items()})
    if any(r.name not in found for r in requests):
        return None
    return np.stack([found[r.name] for r in requests])


def cine_preview(
    *,
    requests: Sequence[SampleRequest],
    phase: str,
    frame_time_ms: float,
    window: Sequence[float] | None = None,
    dicom_description: str | None = None,
) -> Callable[[torch.Tensor, list[SampleRequest], Path], Figure | None]:
    """A ``GenerationJob`` preview callback assembling a cine job's frames once its last frame is written.

    Writes ``cine.nii.gz`` (``(x, y, 1, t)``, the first frame's affine, ``pixdim[4] = frame_time_ms``, header
    description ``SYNTHETIC cine ...``) with a provenance sidecar (the frames' model, sampler and seed, the fixed
    conditions, the phase of every frame), ``cine.gif`` (the loop as the PNGs show a slice) and
    ``cine_contraction.png`` (:func:`~monai_gen.metrics.cardiac.bright_area_curve` over the cycle), whose figure
    it returns (None while frames are missing). With ``dicom_description`` it also writes the cine as one synthetic
    MR DICOM series ``cine_dicom/`` (:func:`~monai_gen.data.dicom_writer.write_dicom_series` with ``frame_time_ms``:
    one instance per frame in phase order, the frames' geometry, ``TriggerTime``, ``NominalInterval``...) and its
    sidecar ``cine_dicom.json`` (the cine's provenance). Every output is rewritten when the frames are (a job that
    regenerates them with ``overwrite``).

    Args:
        requests: the frames, from :func:`~monai_gen.engines.requests.cine_requests`, each written as
            ``<name>.nii.gz`` by ``NiftiSampleWriter``.
        phase: the periodic condition the frames sweep.
        frame_time_ms: time between frames (the cycle length / number of frames).
        window: ``(low, high)`` intensities shown black and white in the GIF; None: the 0.5 / 99.5 percentiles.
        dicom_description: the DICOM series' description (prefixed with ``SYNTHETIC``); None writes no DICOM.
    """
    frames_in_order = sorted(requests, key=lambda r: float(r.conditions[phase]))

    def preview(samples: torch.Tensor, batch: list[SampleRequest], output_dir: Path) -> Figure | None:
        files = [output_dir / f"{r.name}.nii.gz" for r in frames_in_order]
        if not all(f.is_file() for f in files):
            return None
        first = nib.load(files[0])
        frames = np.stack([np.asarray(nib.load(f).dataobj, dtype=np.float32).reshape(first.shape[:2]) for f in files])
        phases = [float(r.conditions[phase]) for r in frames_in_order]
        fixed = {k: v for k, v in frames_in_order[0].conditions.items() if k != phase}
        frame_record = json.loads(provenance_path(files[0]).read_text(encoding="utf-8"))
        record = {
            **{k: v for k, v in frame_record.items() if k not in _SIDECAR_STAMPS},
            "conditions": fixed,
            "frames": [r.name for r in frames_in_order],
            f"{phase}_per_frame": phases,
            "frame_time_ms": float(frame_time_ms),
        }
        description = synthetic_description({"conditions": {"cine": len(files), **fixed}})
        write_nifti(
            frames, output_dir / f"{CINE_NAME}.nii.gz", affine=first.affine, frame_time_ms=float(frame_time_ms),
            provenance=record, description=description,
        )
        if dicom_description is not None:
            write_dicom_series(
                frames.transpose(1, 2, 0)[None], output_dir / f"{CINE_NAME}_dicom", affine=first.affine,
                modality="MR", series_description=dicom_description, provenance=record,
                frame_time_ms=float(frame_time_ms), overwrite=True,
            )
        shown = None if window is None else (float(window[0]), float(window[1]))
        save_cine_gif(np.rot90(frames, axes=(1, 2)), output_dir / f"{CINE_NAME}.gif", frame_time_ms=frame_time_ms,
                      window=shown)
        return plot_contraction_curves(
            phases, bright_area_curve(frames), title=_title(SampleRequest("cine", frames_in_order[0].seed, fixed)),
            path=output_dir / f"{CINE_NAME}_contraction.png",
        )

    return preview


def _displayed(path: Path, shape: Sequence[int]) -> np.ndarray:
    """The 2D sample ``shape`` ``(C, x, y)`` read back from its NIfTI file ``path`` (a 3D one ``(1, x, y, z)``: its
    central axial slice), rotated so anterior (+y) is up."""
    _check_displayable(shape)
    array = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    if len(shape) == 4:
        return _displayed_array(array.reshape(shape), shape)  # one channel: the NIfTI is (x, y, z)
    return _displayed_array(np.moveaxis(array.reshape(*shape[1:3], -1), -1, 0), shape)  # NIfTI is channel-last


def _displayed_array(sample: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``(C, H, W)`` shown of ``sample`` ``(C, x, y)`` or ``(1, x, y, z)`` (its central axial slice), anterior up."""
    _check_displayable(shape)
    image = sample[:, :, :, shape[3] // 2] if len(shape) == 4 else sample
    return np.rot90(image, axes=(1, 2))  # rows = y from anterior down, columns = x, as the PNG writer shows it


def _check_displayable(shape: Sequence[int]) -> None:
    if len(shape) not in (3, 4):
        raise ValueError(f"image_preview draws 2D samples (C, x, y) or volumes (1, x, y, z), got shape {tuple(shape)}.")


def _title(request: SampleRequest) -> str:
    conditions = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in request.conditions.items())
    return f"{conditions or 'unconditioned'} · seed {request.seed}"
