"""Samples per second end to end for a large generation job of any bundle: 1 process vs ``--nproc`` ranks (issue 16
item 4).

Run ``python -m benchmarks.throughput --samples 2000 --steps 12`` (the ECG bundle) or ``python -m benchmarks.throughput
--bundle brain_mri_generative_diffusion --samples 256 --batch-size 16``. Each job is ``monai-gen generate BUNDLE`` in
a fresh process (Python start-up, config, weights, sampling, writing, the contact sheet), with ``OMP_NUM_THREADS`` =
``--threads`` per process, for every ``--formats`` (the bundle's clinical files, e.g. ``wfdb`` / ``nifti``: one file
set + sidecar per sample; ``array``: one safetensors shard per batch) x ``--nproc`` setting, in that order. Per job it
reports the wall time and the **steady-state rate**: samples finished between the first and the last batch's files
(their modification times), divided by that span, i.e. without start-up and the first batch. For the ECG bundle, beside
them, the **bound**: the denoiser's time per sample and forward at the job's forward batch (measured in this process,
median of repeats), times steps x guided passes, gives the most ECGs per second one process can reach. ``--set NAME=VALUE``
makes every sample ask that phenotype (``monai-gen generate --NAME VALUE``): the ECG bundle guides heart rate, QRS and
QT each on their own (``phenotype_guidance``), so a job asking all three runs 5 passes per step, an unconditioned one 1.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import monai
import torch

from benchmarks.generation import BUNDLE, denoiser_forward, load_bundle_model
from monai_gen.bundle.registry import bundle_component
from monai_gen.diffusion.guidance import ConditionGuidance

__all__ = ["steady_rate", "run_job", "guided_passes", "forward_bound", "main"]


def steady_rate(output_dir: Path, *, batch_size: int, first_batches: int = 1) -> dict[str, float]:
    """Samples per second after the first ``first_batches`` batches finished (one per rank), from file times.

    The job's batches are its requests in order, ``batch_size`` at a time (``manifest.csv`` names ``<prefix>_<i>``);
    a batch is finished when the last of its samples' files is written.
    """
    with (output_dir / "manifest.csv").open(newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: int(row["name"].rsplit("_", 1)[-1]))
    finished = [max((output_dir / f).stat().st_mtime for f in row["files"].split(";") if f) for row in rows]
    batches = sorted(max(finished[i : i + batch_size]) for i in range(0, len(finished), batch_size))
    start, later = batches[first_batches - 1], len(rows) - first_batches * batch_size
    span = batches[-1] - start
    return {
        "samples": len(rows),
        "steady_samples": later,
        "steady_seconds": span,
        "steady_samples_per_second": later / span if span > 0 else float("nan"),
    }


def run_job(
    samples: int,
    *,
    bundle: str = BUNDLE,
    steps: int,
    output_format: str,
    nproc: int,
    threads: int,
    batch_size: int,
    output_dir: Path,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """One ``monai-gen generate`` job in a child process; wall seconds and steady-state rate."""
    command = [
        sys.executable,
        "-m",
        "monai_gen.cli.main",
        "generate",
        bundle,
        "--num-samples",
        str(samples),
        "--steps",
        str(steps),
        "--output-dir",
        str(output_dir),
        "--nproc",
        str(nproc),
        "--batch-size",
        str(batch_size),
        "--override",
        f"output_format={output_format}",
        "--override",
        "progress=false",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return {
        "bundle": bundle,
        "samples": samples,
        "steps": steps,
        "output_format": output_format,
        "nproc": nproc,
        "threads": threads,
        "batch_size": batch_size,
        "extra": list(extra),
        "seconds": seconds,
        "samples_per_second": samples / seconds,
        **steady_rate(output_dir, batch_size=batch_size, first_batches=nproc),
    }


def guided_passes(model: dict[str, Any], request: dict[str, Any]) -> int:
    """Network passes per solver step for a job whose every sample asks ``request`` (``{phenotype: value}``), with
    the bundle's guidance (``inferer`` of its ``common.json``): 1 unguided, 2 with one guidance scale, one more per
    phenotype with its own scale that the request sets (unset phenotypes cost nothing: ``ConditionGuidance.for_batch``).
    """
    scales = bundle_component(model["root"], "inferer").scales
    if not scales:
        return 1
    values, mask = model["conditions"].encode_rows([request])
    cond = {"conditions": values, "condition_mask": mask}
    return ConditionGuidance(None, scales).for_batch(cond).passes(cond)


def forward_bound(batch_size: int, steps: int, *, request: dict[str, Any], precision: str, repeats: int,
                  forward_batch: int | None = None) -> dict[str, Any]:
    """The most samples per second one process can reach: the denoiser's seconds per sample and forward at the job's
    forward batch (``guided_passes`` x ``batch_size``, the guided passes run as one batch) x steps x passes."""
    model = load_bundle_model(torch.device("cpu"))
    passes = guided_passes(model, request)
    batch = forward_batch or passes * batch_size
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bfloat16" else contextlib.nullcontext()
    with autocast:
        result = denoiser_forward(model, batch, torch.device("cpu"), repeats)
    per_sample = result["seconds_per_forward"] / batch
    return {
        "request": request,
        "guided_passes": passes,
        "forward_batch": batch,
        "precision": precision,
        "seconds_per_sample_forward": per_sample,
        "bound_samples_per_second": 1.0 / (per_sample * steps * passes),
    }


def _phenotype_setting(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` -> (name, float value or the category text)."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"--set takes NAME=VALUE (e.g. qrs=100), got {text!r}.")
    try:
        return name, float(value)
    except ValueError:
        return name, value


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", default=BUNDLE, help="a shipped bundle's name or folder (default: the ECG bundle)")
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument(
        "--formats", nargs="+", default=None,
        help="output formats to time (default: array and the bundle's clinical format, wfdb or nifti)",
    )
    parser.add_argument("--nproc", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each process")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="samples per batch (a fixed size: the steady-state rate needs several batches per rank)",
    )
    parser.add_argument("--override", action="append", default=[], help="passed to monai-gen generate (ID=VALUE)")
    parser.add_argument(
        "--set", action="append", default=[], type=_phenotype_setting, metavar="NAME=VALUE",
        help="a phenotype every sample asks (monai-gen generate --NAME VALUE; repeatable); none: unconditioned samples",
    )
    parser.add_argument(
        "--bound-batch",
        type=int,
        default=None,
        help="forward batch of the ECG bound (default: guided passes x the job's batch, run as one batch)",
    )
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"], help="of the bound")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    extra = [item for value in args.override for item in ("--override", value)]
    request = dict(args.set)
    extra += [item for name, value in request.items() for item in (f"--{name}", f"{value:g}" if isinstance(value, float) else value)]
    results: dict[str, Any] = {
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "monai": monai.__version__},
        "load_average_start": os.getloadavg(),
        "jobs": [],
    }
    ecg = args.bundle == BUNDLE
    formats = args.formats or ["array", "wfdb" if ecg else "nifti"]
    results["bundle"], results["request"] = args.bundle, request
    if ecg:
        results["bound"] = forward_bound(args.batch_size, args.steps, request=request, precision=args.precision,
                                         repeats=10, forward_batch=args.bound_batch)
        print(f"bound: {results['bound']}", flush=True)
    for output_format in formats:
        for nproc in args.nproc:
            with tempfile.TemporaryDirectory(prefix="throughput_") as folder:
                job = run_job(
                    args.samples,
                    bundle=args.bundle,
                    steps=args.steps,
                    output_format=output_format,
                    nproc=nproc,
                    threads=args.threads,
                    batch_size=args.batch_size,
                    output_dir=Path(folder) / "out",
                    extra=extra,
                )
            job["load_average_after"] = os.getloadavg()
            results["jobs"].append(job)
            print(json.dumps(job), flush=True)
    results["load_average_end"] = os.getloadavg()
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
