"""What the ECG bundle's ``inference.json`` calls besides the generic engines and writers: its previews."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import wfdb

from monai_gen.engines.requests import SampleRequest
from monai_gen.transforms.ecg.functional import MEDIAN_BEAT_FS, MEDIAN_BEAT_R_INDEX
from monai_gen.visualize.ecg import plot_median_beats
from monai_gen.visualize.sweep import plot_signal_sweep

__all__ = ["ecg_preview"]


def ecg_preview(
    *,
    fs: float,
    lead_names: Sequence[str],
    sweep: str | None = None,
    unit: str = "",
    requests: Sequence[SampleRequest] = (),
) -> Callable[[torch.Tensor, list[SampleRequest], Path], None]:
    """A preview callback: a 12-lead PNG per sample, or, for a sweep, one strip once every sample exists.

    Args:
        fs, lead_names: of the samples.
        sweep: the swept phenotype (None for plain generation) and its ``unit``.
        requests: all requests of the job (a sweep strip needs the full grid, read back from the records so a
            resumed job draws it too).
    """
    all_requests = list(requests)

    def preview(samples: torch.Tensor, batch: list[SampleRequest], output_dir: Path) -> None:
        for sample, request in zip(samples, batch, strict=True):
            caption = " · ".join(f"{k} {v}" for k, v in request.conditions.items()) or "unconditioned"
            plot_median_beats(
                sample, fs, lead_names=lead_names, record_id=request.name, caption=f"{caption} · synthetic",
                path=output_dir / f"{request.name}.png",
            )
        if sweep is not None and all((output_dir / f"{r.name}.hea").is_file() for r in all_requests):
            _sweep_strip(all_requests, sweep, unit, fs, lead_names, output_dir)

    return preview


def _sweep_strip(
    requests: Sequence[SampleRequest], name: str, unit: str, fs: float, lead_names: Sequence[str], folder: Path
) -> None:
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
    plot_signal_sweep(
        np.asarray(grid), values, name=name, unit=unit, seeds=seeds, fs=fs, lead="II", lead_names=lead_names,
        r_index=int(round(MEDIAN_BEAT_R_INDEX * fs / MEDIAN_BEAT_FS)),
        rr_s=rr_s if any(rr is not None for rr in rr_s) else None, path=folder / f"sweep_{name}.png",
    )
