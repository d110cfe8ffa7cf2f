"""An ECG training cohort: records -> R-aligned 12-lead beats with measured phenotypes, split by record.

This is what the ECG bundle trains and evaluates on, and what a user points at their own folder of records
(WFDB ``.hea``, CPSC ``.mat``, DICOM waveform ``.dcm``). Every record is loaded with the project's ECG transforms
(``LoadECG``, ``StandardiseLeads`` — limb leads derived when absent —, ``ResampleECG`` to 500 Hz,
``RemoveBaselineWander`` at 0.5 Hz),
measured (heart rate from the rhythm, QRS and QT on its median beat — :func:`measure_ecg`), and cut into
R-aligned windows of 576 samples with R at sample 200 (xMADD's median-beat geometry). Every beat carries its
record's phenotypes (heart rate, QRS, QT, age, sex) and the record id, so train / test splits are by record.

Why single beats instead of one median per record: the shared data hold ~60 records, far too few medians to
learn a 12 x 576 distribution from; single beats give ~15x more samples of the same geometry.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from monai_gen.data.ecg_readers import CPSCMatReader, DICOMECGReader
from monai_gen.engines.weights import save_tensors
from monai_gen.transforms.conditions import ConditionSet
from monai_gen.transforms.ecg.array import LoadECG, RemoveBaselineWander, ResampleECG, StandardiseLeads
from monai_gen.transforms.ecg.functional import (
    MEDIAN_BEAT_R_INDEX,
    MEDIAN_BEAT_SAMPLES,
    beat_windows,
    check_ecg_quality,
    detect_r_peaks,
)
from monai_gen.transforms.ecg.measurements import measure_ecg
from monai_gen.utils.atomic import atomic_output_path, atomic_write_text
from monai_gen.utils.log_summary import collapse_repeated_warnings

__all__ = [
    "BEAT_FS",
    "PHENOTYPES",
    "BeatCohort",
    "find_ecg_records",
    "build_beat_cohort",
    "split_by_record",
    "load_split_cohort",
    "cohort_cache_key",
    "fit_conditions",
    "fit_mean_beat",
    "training_items",
]

logger = logging.getLogger(__name__)

BEAT_FS = 500.0
PHENOTYPES = ("heart_rate", "qrs", "qt", "age", "sex")
_MAX_ABS_MV = 10.0  # a window beyond +-10 mV is an artefact, not a beat
# applied in turn rather than through monai Compose, whose RuntimeError wrapper would hide the readers' messages
_PREPARE = (LoadECG(), StandardiseLeads(), ResampleECG(BEAT_FS), RemoveBaselineWander(cutoff_hz=0.5))
# code that shapes a cached cohort (a package: every file in its folder, e.g. the delineator's weights); editing
# any of it invalidates the cache (see cohort_cache_key)
_CACHE_CODE = ("monai_gen.bundle.ecg_cohort", "monai_gen.data.ecg_readers", "monai_gen.transforms.ecg")


@dataclass
class BeatCohort:
    """Beats ``(N, 12, 576)`` float32 in mV at 500 Hz (R at 200) and one phenotype row per beat.

    ``rows[i]`` holds ``record_id`` and the phenotypes of :data:`PHENOTYPES` (None where unknown).
    """

    beats: torch.Tensor
    rows: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, indices: Sequence[int]) -> BeatCohort:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return BeatCohort(self.beats[index], [self.rows[i] for i in index.tolist()])

    def records(self) -> list[str]:
        return sorted({row["record_id"] for row in self.rows})

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``<path>.safetensors`` (beats) then ``<path>.csv`` (rows); both atomically, CSV last."""
        path = Path(path)
        with atomic_output_path(path.with_suffix(".safetensors")) as tmp:
            save_file({"beats": self.beats.contiguous()}, str(tmp))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["record_id", *PHENOTYPES], lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in self.rows)
        atomic_write_text(path.with_suffix(".csv"), buffer.getvalue())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> BeatCohort:
        """Read a cohort written by :meth:`save`; errors name the file."""
        path = Path(path)
        beats_file, rows_file = path.with_suffix(".safetensors"), path.with_suffix(".csv")
        for f in (beats_file, rows_file):
            if not f.is_file():
                raise FileNotFoundError(f"ECG cohort file {f} does not exist.")
        beats = load_file(str(beats_file))["beats"]
        with rows_file.open(newline="", encoding="utf-8") as handle:
            rows = [_parse_row(r) for r in csv.DictReader(handle)]
        if len(rows) != beats.shape[0]:
            raise ValueError(f"ECG cohort {path}: {beats.shape[0]} beats but {len(rows)} rows; rebuild it.")
        return cls(beats, rows)


def _parse_row(row: dict[str, str]) -> dict[str, Any]:
    parsed: dict[str, Any] = {"record_id": row["record_id"], "sex": row.get("sex") or None}
    for name in ("heart_rate", "qrs", "qt", "age"):
        parsed[name] = float(row[name]) if row.get(name) else None
    return parsed


def find_ecg_records(folder: str | os.PathLike) -> list[Path]:
    """ECG files under ``folder`` (recursively): WFDB headers, CPSC ``.mat`` without a header, ECG DICOMs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"ECG data folder {folder} does not exist.")
    headers = sorted(folder.rglob("*.hea"))
    mats = [m for m in sorted(folder.rglob("*.mat")) if CPSCMatReader().verify_suffix(m)]
    dicoms = [d for d in sorted(folder.rglob("*.dcm")) if DICOMECGReader().verify_suffix(d)]
    return headers + mats + dicoms


def _prepared_signal(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """``(12, samples)`` at 500 Hz without baseline wander, and the record's header fields."""
    ecg = path
    for transform in _PREPARE:
        ecg = transform(ecg)
    header = {"age": ecg.meta.get("age"), "sex": ecg.meta.get("sex")}
    return ecg.numpy().astype(np.float64), {"record_id": str(ecg.meta.get("record_id") or path.stem), **header}


def _record_beats(path: Path, max_beats: int | None) -> tuple[np.ndarray, dict[str, Any]]:
    """Beats ``(n, 12, 576)`` and the phenotype row of one record.

    Raises:
        ValueError: the record fails the signal-quality gate (:func:`check_ecg_quality`: not an ECG, or noise),
            has no R peaks, no complete beat window, or only beats beyond +-10 mV; the message names the file.
    """
    signal, info = _prepared_signal(path)
    check_ecg_quality(signal, BEAT_FS, where=str(path))
    measured = measure_ecg(signal, BEAT_FS, where=str(path))
    peaks = detect_r_peaks(signal, BEAT_FS, where=str(path))
    windows, _ = beat_windows(signal, peaks, n_samples=MEDIAN_BEAT_SAMPLES, r_index=MEDIAN_BEAT_R_INDEX)
    if not len(windows):
        raise ValueError(f"{path}: none of its {peaks.size} beats has a complete {MEDIAN_BEAT_SAMPLES}-sample window.")
    peak_mv = np.abs(windows).max(axis=(1, 2))
    windows = windows[peak_mv < _MAX_ABS_MV]
    if not len(windows):
        raise ValueError(
            f"{path}: all {peak_mv.size} beats exceed +-{_MAX_ABS_MV:g} mV (up to {peak_mv.max():.4g} mV): an "
            "artefact or a unit error (uV stored as mV?), not an ECG in mV."
        )
    if max_beats is not None and len(windows) > max_beats:
        windows = windows[np.linspace(0, len(windows) - 1, max_beats).round().astype(int)]
    row = {
        "record_id": info["record_id"],
        "heart_rate": _finite(measured.heart_rate_bpm),
        "qrs": _finite(measured.qrs_ms),
        "qt": _finite(measured.qt_ms),
        "age": info["age"],
        "sex": info["sex"],
    }
    return windows.astype(np.float32), row


def _finite(value: float) -> float | None:
    return round(float(value), 1) if np.isfinite(value) else None


def build_beat_cohort(records: Sequence[str | os.PathLike], *, max_beats_per_record: int | None = 40) -> BeatCohort:
    """Load, measure and cut every record into beats (see module docstring).

    Records that cannot be used (unreadable, missing leads, failing the signal-quality gate, too few beats, beats
    beyond +-10 mV) are skipped with a warning naming the file and the reason; if none remain, a ``ValueError``
    lists them.

    Args:
        records: ECG files (see :func:`find_ecg_records`).
        max_beats_per_record: cap per record (evenly spread), so long recordings do not dominate.
    """
    beats, rows, skipped = [], [], []
    for path in map(Path, records):
        try:
            windows, row = _record_beats(path, max_beats_per_record)
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            skipped.append(f"{path}: {err}")
            logger.warning("skipping ECG record %s: %s", path, err)
            continue
        beats.append(windows)
        rows.extend(dict(row) for _ in range(len(windows)))
    if not rows:
        listed = "; ".join(skipped[:10]) + (f"; and {len(skipped) - 10} more, each logged above" if len(skipped) > 10 else "")
        raise ValueError(f"no usable ECG beats in {len(records)} records; every one was rejected: {listed}")
    return BeatCohort(torch.from_numpy(np.concatenate(beats)), rows)


def split_by_record(cohort: BeatCohort, *, test_fraction: float = 0.2, seed: int = 0) -> tuple[BeatCohort, BeatCohort]:
    """Train / test cohorts with disjoint records (a fixed-seed shuffle of the record ids)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    records = cohort.records()
    if len(records) < 2:
        raise ValueError(f"a train / test split by record needs at least 2 records, got {len(records)}.")
    shuffled = [records[i] for i in np.random.default_rng(seed).permutation(len(records))]
    test_records = set(shuffled[: max(1, int(round(test_fraction * len(records))))])
    test = [i for i, row in enumerate(cohort.rows) if row["record_id"] in test_records]
    train = [i for i, row in enumerate(cohort.rows) if row["record_id"] not in test_records]
    return cohort.subset(train), cohort.subset(test)


def load_split_cohort(
    dataset_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_beats_per_record: int | None = 40,
) -> tuple[BeatCohort, BeatCohort]:
    """The train / test cohorts of every record under ``dataset_dir``, built once and cached in ``cache_dir``.

    The cache (``cohort_<key>.safetensors`` + ``.csv``) is keyed by its inputs (:func:`cohort_cache_key`: the
    record files with their sizes and modification times, ``max_beats_per_record`` and the code that cuts the
    beats), so a changed folder, record or setting rebuilds it and an older cache in the folder is removed.
    Repeated skip warnings (e.g. every 2-lead record) are logged as one line with a count.

    Raises:
        FileNotFoundError: ``dataset_dir`` does not exist.
        ValueError: naming ``dataset_dir``: it holds no ECG record, none gives usable beats, or fewer than two do
            (a split by record needs two).
    """
    records = find_ecg_records(dataset_dir)
    if not records:
        raise ValueError(f"ECG data folder {dataset_dir} holds no ECG records (WFDB .hea, CPSC .mat or DICOM .dcm).")
    cache = Path(cache_dir) / f"cohort_{cohort_cache_key(dataset_dir, records, max_beats_per_record)[:16]}"
    try:
        if cache.with_suffix(".csv").is_file() and cache.with_suffix(".safetensors").is_file():
            cohort = BeatCohort.load(cache)
        else:
            with collapse_repeated_warnings(logger):
                cohort = build_beat_cohort(records, max_beats_per_record=max_beats_per_record)
            cohort.save(cache)
            _remove_other_caches(Path(cache_dir), keep=cache.name)
        return split_by_record(cohort, test_fraction=test_fraction, seed=seed)
    except ValueError as err:
        raise ValueError(f"ECG data folder {dataset_dir}: {err}") from err


def cohort_cache_key(
    dataset_dir: str | os.PathLike, records: Sequence[str | os.PathLike], max_beats_per_record: int | None
) -> str:
    """SHA-256 (hex) of what shapes a cohort: each record's files (path under ``dataset_dir``, size, mtime in ns),
    ``max_beats_per_record`` and the files of the code that reads, cuts and measures the beats.

    A record's files are the ones sharing its stem in its folder (a WFDB header and its ``.dat`` / ``.mat``).
    """
    root, digest = Path(dataset_dir), hashlib.sha256()
    digest.update(f"max_beats_per_record={max_beats_per_record}\n".encode())
    for module in _CACHE_CODE:
        source = Path(importlib.import_module(module).__file__)
        for path in sorted(source.parent.iterdir()) if source.name == "__init__.py" else [source]:
            if path.is_file():
                digest.update(path.name.encode() + path.read_bytes())
    listings: dict[Path, list[Path]] = {}
    for record in map(Path, records):
        if record.parent not in listings:
            listings[record.parent] = sorted(record.parent.iterdir())
        for path in (p for p in listings[record.parent] if p.stem == record.stem and p.is_file()):
            stat = path.stat()
            digest.update(f"{path.relative_to(root).as_posix()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _remove_other_caches(cache_dir: Path, *, keep: str) -> None:
    """Delete cohort caches of other inputs (and the unkeyed ``cohort.*`` of older versions) from ``cache_dir``."""
    for path in [*cache_dir.glob("cohort_*.safetensors"), *cache_dir.glob("cohort_*.csv"), *cache_dir.glob("cohort.*")]:
        if path.stem != keep and path.suffix in (".safetensors", ".csv"):
            path.unlink(missing_ok=True)


def fit_conditions(specs: ConditionSet | Sequence[Any], cohort: BeatCohort, save_to: str | os.PathLike | None = None) -> ConditionSet:
    """The condition set with statistics fitted on ``cohort``'s rows (one row per record, not per beat).

    Fitting per record keeps records with many beats from weighting the statistics. Saved as JSON when
    ``save_to`` is given (the bundle ships it beside the weights).
    """
    conditions = specs if isinstance(specs, ConditionSet) else ConditionSet.from_dict(list(specs))
    per_record = {row["record_id"]: row for row in cohort.rows}
    fitted = conditions.fit(per_record.values(), source="ECG training cohort")
    if save_to is not None:
        fitted.save(save_to)
    return fitted


def fit_mean_beat(cohort: BeatCohort, save_to: str | os.PathLike | None = None) -> torch.Tensor:
    """The mean of ``cohort``'s beats, ``(12, 576)`` in mV; saved as safetensors (key ``mean_beat``) when asked.

    The bundle's diffusion model works on the deviation from this population mean beat (as image models work on
    intensities minus a mean): every beat is R-aligned, so the mean carries the QRS at sample 200, and sampling
    from pure noise starts from it. A convolutional denoiser trained on the raw beats placed the QRS anywhere.
    Load it back with ``monai_gen.engines.weights.load_tensor(path, "mean_beat")``.
    """
    mean = cohort.beats.mean(0).float()
    if save_to is not None:
        save_tensors({"mean_beat": mean}, save_to)
    return mean


def training_items(
    cohort: BeatCohort,
    conditions: ConditionSet,
    *,
    amplitude_scale_mv: float,
    offset_mv: torch.Tensor | None = None,
) -> list[dict[str, torch.Tensor]]:
    """MONAI dataset items ``{"image": (beat - offset) / scale (12, 576), "conditions": (P,), "condition_mask": (P,)}``.

    ``offset_mv`` (e.g. :func:`fit_mean_beat`) is subtracted before scaling; generation adds it back.
    """
    if not amplitude_scale_mv > 0:
        raise ValueError(f"amplitude_scale_mv must be > 0, got {amplitude_scale_mv}.")
    values, mask = conditions.encode_rows(cohort.rows, source="ECG training cohort")
    beats = (cohort.beats - (0.0 if offset_mv is None else offset_mv)) / float(amplitude_scale_mv)
    return [{"image": beats[i], "conditions": values[i], "condition_mask": mask[i]} for i in range(len(cohort))]
