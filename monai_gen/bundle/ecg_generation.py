"""What the ECG bundle's ``inference.json`` calls: build the requests, write WFDB records, draw previews."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import wfdb

from monai_gen.data.wfdb_writer import write_wfdb
from monai_gen.engines.generation import SampleRequest, requests_from_rows, sweep_requests
from monai_gen.transforms.conditions import ConditionSet, is_missing, read_condition_table
from monai_gen.transforms.ecg.functional import MEDIAN_BEAT_FS, MEDIAN_BEAT_R_INDEX
from monai_gen.visualize.ecg import plot_median_beats
from monai_gen.visualize.sweep import plot_signal_sweep

__all__ = ["build_requests", "wfdb_sample_writer", "ecg_preview"]


def build_requests(
    conditions: ConditionSet,
    *,
    values: Mapping[str, Any] | None = None,
    table: str | os.PathLike | None = None,
    num_samples: int = 4,
    seed: int = 0,
    sweep: str | None = None,
    sweep_start: float | None = None,
    sweep_stop: float | None = None,
    sweep_num_values: int = 5,
    sweep_num_seeds: int = 3,
) -> list[SampleRequest]:
    """The samples an inference run generates, validated against the model's conditions.

    - ``sweep`` set: phenotype ``sweep`` from ``sweep_start`` to ``sweep_stop`` in ``sweep_num_values`` steps,
      ``sweep_num_seeds`` seeds (``seed, seed + 1, ...``) per value, other ``values`` held fixed;
    - else ``table`` set: one sample per table row (``num_samples`` per row), ``values`` fill columns the
      table lacks;
    - else ``num_samples`` samples of ``values``.
    Unset values (None) leave a phenotype unconditioned.

    Raises:
        ValueError: unknown phenotype, value out of range, unknown category (naming the row / option).
    """
    fixed = {k: v for k, v in dict(values or {}).items() if not is_missing(v)}
    unknown = sorted(set(fixed) - set(conditions.names))
    if unknown:
        raise ValueError(f"unknown phenotype(s) {unknown}; this model is conditioned on {conditions.names}.")
    if sweep is not None:
        if sweep not in conditions.names or conditions[sweep].is_categorical:
            raise ValueError(f"sweep must name a continuous phenotype of {conditions.names}, got {sweep!r}.")
        if sweep_start is None or sweep_stop is None:
            raise ValueError("a sweep needs sweep_start and sweep_stop.")
        grid = np.linspace(float(sweep_start), float(sweep_stop), int(sweep_num_values)).round(3).tolist()
        requests = sweep_requests(sweep, grid, seeds=range(seed, seed + int(sweep_num_seeds)), fixed=fixed)
    elif table is not None:
        rows = [{**fixed, **{k: v for k, v in row.items() if not is_missing(v)}} for row in read_condition_table(table)]
        requests = requests_from_rows(rows, seed=seed, prefix="ecg", samples_per_row=int(num_samples))
    else:
        requests = requests_from_rows([fixed] * int(num_samples), seed=seed, prefix="ecg")
    source = str(table) if table is not None and sweep is None else "requested conditions"
    conditions.encode_rows([r.conditions for r in requests], source=source)
    return requests


def wfdb_sample_writer(*, fs: float, lead_names: Sequence[str]) -> Callable[[torch.Tensor, Path, dict], list[Path]]:
    """A :class:`~monai_gen.engines.generation.GenerationJob` writer: one WFDB record + JSON sidecar per sample."""

    def write(sample: torch.Tensor, stem: Path, provenance: dict[str, Any]) -> list[Path]:
        comments = [f"{k}: {v}" for k, v in provenance.get("conditions", {}).items()]
        return write_wfdb(sample, stem, fs=fs, lead_names=lead_names, provenance=provenance, comments=comments)

    return write


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
