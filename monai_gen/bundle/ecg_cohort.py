"""An ECG training cohort: records -> R-aligned 12-lead beats with measured phenotypes, split by record.

This is what the ECG bundle trains and evaluates on, and what a user points at their own folder of records
(WFDB ``.hea``, CPSC ``.mat``, DICOM waveform ``.dcm``). Every record is prepared by the bundle's ``prepare_record``
(a MONAI ``Compose`` in ``configs/common.json``: ``LoadECG``, ``StandardiseLeads`` — limb leads derived when absent
—, ``ResampleECG`` to the config's ``fs``, ``RemoveBaselineWander`` at 0.5 Hz), measured (heart rate from the
rhythm, QRS and QT on its median beat — :func:`measure_ecg`), and cut into R-aligned windows of 576 samples with R
at sample 200 (xMADD's median-beat geometry). Every beat carries its record's phenotypes (those the bundle's
conditions name, from heart rate, QRS, QT, age, sex) and the record id, so train / test splits are by record.

The result is the generic :class:`~monai_gen.engines.cohort.Cohort` (subject key ``record_id``); caching, the split
and the condition statistics are the generic ones of :mod:`monai_gen.engines.cohort`, and the model-space
normalisation is a :class:`~monai_gen.transforms.normalisation.LinearNormalisation` around :func:`fit_mean_beat`.
Only what is ECG lives here: finding records, the quality gate, cutting and measuring beats.

Why single beats instead of one median per record: the shared data hold ~60 records, far too few medians to
learn a 12 x 576 distribution from; single beats give ~15x more samples of the same geometry.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import wfdb

from monai_gen.data.ecg_diagnoses import DIAGNOSIS_LABELS, diagnosis_labels
from monai_gen.data.ecg_meta import ecg_sampling_rate
from monai_gen.data.ecg_readers import CPSCMatReader, DICOMECGReader
from monai_gen.data.ludb import LUDB_LEADS, expert_intervals, read_ludb_delineation
from monai_gen.engines.cohort import (
    Cohort,
    CohortSplit,
    cached_cohort,
    innermost_cause,
    input_fingerprint,
    split_by_subject,
)
from monai_gen.engines.weights import save_tensors
from monai_gen.transforms.ecg.array import CropContextMargin
from monai_gen.transforms.ecg.functional import (
    beat_windows,
    check_ecg_quality,
    detect_r_peaks,
)
from monai_gen.transforms.ecg.measurements import measure_ecg
from monai_gen.utils.log_summary import collapse_repeated_warnings

__all__ = [
    "RECORD_KEY",
    "SUBJECT_KEY",
    "find_ecg_records",
    "build_beat_cohort",
    "load_split_cohort",
    "cohort_cache_key",
    "crop_context_margin",
    "fit_mean_beat",
]

logger = logging.getLogger(__name__)

RECORD_KEY = "ecg"  # the key the bundle's prepare_record Compose reads the record path from and writes the ECG to
SUBJECT_KEY = "record_id"  # the unit of the split: a record's beats never straddle train and test
_MAX_ABS_MV = 10.0  # a window beyond +-10 mV is an artefact, not a beat
_MEASURED = ("heart_rate", "qrs", "qt")  # the phenotypes measured on the signal; the others come from the header
_HEADER = ("age", "sex")
_DIAGNOSES = tuple(DIAGNOSIS_LABELS)  # lvh, left_axis_deviation, atrial_fibrillation (monai_gen.data.ecg_diagnoses)
SOURCE_KEY = "source"  # bookkeeping: the dataset a record comes from (its first folder under the dataset folder)
INTERVAL_SOURCE_KEY = "interval_source"  # bookkeeping: "experts" (LUDB's marks) or "measured" (measure_ecg)
# code that shapes a cached cohort (a package: every file in its folder, e.g. the delineator's weights); editing
# any of it invalidates the cache (see cohort_cache_key)
_CACHE_CODE = (
    "monai_gen.bundle.ecg_cohort", "monai_gen.engines.cohort", "monai_gen.data.ecg_readers", "monai_gen.transforms.ecg",
)


def find_ecg_records(folder: str | os.PathLike) -> list[Path]:
    """ECG files under ``folder`` (recursively): WFDB headers, CPSC ``.mat`` without a header, ECG DICOMs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"ECG data folder {folder} does not exist.")
    headers = sorted(folder.rglob("*.hea"))
    mats = [m for m in sorted(folder.rglob("*.mat")) if CPSCMatReader().verify_suffix(m)]
    dicoms = [d for d in sorted(folder.rglob("*.dcm")) if DICOMECGReader().verify_suffix(d)]
    return headers + mats + dicoms


def _prepared_signal(path: Path, prepare: Callable[[Any], Any], fs: float) -> tuple[np.ndarray, dict[str, Any]]:
    """``prepare({"ecg": path})["ecg"]`` as ``(12, samples)`` float64 mV at ``fs`` Hz, and the record's id, header
    fields and diagnosis labels (``prepare`` is a Compose of dictionary transforms on the key ``ecg``).

    Raises:
        ValueError: the prepared record is not sampled at ``fs`` (the preparation must resample to it).
    """
    ecg = prepare({RECORD_KEY: path})[RECORD_KEY]
    rate = ecg_sampling_rate(ecg)
    if rate != fs:
        raise ValueError(f"{path}: prepared at {rate:g} Hz, but the beats are cut at fs={fs:g} Hz: the record "
                         "preparation must resample to fs.")
    header = {name: ecg.meta.get(name) for name in _HEADER}
    info = {"record_id": str(ecg.meta.get("record_id") or path.stem), **header, **diagnosis_labels(ecg.meta)}
    return ecg.numpy().astype(np.float64), info


def _expert_intervals(path: Path) -> dict[str, float] | None:
    """LUDB's expert QRS / QT (ms) of the record whose header is ``path``, or None when it has no expert marks
    beside it (one annotation file per lead, :func:`~monai_gen.data.ludb.read_ludb_delineation`)."""
    if not all(path.with_suffix(f".{lead}").is_file() for lead in LUDB_LEADS):
        return None
    return expert_intervals(read_ludb_delineation(path.with_suffix("")), float(wfdb.rdheader(str(path.with_suffix(""))).fs))


def _record_source(path: Path, root: Path | None) -> str:
    """The dataset a record belongs to: its first folder under ``root`` (``cinc2021``, ``ludb``...), else its folder."""
    if root is not None:
        try:
            parts = path.resolve().relative_to(root.resolve()).parts
        except ValueError:
            parts = ()
        if len(parts) > 1:
            return parts[0]
    return path.parent.name


def _record_beats(path: Path, prepare: Callable[[Any], Any], fs: float, phenotypes: Sequence[str],
                  window: Mapping[str, int], max_beats: int | None, root: Path | None) -> tuple[np.ndarray, dict[str, Any]]:
    """Beats ``(n, 12, window["n_samples"])`` (R at ``window["r_index"]``) and the row of one record: its id,
    ``phenotypes``, source and where its QRS / QT come from.

    QRS and QT are LUDB's expert intervals where the record has expert marks (``interval_source`` "experts"),
    else :func:`measure_ecg`'s (validated against those experts, docs/ecg_measurement.md; "measured"); the heart
    rate is always measured.

    Raises:
        ValueError: the record fails the signal-quality gate (:func:`check_ecg_quality`: not an ECG, or noise),
            has no R peaks, no complete beat window, or only beats beyond +-10 mV; the message names the file.
    """
    signal, info = _prepared_signal(path, prepare, fs)
    check_ecg_quality(signal, fs, where=str(path))
    measured = measure_ecg(signal, fs, where=str(path))
    peaks = detect_r_peaks(signal, fs, where=str(path))
    windows, _ = beat_windows(signal, peaks, n_samples=int(window["n_samples"]), r_index=int(window["r_index"]))
    if not len(windows):
        raise ValueError(f"{path}: none of its {peaks.size} beats has a complete {window['n_samples']}-sample window.")
    peak_mv = np.abs(windows).max(axis=(1, 2))
    windows = windows[peak_mv < _MAX_ABS_MV]
    if not len(windows):
        raise ValueError(
            f"{path}: all {peak_mv.size} beats exceed +-{_MAX_ABS_MV:g} mV (up to {peak_mv.max():.4g} mV): an "
            "artefact or a unit error (uV stored as mV?), not an ECG in mV."
        )
    if max_beats is not None and len(windows) > max_beats:
        windows = windows[np.linspace(0, len(windows) - 1, max_beats).round().astype(int)]
    experts = _expert_intervals(path) if path.suffix.lower() == ".hea" else None
    intervals = experts if experts is not None else {"qrs_ms": measured.qrs_ms, "qt_ms": measured.qt_ms}
    values = {
        **info,
        "heart_rate": _finite(measured.heart_rate_bpm),
        "qrs": _finite(intervals["qrs_ms"]),
        "qt": _finite(intervals["qt_ms"]),
    }
    row = {SUBJECT_KEY: info["record_id"], SOURCE_KEY: _record_source(path, root),
           INTERVAL_SOURCE_KEY: "experts" if experts is not None else "measured"}
    return windows.astype(np.float32), {**row, **{name: values[name] for name in phenotypes}}


def _finite(value: float) -> float | None:
    return round(float(value), 1) if np.isfinite(value) else None


def build_beat_cohort(
    records: Sequence[str | os.PathLike],
    *,
    prepare: Callable[[Any], Any],
    fs: float,
    phenotypes: Sequence[str],
    window: Mapping[str, int],
    max_beats_per_record: int | None = 40,
    root: str | os.PathLike | None = None,
) -> Cohort:
    """Prepare, measure and cut every record into beats (see module docstring).

    Records that cannot be used (unreadable, missing leads, failing the signal-quality gate, too few beats, beats
    beyond +-10 mV) are skipped with a warning naming the file and the reason (a transform's own error, unwrapped
    from MONAI ``Compose``'s ``RuntimeError``); if none remain, a ``ValueError`` lists them.

    Every row holds the record id (``record_id``, the split unit), its ``source`` (the first folder under ``root``:
    ``cinc2021``, ``ludb``...), ``interval_source`` (``"experts"`` where QRS / QT are LUDB's expert intervals,
    ``"measured"`` where they are :func:`measure_ecg`'s) and the ``phenotypes``.

    Args:
        records: ECG files (see :func:`find_ecg_records`).
        prepare: ``{"ecg": path}`` -> ``{"ecg": (12, samples) ECG MetaTensor in mV at fs Hz}`` (the bundle's ``prepare_record``).
        fs: sampling rate in Hz the beats are cut and measured at (the bundle's ``fs``).
        phenotypes: the row fields, from ``heart_rate``, ``qrs``, ``qt`` (measured or expert), ``age``, ``sex``
            (header) and the diagnoses ``lvh``, ``left_axis_deviation``, ``atrial_fibrillation`` ("yes" / "no",
            None without labels: :func:`~monai_gen.data.ecg_diagnoses.diagnosis_labels`); the bundle's condition names.
        window: the beat window, e.g. ``{"n_samples": 576, "r_index": 200}`` (the bundle's ``num_samples_per_beat``,
            ``r_index``), or that beat with a context margin (``{"n_samples": 640, "r_index": 232}``, cropped back
            by :func:`crop_context_margin`).
        max_beats_per_record: cap per record (evenly spread), so long recordings do not dominate.
        root: the dataset folder the records' ``source`` is named under (default: each record's own folder).

    Raises:
        ValueError: a phenotype is none of those; no record gives usable beats.
    """
    known = (*_MEASURED, *_HEADER, *_DIAGNOSES)
    unknown = sorted(set(phenotypes) - set(known))
    if unknown:
        raise ValueError(f"ECG phenotypes {unknown} are not known; a beat cohort has {list(known)}.")
    beats, rows, skipped = [], [], []
    root = Path(root) if root is not None else None
    for path in map(Path, records):
        try:
            windows, row = _record_beats(path, prepare, float(fs), phenotypes, window, max_beats_per_record, root)
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            reason = innermost_cause(err).split(": ", 1)[1] if err.__cause__ is not None else str(err)
            reason = reason.removeprefix(f"{path}: ")  # our errors name the file; the warning names it once
            skipped.append(f"{path}: {reason}")
            logger.warning("skipping ECG record %s: %s", path, reason)
            continue
        beats.append(windows)
        rows.extend(dict(row) for _ in range(len(windows)))
    if not rows:
        listed = "; ".join(skipped[:10]) + (f"; and {len(skipped) - 10} more, each logged above" if len(skipped) > 10 else "")
        raise ValueError(f"no usable ECG beats in {len(records)} records; every one was rejected: {listed}")
    return Cohort(torch.from_numpy(np.concatenate(beats)), rows, SUBJECT_KEY)


def load_split_cohort(
    dataset_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    *,
    prepare: Callable[[Any], Any],
    fs: float,
    phenotypes: Sequence[str],
    window: Mapping[str, int],
    test_fraction: float = 0.2,
    validation_fraction: float = 0.0,
    seed: int = 0,
    max_beats_per_record: int | None = 40,
) -> CohortSplit:
    """The train / validation / test cohorts (disjoint records, stratified by ``source``: each dataset under
    ``dataset_dir`` is split in the same proportions) of every record under ``dataset_dir``, built once
    (:func:`build_beat_cohort` with ``prepare``, ``fs``, ``phenotypes``) and cached in ``cache_dir``;
    ``validation`` is empty unless ``validation_fraction`` is given.

    The cache (:func:`~monai_gen.engines.cohort.cached_cohort`: ``cohort_<key>.safetensors`` + ``.json``) is keyed
    by its inputs (:func:`cohort_cache_key`: every file of each record with its size and modification time, the
    preparation, ``fs``, the phenotypes, ``max_beats_per_record`` and the code that cuts the beats), so a changed
    folder, record or setting rebuilds it and an older cache in the folder is removed. Repeated skip warnings (e.g. every 2-lead record) are logged as
    one line with a count.

    Raises:
        FileNotFoundError: ``dataset_dir`` does not exist.
        ValueError: naming ``dataset_dir``: it holds no ECG record, none gives usable beats, or fewer than two do
            (a split by record needs two).
    """
    records = find_ecg_records(dataset_dir)
    if not records:
        raise ValueError(f"ECG data folder {dataset_dir} holds no ECG records (WFDB .hea, CPSC .mat or DICOM .dcm).")

    def build() -> Cohort:
        with collapse_repeated_warnings(logger):
            return build_beat_cohort(records, prepare=prepare, fs=fs, phenotypes=phenotypes, window=window,
                                     max_beats_per_record=max_beats_per_record, root=dataset_dir)

    key = cohort_cache_key(records, prepare=prepare, fs=fs, phenotypes=phenotypes, window=window,
                           max_beats_per_record=max_beats_per_record)
    try:
        cohort = cached_cohort(cache_dir, key, build)
        return split_by_subject(cohort, test_fraction=test_fraction, validation_fraction=validation_fraction, seed=seed,
                                stratify_by=SOURCE_KEY)
    except ValueError as err:
        raise ValueError(f"ECG data folder {dataset_dir}: {err}") from err


def cohort_cache_key(
    records: Sequence[str | os.PathLike],
    *,
    prepare: Callable[[Any], Any],
    fs: float,
    phenotypes: Sequence[str],
    window: Mapping[str, int],
    max_beats_per_record: int | None,
) -> str:
    """SHA-256 (hex) of what shapes a beat cohort (:func:`~monai_gen.engines.cohort.input_fingerprint`): every file
    of each record (its header and the files sharing its stem: the ``.dat`` / ``.mat`` signal), with size and
    modification time, the preparation (each transform's class and settings, :func:`_describe`), ``fs``, the
    phenotypes, ``max_beats_per_record`` and the files of the code that reads, cuts and measures the beats.
    """
    settings = {"prepare": _describe(prepare), "fs": float(fs), "phenotypes": list(phenotypes),
                "window": {k: int(v) for k, v in window.items()}, "max_beats_per_record": max_beats_per_record}
    return input_fingerprint(records, settings=settings, code=_CACHE_CODE, companions=True)


def _describe(transform: Any) -> Any:
    """A JSON-compatible description of a transform chain: per transform its class and public settings (numbers,
    strings, their lists; other objects by class), a ``Compose`` as the list of its transforms."""
    if isinstance(transform, (str, int, float, bool, type(None))):
        return transform
    if isinstance(transform, (list, tuple)):
        return [_describe(item) for item in transform]
    if hasattr(transform, "transforms"):
        return _describe(list(transform.transforms))
    name = f"{type(transform).__module__}.{type(transform).__qualname__}"
    if not hasattr(transform, "__dict__") or isinstance(transform, type):
        return name
    settings = {k: v for k, v in vars(transform).items() if not k.startswith("_")}
    return {"_target_": name, **{k: _setting(v) for k, v in settings.items()}}


def _setting(value: Any) -> Any:
    """A transform setting for :func:`_describe`: itself when JSON-like, a nested chain described, else its class."""
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, (list, tuple)) or hasattr(value, "transforms"):
        return _describe(value)
    return f"{type(value).__module__}.{type(value).__qualname__}"


def crop_context_margin(split: CohortSplit, margin: int) -> CohortSplit:
    """The cohorts with their beats' context margin cropped (:class:`CropContextMargin`): training windows
    ``(N, 12, n + 2 * margin)`` -> the beats the generator returns, ``(N, 12, n)``; rows unchanged. The evaluation
    compares generated beats with these."""
    crop = CropContextMargin(margin)
    return CohortSplit(*(Cohort(crop(c.items).contiguous(), c.rows, c.subject_key) for c in split))


def fit_mean_beat(cohort: Cohort, save_to: str | os.PathLike | None = None) -> torch.Tensor:
    """The mean of ``cohort``'s beats, ``(12, 576)`` in mV; saved as safetensors (key ``mean_beat``) when asked.

    The bundle's diffusion model works on the deviation from this population mean beat (as image models work on
    intensities minus a mean): every beat is R-aligned, so the mean carries the QRS at sample 200, and sampling
    from pure noise starts from it. A convolutional denoiser trained on the raw beats placed the QRS anywhere.
    Load it back with ``monai_gen.engines.weights.load_tensor(path, "mean_beat")``.
    """
    mean = cohort.items.mean(0).float()
    if save_to is not None:
        save_tensors({"mean_beat": mean}, save_to)
    return mean
