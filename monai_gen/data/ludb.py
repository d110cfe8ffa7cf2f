"""LUDB's expert delineation: per-lead P / QRS / T onset, peak and offset, and the experts' intervals of a record.

LUDB (Kalyakulina et al., IEEE Access 8:186181, 2020) stores one WFDB annotation file per lead (extension = the
lower-case lead name, ``i ii iii avr avl avf v1 ... v6``). Each wave is a peak symbol (``p``, ``N`` for the QRS,
``t``) between an onset ``(`` and an offset ``)``. Cardiologists marked every lead on its own, so the expert
interval of a record is taken per lead and then combined by the median over the leads (issue 12): per lead,
QRS = offset - onset around each ``N``, QT = the offset of the next ``t`` - QRS onset, PR = QRS onset - the onset
of the preceding ``p``; the median over that lead's beats; then the median over the 12 leads. The
earliest-onset / latest-offset "global" interval would add 20-40 ms of annotation scatter.

Examples:
    >>> leads = read_ludb_delineation("ludb/data/1")  # doctest: +SKIP
    >>> expert_intervals(leads, fs=500.0)["qrs_ms"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb

__all__ = [
    "LUDB_LEADS",
    "WaveMarks",
    "ludb_record_ids",
    "cross_validation_folds",
    "read_ludb_delineation",
    "read_ludb_signal",
    "expert_intervals",
]

LUDB_LEADS: tuple[str, ...] = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")
"""LUDB's lead names (= annotation file extensions), in the standard 12-lead order."""

_WAVES = {"p": "p", "N": "qrs", "t": "t"}


@dataclass(frozen=True)
class WaveMarks:
    """Expert marks of one lead: for each wave an ``(n_waves, 3)`` float array of samples (onset, peak, offset).

    A missing onset or offset (a peak without its bracket) is NaN. Waves are in time order.
    """

    p: np.ndarray
    qrs: np.ndarray
    t: np.ndarray


def ludb_record_ids(folder: str | Path) -> list[int]:
    """The record numbers present in a LUDB ``data`` folder (one ``<n>.hea`` each), ascending.

    Raises:
        FileNotFoundError: the folder holds no LUDB header.
    """
    ids = sorted(int(h.stem) for h in Path(folder).glob("*.hea") if h.stem.isdigit())
    if not ids:
        raise FileNotFoundError(f"{folder}: no LUDB records (<number>.hea) in this folder.")
    return ids


def cross_validation_folds(record_ids: Sequence[int], n_folds: int = 5) -> list[list[int]]:
    """Subject-wise folds (one subject per LUDB record): the k-th record in ascending order goes to fold k % n."""
    ordered = sorted(record_ids)
    return [ordered[fold::n_folds] for fold in range(n_folds)]


def _marks(samples: np.ndarray, symbols: Sequence[str]) -> WaveMarks:
    waves: dict[str, list[tuple[float, float, float]]] = {name: [] for name in _WAVES.values()}
    for i, symbol in enumerate(symbols):
        if symbol not in _WAVES:
            continue
        onset = float(samples[i - 1]) if i > 0 and symbols[i - 1] == "(" else np.nan
        offset = float(samples[i + 1]) if i + 1 < len(symbols) and symbols[i + 1] == ")" else np.nan
        waves[_WAVES[symbol]].append((onset, float(samples[i]), offset))
    return WaveMarks(**{name: np.array(rows, dtype=float).reshape(-1, 3) for name, rows in waves.items()})


def read_ludb_delineation(record: str | Path, leads: Sequence[str] = LUDB_LEADS) -> dict[str, WaveMarks]:
    """The expert marks of a LUDB record, ``{lead name: WaveMarks}``, read with ``wfdb.rdann``.

    Args:
        record: the record path without extension, e.g. ``.../ludb/data/1``.
        leads: the annotation extensions to read (LUDB's lower-case lead names).

    Raises:
        FileNotFoundError: a lead's annotation file is missing (the message names it).
    """
    record = Path(record)
    delineation = {}
    for lead in leads:
        path = record.with_name(f"{record.name}.{lead}")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no LUDB annotation file for lead {lead!r}.")
        annotation = wfdb.rdann(str(record), lead)
        delineation[lead] = _marks(np.asarray(annotation.sample), list(annotation.symbol))
    return delineation


def read_ludb_signal(record: str | Path) -> tuple[np.ndarray, float]:
    """The ``(12, samples)`` signal in mV (LUDB lead order) and its sampling rate in Hz.

    Raises:
        FileNotFoundError: the record's header is missing.
    """
    record = Path(record)
    header = record.with_name(f"{record.name}.hea")
    if not header.is_file():
        raise FileNotFoundError(f"{header}: no WFDB header for LUDB record {record.name!r}.")
    data = wfdb.rdrecord(str(record), physical=True)
    return np.nan_to_num(np.asarray(data.p_signal, dtype=np.float64).T), float(data.fs)


def _between(times: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.flatnonzero((times > low) & (times < high))


def _lead_intervals(marks: WaveMarks) -> dict[str, float]:
    """Median over one lead's beats of QRS, QT and PR in samples, and its median RR (NaN where none)."""
    qrs, qt, pr = [], [], []
    r = marks.qrs[:, 1]
    for k, (onset, peak, offset) in enumerate(marks.qrs):
        previous = r[k - 1] if k > 0 else -np.inf
        following = r[k + 1] if k + 1 < r.size else np.inf
        qrs.append(offset - onset)
        t_next = _between(marks.t[:, 1], peak, following)
        qt.append(marks.t[t_next[0], 2] - onset if t_next.size else np.nan)
        p_before = _between(marks.p[:, 1], previous, peak)
        pr.append(onset - marks.p[p_before[-1], 0] if p_before.size else np.nan)
    rr = np.diff(r)
    return {"qrs": _median(qrs), "qt": _median(qt), "pr": _median(pr), "rr": _median(rr)}


def _median(values: Sequence[float] | np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def expert_intervals(delineation: Mapping[str, WaveMarks], fs: float) -> dict[str, float]:
    """The experts' intervals of a record in ms (heart rate in bpm), NaN where no lead allows them.

    Per lead: QRS = offset - onset around each ``N``, QT = the next ``t`` offset - QRS onset, PR = QRS onset -
    the preceding ``p`` onset (a ``p`` after the previous ``N``), RR = the spacing of the ``N`` peaks; the median
    over the lead's beats; then the median over the leads. Heart rate = 60000 / RR.

    Returns:
        ``{"heart_rate_bpm", "rr_ms", "pr_ms", "qrs_ms", "qt_ms"}``.
    """
    per_lead = [_lead_intervals(marks) for marks in delineation.values()]
    to_ms = 1000.0 / fs
    fused = {key: _median([lead[key] for lead in per_lead]) * to_ms for key in ("rr", "pr", "qrs", "qt")}
    return {
        "heart_rate_bpm": 60000.0 / fused["rr"] if np.isfinite(fused["rr"]) else float("nan"),
        "rr_ms": fused["rr"],
        "pr_ms": fused["pr"],
        "qrs_ms": fused["qrs"],
        "qt_ms": fused["qt"],
    }
