"""``monai-gen plot``: ECG records on the clinical grid, one PNG per record, or images as one grid of middle slices.

A synthetic file says so in its title: monai_gen marks every generated output with a JSON sidecar holding
``"synthetic": true`` (:mod:`monai_gen.data.provenance`), and a generated WFDB record also with a header
comment starting ``SYNTHETIC`` (:mod:`monai_gen.data.wfdb_writer`); the title then adds the model, seed and
conditions the sidecar records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import wfdb
from monai.transforms import LoadImage

from monai_gen.data.ecg_meta import ecg_sampling_rate
from monai_gen.data.provenance import provenance_path
from monai_gen.transforms.ecg.array import LoadECG
from monai_gen.visualize.ecg import plot_ecg, plot_median_beats
from monai_gen.visualize.images import plot_image_grid

__all__ = ["plot_files", "provenance_caption"]

_BEAT_MAX_SECONDS = 2.0  # shorter signals are beats (drawn whole per lead), longer ones rhythms


def plot_files(files: Sequence[str | os.PathLike], output: str | os.PathLike) -> list[Path]:
    """Plot ECG records (one PNG each) or a set of images (one grid PNG); return the PNGs written.

    ECG records (WFDB ``.hea``, ECG DICOM, CPSC ``.mat``, HL7 aECG) are drawn on ECG paper, median beats when
    at most 2 s long, else the 3 × 4 + rhythm print-out. ``output`` is the PNG for a single record when it ends
    in ``.png``; otherwise it is a folder (created when missing) that receives ``<record>.png`` for each record.
    Images of one shape go into one grid PNG at ``output``.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: a mix of ECGs and images, several records for one ``.png``, two records of the same name,
            images of different shapes, or an unreadable provenance sidecar.
    """
    paths = [Path(f) for f in files]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist.")
    load_ecg = LoadECG()
    is_ecg = [any(r.verify_suffix(p) for r in load_ecg.readers) for p in paths]
    if not any(is_ecg):
        return [_plot_images(paths, Path(output))]
    if not all(is_ecg):
        others = [p.name for p, ecg in zip(paths, is_ecg, strict=True) if not ecg]
        raise ValueError(f"plot ECG records or images, not both: {others} are not ECG records.")
    targets = _ecg_outputs(paths, Path(output))
    for path, target in zip(paths, targets, strict=True):
        ecg = load_ecg(path)
        fs = ecg_sampling_rate(ecg)
        draw = plot_median_beats if ecg.shape[-1] / fs <= _BEAT_MAX_SECONDS else plot_ecg
        draw(ecg, fs, caption=provenance_caption(path), path=target)
    return targets


def provenance_caption(path: str | os.PathLike) -> str:
    """Title words for a file: ``"synthetic · model … · seed … · <condition> <value> …"``, or ``""`` if none.

    The file is synthetic when its JSON sidecar says ``"synthetic": true`` or, for a WFDB record, a header
    comment starts with ``SYNTHETIC``; model, seed and conditions come from the sidecar when it has them.

    Raises:
        ValueError: the sidecar exists but is not a JSON object.
    """
    path = Path(path)
    info = _sidecar(provenance_path(path))
    if info.get("synthetic") is not True and not _wfdb_marked_synthetic(path):
        return ""
    parts = ["synthetic"]
    parts += [f"model {info['model_id']}"] if info.get("model_id") else []
    parts += [f"seed {info['seed']}"] if info.get("seed") is not None else []
    conditions = info.get("conditions")
    parts += [f"{k} {v}" for k, v in conditions.items()] if isinstance(conditions, dict) else []
    return " · ".join(parts)


def _ecg_outputs(paths: list[Path], output: Path) -> list[Path]:
    """The PNG of each record: ``output`` itself for one record and a ``.png`` name, else ``output/<record>.png``."""
    if output.suffix.lower() == ".png" and not output.is_dir():
        if len(paths) > 1:
            raise ValueError(
                f"--output {output} is one PNG, and a PNG holds one ECG record at a time: give a folder to plot "
                f"these {len(paths)} records (one <record>.png each)."
            )
        return [output]
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} exists and is not a folder; give a folder or a .png name.")
    targets = [output / f"{p.stem}.png" for p in paths]
    repeated = sorted({t.name for t in targets if targets.count(t) > 1})
    if repeated:
        raise ValueError(f"records of the same name would overwrite each other's PNG in {output}: {repeated}.")
    return targets


def _plot_images(paths: list[Path], output: Path) -> Path:
    images = [LoadImage(image_only=True, ensure_channel_first=True)(p) for p in paths]
    shapes = {tuple(img.shape) for img in images}
    if len(shapes) != 1:
        raise ValueError(f"images must share one shape to be drawn as a grid, got {sorted(shapes)}.")
    titles = [" · ".join(filter(None, [p.name, provenance_caption(p).partition(" · ")[0]])) for p in paths]
    plot_image_grid(torch.stack(images), titles=titles, path=output)
    return output


def _sidecar(path: Path) -> dict[str, Any]:
    """The provenance sidecar at ``path`` ({} when there is none)."""
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"provenance sidecar {path} is not valid JSON: {err}.") from err
    if not isinstance(info, dict):
        raise ValueError(f"provenance sidecar {path} must hold a JSON object, got {type(info).__name__}.")
    return info


def _wfdb_marked_synthetic(path: Path) -> bool:
    """True when the WFDB header of ``path`` (``.hea``, or the one beside a ``.dat`` / ``.mat``) says SYNTHETIC."""
    header = path.with_suffix(".hea")
    if not header.is_file():
        return False
    comments = wfdb.rdheader(str(header.with_suffix(""))).comments or []
    return any(line.strip().upper().startswith("SYNTHETIC") for line in comments)
