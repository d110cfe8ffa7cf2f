"""Tutorial 1: a real 12-lead ECG through monai_gen's MONAI transforms, to a measured median beat.

Run it from the repository root (``make venv`` first)::

    python tutorials/01_ecg_transforms.py --output-dir tutorial_output

It reads a PhysioNet/CinC 2021 record from ``../shared/data`` (or ``$MONAI_GEN_SHARED_DATA``), builds a MONAI
``Compose`` of dictionary transforms (load, standard lead order, 500 Hz, baseline-wander removal, median beat,
measurement), prints what the metadata carries at each stage, and draws the record and its median beats on
ECG paper. The tests run this file, so it stays runnable.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from monai.transforms import Compose

from monai_gen.data.ecg_meta import ecg_sampling_rate
from monai_gen.transforms.ecg import (
    LoadECGd,
    MeasureECGd,
    MedianBeatd,
    RemoveBaselineWanderd,
    ResampleECGd,
    StandardiseLeadsd,
)
from monai_gen.visualize import plot_ecg, plot_median_beats

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MONAI_GEN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--record", type=Path, default=DATA / "ecg" / "cinc2021" / "E07500.hea")
    parser.add_argument("--output-dir", type=Path, default=Path("tutorial_output"))
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)

    # %% 1. Load: a channel-first (leads, samples) MetaTensor in mV; the rate lives in the affine (1 / fs).
    record = LoadECGd("ecg")({"ecg": args.record})["ecg"]
    print(f"loaded {args.record.name}: {tuple(record.shape)} at {ecg_sampling_rate(record):g} Hz, "
          f"leads {record.meta['lead_names']}")

    # %% 2. The preprocessing chain a MONAI user composes: every step keeps the metadata.
    preprocess = Compose([
        StandardiseLeadsd("ecg"),  # I, II, III, aVR, aVL, aVF, V1-V6 (limb leads derived when absent)
        ResampleECGd("ecg", target_fs=500.0),
        RemoveBaselineWanderd("ecg", cutoff_hz=0.5),
    ])
    rhythm = preprocess({"ecg": record})["ecg"]
    plot_ecg(rhythm, record_id=args.record.stem, caption="preprocessed", path=args.output_dir / "rhythm.png")

    # %% 3. Median beat (12 x 576 at 500 Hz, R at sample 200, as in xMADD) and its measurements.
    sample = Compose([MedianBeatd("ecg"), MeasureECGd("ecg")])({"ecg": rhythm})
    beat, measured = sample["ecg"], sample["ecg_measurements"]  # measurements land beside the ECG
    print(f"median beat {tuple(beat.shape)} over {beat.meta['n_beats']} beats: "
          + ", ".join(f"{k} {v:.0f}" for k, v in measured.items() if isinstance(v, float)))
    plot_median_beats(beat, record_id=args.record.stem, caption=f"HR {measured['heart_rate_bpm']:.0f} bpm",
                      path=args.output_dir / "median_beats.png")
    print(f"figures written to {args.output_dir}/")
    return measured


if __name__ == "__main__":
    main()
