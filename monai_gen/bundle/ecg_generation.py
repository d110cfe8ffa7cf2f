"""What the ECG bundle's ``inference.json`` calls besides the generic engines and writers: its previews.

A plain job draws ``contact_sheet.png`` (lead II of its first 16 samples, one amplitude scale, each titled with its
name, seed and conditions); a sweep draws its strip ``sweep_<condition>.png``; a 12-lead median-beat PNG per
sample only when asked (``per_sample``). The figures are drawn from the written samples (WFDB records, or the array
shards of ``output_format=array``), so a resumed or sharded job draws them too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import wfdb
from matplotlib.figure import Figure

from monai_gen.bundle.contact_sheet import (
    CONTACT_SHEET_NAME,
    CONTACT_SHEET_SIZE,
    contact_sheet_due,
    contact_sheet_title,
)
from monai_gen.data.sample_writers import read_shard_samples
from monai_gen.engines.requests import SampleRequest
from monai_gen.transforms.ecg.functional import MEDIAN_BEAT_FS, MEDIAN_BEAT_R_INDEX
from monai_gen.visualize.ecg import plot_median_beats
from monai_gen.visualize.sweep import plot_signal_grid, plot_signal_sweep

__all__ = ["ecg_preview"]


def ecg_preview(
    *,
    fs: float,
    lead_names: Sequence[str],
    sweep: str | None = None,
    unit: str = "",
    requests: Sequence[SampleRequest] = (),
    contact_sheet_size: int = CONTACT_SHEET_SIZE,
    per_sample: bool = False,
) -> Callable[[torch.Tensor, list[SampleRequest], Path], Figure | None]:
    """A preview callback: the job's contact sheet or sweep strip, and a 12-lead PNG per sample if asked.

    The callback returns the sheet or strip it drew (None when it drew neither); ``figure.axes[i]`` of the sheet is
    the cell of the job's ``i``-th request.

    Args:
        fs, lead_names: of the samples.
        sweep: the swept phenotype (None for plain generation) and its ``unit``: one strip once every sample exists.
        requests: all requests of the job (the strip needs the full grid and the sheet the first samples, read
            back from the written records, so a resumed job draws them too).
        contact_sheet_size: samples on ``contact_sheet.png`` (the job's first ones; 0 draws no sheet). A sweep
            draws its strip instead.
        per_sample: also draw ``<name>.png``, the 12 median beats of each sample on ECG paper (0.1 s each).

    Raises:
        ValueError: ``contact_sheet_size < 0``.
    """
    if contact_sheet_size < 0:
        raise ValueError(f"contact_sheet_size must be >= 0, got {contact_sheet_size}.")
    all_requests = list(requests)
    first = [] if sweep is not None else all_requests[:contact_sheet_size]

    def preview(samples: torch.Tensor, batch: list[SampleRequest], output_dir: Path) -> Figure | None:
        if per_sample:
            for sample, request in zip(samples, batch, strict=True):
                caption = " · ".join(f"{k} {v}" for k, v in request.conditions.items()) or "unconditioned"
                plot_median_beats(
                    sample, fs, lead_names=lead_names, record_id=request.name, caption=f"{caption} · synthetic",
                    path=output_dir / f"{request.name}.png",
                )
        if sweep is not None and all((output_dir / f"{r.name}.hea").is_file() for r in all_requests):
            return _sweep_strip(all_requests, sweep, unit, fs, lead_names, output_dir)
        due = contact_sheet_due(batch, first, output_dir)
        written = _written_samples(output_dir, [r.name for r in first]) if due else None
        if written is None:
            return None
        return plot_signal_grid(written, titles=[contact_sheet_title(r) for r in first], fs=fs, lead="II",
                                lead_names=lead_names, title=f"first {len(first)} synthetic ECGs",
                                path=output_dir / CONTACT_SHEET_NAME)

    return preview


def _written_samples(folder: Path, names: Sequence[str]) -> np.ndarray | None:
    """``(N, C, T)`` of the named samples read back from their WFDB records or array shards; None if one is missing."""
    found = {n: wfdb.rdrecord(str(folder / n)).p_signal.T for n in names if (folder / f"{n}.hea").is_file()}
    wanted = set(names) - set(found)
    for shard in sorted(folder.glob("shard_*.safetensors")) if wanted else ():
        found.update(read_shard_samples(shard, wanted))
    if any(n not in found for n in names):
        return None
    return np.stack([np.asarray(found[n], dtype=np.float32) for n in names])


def _sweep_strip(
    requests: Sequence[SampleRequest], name: str, unit: str, fs: float, lead_names: Sequence[str], folder: Path
) -> Figure:
    """Lead II of every sweep sample, read back from the records: rows = values, columns = seeds (xMADD Fig. 5).

    Each cell shows its measured QT and T-wave amplitude; when the requests set a heart rate, a column shows
    a rhythm assembled from the generated beat at that RR (the beat alone cannot show a rate below ~90 bpm).
    """
    values = sorted({float(r.conditions[name]) for r in requests})
    seeds = sorted({r.seed for r in requests})
    grid: list[list[np.ndarray | None]] = [[None] * len(seeds) for _ in values]
    rates: dict[float, Any] = {}
    for r in requests:
        grid[values.index(float(r.conditions[name]))][seeds.index(r.seed)] = wfdb.rdrecord(str(folder / r.name)).p_signal.T
        rates[float(r.conditions[name])] = r.conditions.get("heart_rate")
    rr_s = [None if rates[v] is None else 60.0 / float(rates[v]) for v in values]
    return plot_signal_sweep(
        np.asarray(grid), values, name=name, unit=unit, seeds=seeds, fs=fs, lead="II", lead_names=lead_names,
        r_index=int(round(MEDIAN_BEAT_R_INDEX * fs / MEDIAN_BEAT_FS)),
        rr_s=rr_s if any(rr is not None for rr in rr_s) else None, path=folder / f"sweep_{name}.png",
    )
