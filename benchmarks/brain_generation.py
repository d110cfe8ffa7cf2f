"""Brain MRI generation benchmark: the shipped bundle's slices per second next to MONAI's tutorial pipeline.

Run ``python -m benchmarks.brain_generation`` (``--tiny`` for a seconds-long smoke run). In one process it measures
(:mod:`benchmarks.image_generation` holds the parts every image bundle's benchmark shares):

- **ours**: the bundle's default generation end to end (config parsing, weight loading, 25 DPM-Solver++(2M) steps,
  decoding, NIfTI + PNG writing and the grid) through ``run_bundle_workflow``, seconds per slice, and its sampling
  alone;
- the **reference**: MONAI ``LatentDiffusionInferer.sample`` with a 1000-step ``DDPMScheduler`` carrying the bundle's
  own noise levels, on the same denoiser and autoencoder and the same conditions (sampling and decoding only);
- the fidelity of both to the requested slice position and sex on held-out test conditions, read by linear probes
  trained on the real training slices (:class:`monai_gen.metrics.evaluation.ProbeFidelity`), beside the same probes
  on the real test slices, so speed is never bought with quality silently;
- the process's peak resident memory after each part (``ru_maxrss``; the reference runs last, so its figure is
  the maximum of all), and each part's peak GPU memory on CUDA.

Results are printed and written as JSON (``--output``).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch

from benchmarks.image_generation import (
    ProbeSetup,
    add_common_arguments,
    benchmark,
    condition_rows,
    load_image_bundle,
    probes_for,
    write_results,
)

BUNDLE = "brain_mri_generative_diffusion"
PROBED = ("slice_position", "sex")
TINY_CONDITIONS = {"age": 60.0, "sex": "F", "slice_position": 0.5}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    bundle = load_image_bundle(BUNDLE, cache_dir=args.cache_dir)
    fidelity = None
    if args.tiny:  # no cohort: fixed conditions, the reference timed over 10 steps, no fidelity
        rows = [dict(TINY_CONDITIONS)] * args.slices
    else:
        cohorts = bundle.cohorts()
        rows, picked = condition_rows(cohorts.test, bundle.conditions.names, args.slices, args.seed)
        fidelity = ProbeSetup(probes_for(bundle.conditions, PROBED), cohorts.train, cohorts.test.subset(picked))
    return benchmark(
        bundle, rows, list(range(args.seed, args.seed + len(rows))), unit="slice", threads=args.threads,
        end_to_end=args.end_to_end_slices, reference_steps_to_time=10 if args.tiny else None, fidelity=fidelity,
        conditions_from=None if args.tiny else "test",
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, unit="slice")
    parser.add_argument("--tiny", action="store_true",
                        help="smoke run: 2 slices of fixed conditions, the reference timed over 10 steps, no fidelity")
    args = parser.parse_args(argv)
    if args.tiny:
        args.slices, args.end_to_end_slices = 2, 1
    results = run(args)
    write_results(results, args.output)
    return results


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
