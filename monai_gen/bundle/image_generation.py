"""What an image bundle's ``inference.json`` calls besides the generic engines and writers: its figures.

A plain run draws ``grid.png`` (every sample, titled with its conditions and seed); a sweep draws
``sweep_<condition>.png`` (rows = the swept values, columns = seeds, the image counterpart of the ECG sweep strip).
Both are drawn once every sample of the job exists, from the written NIfTI files, so a resumed job draws them too;
slices are shown as :class:`~monai_gen.data.sample_writers.PNGSampleWriter` shows them (anterior up).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from monai.utils import optional_import

from monai_gen.engines.requests import SampleRequest
from monai_gen.visualize.images import plot_image_grid
from monai_gen.visualize.sweep import plot_image_sweep

nib, _ = optional_import("nibabel")

__all__ = ["GRID_NAME", "image_preview"]

GRID_NAME = "grid.png"


def image_preview(
    *,
    requests: Sequence[SampleRequest],
    sweep: str | None = None,
    unit: str = "",
    window: Sequence[float] | None = None,
) -> Callable[[torch.Tensor, list[SampleRequest], Path], Figure | None]:
    """A ``GenerationJob`` preview callback drawing the job's figure once its last sample is written.

    The callback returns the figure it drew (None while samples are missing): ``figure.axes[i]`` is the cell of
    request ``i`` (grid) or of value ``r`` and seed ``s`` at ``r * S + s`` (sweep).

    Args:
        requests: all requests of the job, each written as ``<name>.nii.gz`` (by ``NiftiSampleWriter``).
        sweep: the swept condition (None for plain generation) and its ``unit``.
        window: ``(low, high)`` intensities shown black and white; None: the 0.5 / 99.5 percentiles of all cells.
    """
    all_requests = list(requests)

    def preview(samples: torch.Tensor, batch: list[SampleRequest], output_dir: Path) -> Figure | None:
        files = [output_dir / f"{r.name}.nii.gz" for r in all_requests]
        if not all(f.is_file() for f in files):
            return None
        images = np.stack([_displayed(f, samples.shape[1:]) for f in files])  # (N, C, H, W)
        shown = "shared" if window is None else (float(window[0]), float(window[1]))
        if sweep is None:
            titles = [_title(r) for r in all_requests]
            return plot_image_grid(images, titles=titles, window=shown, path=output_dir / GRID_NAME)
        values = sorted({float(r.conditions[sweep]) for r in all_requests})
        seeds = sorted({r.seed for r in all_requests})
        grid = np.empty((len(values), len(seeds), *images.shape[1:]), dtype=images.dtype)
        for request, image in zip(all_requests, images, strict=True):
            grid[values.index(float(request.conditions[sweep])), seeds.index(request.seed)] = image
        return plot_image_sweep(
            grid, values, name=sweep, unit=unit, seeds=seeds, window=shown, path=output_dir / f"sweep_{sweep}.png"
        )

    return preview


def _displayed(path: Path, shape: Sequence[int]) -> np.ndarray:
    """The 2D sample ``shape`` ``(C, x, y)`` read back from ``path``, rotated so anterior (+y) is up."""
    if len(shape) != 3:
        raise ValueError(f"image_preview draws 2D samples (C, x, y), got samples of shape {tuple(shape)}.")
    array = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    image = np.moveaxis(array.reshape(*shape[1:], -1), -1, 0)  # NIfTI is channel-last; a slice may carry (x, y, 1)
    return np.rot90(image, axes=(1, 2))  # rows = y from anterior down, columns = x, as the PNG writer shows it


def _title(request: SampleRequest) -> str:
    conditions = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in request.conditions.items())
    return f"{conditions or 'unconditioned'} · seed {request.seed}"
