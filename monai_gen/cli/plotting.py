"""``monai-gen plot``: one PNG from ECG records (clinical grid) or from images (a grid of middle slices)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.transforms import LoadImage

from monai_gen.data.ecg_meta import ecg_sampling_rate
from monai_gen.transforms.ecg.array import LoadECG
from monai_gen.visualize.ecg import plot_ecg, plot_median_beats
from monai_gen.visualize.images import plot_image_grid

__all__ = ["plot_files"]

_BEAT_MAX_SECONDS = 2.0  # shorter signals are beats (drawn whole per lead), longer ones rhythms


def plot_files(files: Sequence[str | os.PathLike], output: str | os.PathLike) -> Path:
    """Plot one ECG record (WFDB ``.hea``, ECG DICOM, CPSC ``.mat``) or a set of images into ``output``.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: several ECG records at once, or a mix of ECGs and images.
    """
    paths = [Path(f) for f in files]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist.")
    load_ecg = LoadECG()
    is_ecg = [any(r.verify_suffix(p) for r in load_ecg.readers) for p in paths]
    if any(is_ecg):
        if len(paths) != 1 or not all(is_ecg):
            raise ValueError(f"plot one ECG record at a time (got {len(paths)} files: {[p.name for p in paths]}).")
        ecg = load_ecg(paths[0])
        fs = ecg_sampling_rate(ecg)
        draw = plot_median_beats if ecg.shape[-1] / fs <= _BEAT_MAX_SECONDS else plot_ecg
        draw(ecg, fs, path=output)
        return Path(output)
    images = [LoadImage(image_only=True, ensure_channel_first=True)(p) for p in paths]
    shapes = {tuple(img.shape) for img in images}
    batch = torch.stack(images) if len(shapes) == 1 else None
    if batch is None:
        raise ValueError(f"images must share one shape to be drawn as a grid, got {sorted(shapes)}.")
    plot_image_grid(batch, titles=[p.name for p in paths], path=output)
    return Path(output)
