"""Cardiac cine MRI generation benchmark: the bundle's frames and cines per second next to MONAI's tutorial pipeline.

Run ``python -m benchmarks.cardiac_generation`` once the bundle ships weights (``--models-dir runs/<run>/models``
before they are exported; ``--tiny`` trains the configuration-only test bundle ``tests/bundle/tiny_cardiac_bundle``
for one epoch per stage and runs everything on it in about a minute). In one process it measures
(:mod:`benchmarks.image_generation` holds the parts every image bundle's benchmark shares):

- **ours, per frame**: the bundle's default generation of one frame end to end (config parsing, weight loading,
  25 DPM-Solver++(2M) steps, decoding, NIfTI + PNG writing and the grid) through ``run_bundle_workflow``;
- **ours, per cine**: the same workflow with ``cine`` on: one seed, the phase swept over ``cine_frames`` frames
  (:func:`monai_gen.engines.requests.cine_requests`), written as frames + ``cine.nii.gz`` + GIF + contraction curve;
- **ours, sampling**: the bundle's ``sample_generator`` on all requested frames in one batch;
- the **reference**: MONAI ``LatentDiffusionInferer.sample`` with a 1000-step ``DDPMScheduler`` carrying the bundle's
  own noise levels, on the same denoiser, autoencoder, conditions and initial noise (sampling and decoding only);
- the **fidelity** of both pipelines' frames to the requested BMI (R), slice position (R), diagnostic group
  (one-vs-rest AUROC) and cardiac phase (circular R), read by linear probes trained on the real training frames
  (:class:`monai_gen.metrics.evaluation.ProbeFidelity`), beside the same probes on the real frames whose conditions
  were requested;
- the process's peak resident memory after each part (``ru_maxrss``, the maximum so far) and, on CUDA, each part's
  peak GPU memory; the device is the bundle's (``cuda:0`` when present).

The requested conditions are those of real frames drawn from the training split by default (``--conditions-from``):
the ACDC subset splits by patient, and the held-out split of the 7 usable patients is one patient, whose frames
share one group and one BMI, so group AUROC and BMI R on held-out conditions are undefined. With training
conditions the ``real`` fidelity figures are the probes read on their own training frames (in sample: an upper
bound), not a held-out ceiling. Results are printed and written as JSON (``--output``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.image_generation import (
    CONDITION_SOURCES,
    ImageBundle,
    ProbeSetup,
    add_common_arguments,
    benchmark,
    condition_rows,
    default_cache_dir,
    load_image_bundle,
    probes_for,
    time_inference,
    write_results,
)
from monai_gen.bundle.registry import run_bundle_workflow, training_stages

BUNDLE = "cardiac_mri_generative_diffusion"
TINY_BUNDLE = Path(__file__).resolve().parents[1] / "tests" / "bundle" / "tiny_cardiac_bundle"
TINY_DATA = {"patients": ["patient001", "patient002", "patient041", "patient061", "patient062"], "slice_indices": [3],
             "image_size": [32, 32], "test_fraction": 0.4, "batch_size": 8}
"""The tiny bundle's data selection, as its own test trains it (patient041 has no voxel spacing and is left out)."""
TINY_COUNTS = {"frames": 8, "end_to_end_frames": 1, "cines": 1, "cine_frames": 4}
PHASE = "phase"  # the periodic condition the bundle's cine option sweeps (configs/inference.json)
PROBED = ("bmi", "slice_position", "group", PHASE)


def train_tiny(train_dir: Path, cache_dir: Path) -> Path:
    """Train the tiny test bundle for one epoch per stage on :data:`TINY_DATA` into ``train_dir`` (cohort cached in
    ``cache_dir``); returns its models folder."""
    for stage in training_stages(TINY_BUNDLE):
        run_bundle_workflow(TINY_BUNDLE, stage, {**TINY_DATA, "output_dir": str(train_dir), "cache_dir": str(cache_dir),
                                                 "max_epochs": 1})
    return train_dir / "models"


def cine_end_to_end(
    bundle: ImageBundle, rows: Sequence[Mapping[str, Any]], seeds: Sequence[int], frames: int
) -> Callable[[Path], dict[str, Any]]:
    """The cine section: one cine per row (its conditions but the phase held, seed ``seeds[i]``), ``frames`` frames
    each, through the bundle's inference workflow with ``cine`` on."""

    def section(output_dir: Path) -> dict[str, Any]:
        runs = [{**{k: v for k, v in row.items() if k != PHASE}, "cine": True, "cine_frames": frames, "seed": seed}
                for row, seed in zip(rows, seeds, strict=True)]
        seconds = time_inference(bundle, runs, output_dir)
        return {"cines": len(runs), "frames_per_cine": frames, "seconds_per_cine_end_to_end": seconds / len(runs),
                "seconds_per_frame_end_to_end": seconds / (len(runs) * frames)}

    return section


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    overrides = TINY_DATA if args.tiny else {}
    cache_dir = args.cache_dir or default_cache_dir(Path(args.bundle).name)
    models_dir = args.models_dir
    if args.tiny and models_dir is None:
        models_dir = train_tiny(cache_dir.parent / "tiny_train", cache_dir)
    bundle = load_image_bundle(args.bundle, cache_dir=cache_dir, models_dir=models_dir, overrides=overrides)
    cohorts = bundle.cohorts()
    source = getattr(cohorts, args.conditions_from)
    rows, picked = condition_rows(source, bundle.conditions.names, args.frames, args.seed)
    seeds = list(range(args.seed, args.seed + len(rows)))
    frames = int(args.cine_frames or bundle.option("cine_frames"))
    n_cines = min(args.cines, len(rows))
    probes = probes_for(bundle.conditions, PROBED, n_components=args.probe_components)
    return benchmark(
        bundle, rows, seeds, unit="frame", threads=args.threads, end_to_end=args.end_to_end_frames,
        fidelity=ProbeSetup(probes, cohorts.train, source.subset(picked)),
        extra_end_to_end={"cine": cine_end_to_end(bundle, rows[:n_cines], seeds[:n_cines], frames)},
        conditions_from=args.conditions_from,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, unit="frame")
    parser.add_argument("--bundle", default=BUNDLE, help="bundle name or folder")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="weights folder (default: the bundle's models/), e.g. a training run's models/")
    parser.add_argument("--cines", type=int, default=2, help="cines timed end to end (one seed each, phase swept)")
    parser.add_argument("--cine-frames", type=int, default=None,
                        help="frames per cine (default: the bundle's cine_frames)")
    parser.add_argument("--conditions-from", choices=CONDITION_SOURCES, default="train",
                        help="the real split whose frames' conditions are requested (see the module docstring)")
    parser.add_argument("--probe-components", type=int, default=64, help="PCA components under each fidelity probe")
    parser.add_argument("--tiny", action="store_true",
                        help="smoke run on tests/bundle/tiny_cardiac_bundle, trained here for one epoch per stage "
                        "unless --models-dir holds its weights: 8 frames, 1 cine of 4 frames, the full 1000-step "
                        "reference")
    args = parser.parse_args(argv)
    for name in ("frames", "end_to_end_frames", "cines", "probe_components"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    if args.cine_frames is not None and args.cine_frames < 2:
        parser.error(f"--cine-frames must be at least 2 (a cine needs 2 frames), got {args.cine_frames}.")
    if args.tiny:
        args.bundle = str(TINY_BUNDLE)
        for name, value in TINY_COUNTS.items():
            setattr(args, name, value)
    results = run(args)
    write_results(results, args.output)
    return results


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
