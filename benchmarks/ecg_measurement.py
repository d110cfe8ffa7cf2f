"""Agreement of the ECG interval measurement with LUDB's cardiologists, under subject-wise cross-validation.

Run ``python -m benchmarks.ecg_measurement``. On the LUDB records in ``../shared/data/ecg/ludb`` (one subject
each), the experts' intervals of each record (:func:`monai_gen.data.ludb.expert_intervals`: per lead, median
over beats, then median over the 12 leads) are compared with :func:`monai_gen.transforms.ecg.measure_ecg`:

- **learned delineator** (the shipped method), 5-fold cross-validation: for each fold a delineator is trained
  (:func:`~monai_gen.transforms.ecg.delineation.train_segmenter`, fixed recipe and seed) on the other four
  folds and scores only the held-out fold; fold models are cached in ``--cache``. The shipped weights are the
  fold-0 model (trained on folds 1-4), so the fold-0 rows are also the shipped weights' held-out score.
- **today's method** before this benchmark (neurokit2 ``prominence`` on the median beat, commit ``89f3a6e``):
  it has nothing trained, so its rows are plain agreement on all records. Its figures are stored in the JSON;
  ``--recompute-today`` measures them again from that commit's source (needs git).

Per interval (heart rate, PR, QRS, QT): MAE, bias (measured - expert), Pearson R, failures (NaN where the
experts have a value) and N (records with both). Writes the table as JSON (``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import types
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from monai_gen.data.ludb import (
    cross_validation_folds,
    expert_intervals,
    ludb_record_ids,
    read_ludb_delineation,
    read_ludb_signal,
)
from monai_gen.transforms.ecg.delineation import WaveSegmenter, train_segmenter
from monai_gen.transforms.ecg.measurements import measure_ecg

__all__ = ["agreement", "run", "main"]

INTERVALS = ("heart_rate_bpm", "pr_ms", "qrs_ms", "qt_ms")
TODAY_COMMIT = "89f3a6e"
_REPO = Path(__file__).resolve().parents[1]
_DEFAULT_LUDB = Path(os.environ.get("MONAI_GEN_SHARED_DATA", _REPO.parent / "shared" / "data")) / "ecg" / "ludb"
_DEFAULT_OUTPUT = Path(__file__).with_name("results_ecg_measurement.json")


def agreement(measured: Mapping[int, Mapping[str, float]], experts: Mapping[int, Mapping[str, float]]) -> dict:
    """Per interval: MAE, bias, R, failures, N of ``measured`` against ``experts`` (both keyed by record)."""
    table = {}
    for key in INTERVALS:
        pairs = np.array([(measured[i][key], experts[i][key]) for i in measured if np.isfinite(experts[i][key])])
        ok = np.isfinite(pairs[:, 0])
        error = pairs[ok, 0] - pairs[ok, 1]
        table[key] = {
            "mae": float(np.mean(np.abs(error))),
            "bias": float(np.mean(error)),
            "r": float(np.corrcoef(pairs[ok, 0], pairs[ok, 1])[0, 1]),
            "failures": int((~ok).sum()),
            "n": int(ok.sum()),
        }
    return table


def _fold_segmenter(fold: int, train: list[int], records: Mapping, args: argparse.Namespace) -> WaveSegmenter:
    path = args.cache / f"fold{fold}_of{args.folds}_steps{args.steps}_seed0.safetensors"
    if path.is_file():
        model = WaveSegmenter()
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    signals, delineations = [records[i][0] for i in train], [records[i][1] for i in train]
    model = train_segmenter(signals, delineations, 500.0, steps=args.steps, seed=0)
    args.cache.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(path))
    return model


def _measure(records: Mapping, ids: list[int], measure: Callable[[np.ndarray], Any]) -> tuple[dict, float]:
    """``{record: intervals}`` and the mean seconds per record."""
    start, out = time.perf_counter(), {}
    for i in ids:
        out[i] = {k: float(v) for k, v in measure(records[i][0]).as_dict().items() if k in INTERVALS}
    return out, (time.perf_counter() - start) / max(len(ids), 1)


def _todays_measure_ecg() -> Callable:
    """``measure_ecg`` as it was at ``TODAY_COMMIT``, from git (its helpers are unchanged since)."""
    source = subprocess.run(
        ["git", "-C", str(_REPO), "show", f"{TODAY_COMMIT}:monai_gen/transforms/ecg/measurements.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("measurements_today")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{TODAY_COMMIT}:measurements.py", "exec"), module.__dict__)
    return module.measure_ecg


def _today(records: Mapping, ids: list[int], experts: Mapping, args: argparse.Namespace) -> dict:
    stored = json.loads(args.output.read_text()).get("today") if args.output.is_file() else None
    if stored is not None and not args.recompute_today:
        return stored
    measure = _todays_measure_ecg()
    measured, seconds = _measure(records, ids, partial(measure, fs=500.0))
    return {
        "method": f"neurokit2 prominence on the median beat (commit {TODAY_COMMIT})",
        "evaluation": "all records",
        "seconds_per_record": seconds,
        "agreement": agreement(measured, experts),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    folder = args.ludb / "data"
    ids = ludb_record_ids(folder)
    records = {i: (read_ludb_signal(folder / str(i))[0], read_ludb_delineation(folder / str(i))) for i in ids}
    experts = {i: expert_intervals(records[i][1], 500.0) for i in ids}
    folds = cross_validation_folds(ids, args.folds)
    measured, per_fold, seconds = {}, [], []
    for fold, test in enumerate(folds):
        model = _fold_segmenter(fold, [i for i in ids if i not in set(test)], records, args)
        scores, secs = _measure(records, test, partial(measure_ecg, fs=500.0, segmenter=model))
        measured.update(scores)
        seconds.append(secs)
        per_fold.append({"records": test, "agreement": agreement(scores, experts)})
    per_record = {i: {"measured": measured[i], "experts": experts[i]} for i in ids}
    new = {
        "method": "learned per-lead delineator on the median beat (monai_gen.transforms.ecg.delineation)",
        "evaluation": f"{args.folds}-fold subject-wise cross-validation",
        "train_steps": args.steps,
        "seconds_per_record": float(np.mean(seconds)),
        "agreement": agreement(measured, experts),
        "folds": per_fold,
        "per_record": per_record,
    }
    return {
        "records": len(ids),
        "ludb": os.path.relpath(args.ludb, _REPO),
        "today": _today(records, ids, experts, args),
        "new": new,
        "targets": {
            "qrs_ms": "MAE <= 10, R >= 0.85",
            "qt_ms": "MAE <= 15, R >= 0.9",
            "pr_ms": "MAE <= 12",
            "heart_rate_bpm": "MAE <= 2",
        },
    }


def format_table(results: Mapping[str, Any]) -> str:
    """The agreement table as Markdown, one row per method and interval."""
    lines = ["| method | interval | MAE | bias | R | failures | N |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("today", "new"):
        for key, row in results[name]["agreement"].items():
            lines.append(
                f"| {name} | {key} | {row['mae']:.1f} | {row['bias']:+.1f} | {row['r']:.3f} | "
                f"{row['failures']} | {row['n']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ludb", type=Path, default=_DEFAULT_LUDB, help="LUDB folder (holding data/)")
    parser.add_argument("--output", type=Path, default=_DEFAULT_OUTPUT, help="JSON results file")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/monai_gen_ecg_measurement"), help="fold models")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=600, help="training steps per fold model")
    parser.add_argument("--recompute-today", action="store_true", help=f"re-measure commit {TODAY_COMMIT}'s method")
    args = parser.parse_args(argv)
    results = run(args)
    print(
        f"LUDB: {results['records']} records; today: {results['today']['evaluation']}; "
        f"new: {results['new']['evaluation']}"
    )
    print(format_table(results))
    print(
        f"seconds per record: today {results['today']['seconds_per_record']:.2f}, "
        f"new {results['new']['seconds_per_record']:.2f}"
    )
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
