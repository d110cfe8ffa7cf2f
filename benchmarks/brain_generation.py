"""Brain MRI generation benchmark: the shipped bundle's slices per second next to MONAI's tutorial pipeline.

Run ``python -m benchmarks.brain_generation`` (``--tiny`` for a seconds-long smoke run). In one process it measures:

- **ours**: the bundle's default generation end to end (config parsing, weight loading, 25 DPM-Solver++(2M) steps,
  decoding, NIfTI + PNG writing and the grid) through ``run_bundle_workflow``, seconds per slice;
- the **reference**: MONAI ``LatentDiffusionInferer.sample`` with a 1000-step ``DDPMScheduler`` carrying the bundle's
  own noise levels, on the same denoiser and autoencoder and the same conditions (sampling and decoding only);
- the fidelity of both to the requested slice position and sex on held-out test conditions, read by linear probes
  trained on the real training slices (:class:`monai_gen.metrics.fidelity.PhenotypeProbe`), so speed is never bought
  with quality silently;
- the process's peak resident memory after each part (``ru_maxrss``; the reference runs second, so its figure is
  the maximum of both).

Results are printed and written as JSON (``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.inferers import LatentDiffusionInferer

from benchmarks.generation import MonaiCallingConvention, reference_scheduler
from monai_gen.bundle.registry import find_bundle, run_bundle_workflow
from monai_gen.engines.requests import SampleRequest
from monai_gen.metrics.fidelity import PhenotypeProbe

BUNDLE = "brain_mri_generative_diffusion"
REFERENCE_STEPS = 1000


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bundle_parts(cache_dir: Path) -> dict[str, Any]:
    """The shipped bundle's networks, conditions and cohorts, parsed from its ``common.json`` (weights from ``models/``)."""
    root = find_bundle(BUNDLE)
    parser = ConfigParser()
    parser.read_meta(root / "configs" / "metadata.json")
    parser.read_config(root / "configs" / "common.json")
    parser.update({"bundle_root": str(root), "models_dir": str(root / "models"), "cache_dir": str(cache_dir)})
    get = lambda key: parser.get_parsed_content(key, instantiate=True)  # noqa: E731
    parts = {key: get(key) for key in ("network", "latent_space", "schedule", "conditions", "normalisation",
                                       "sample_generator")}
    parts["network"].eval()
    parts["shape"] = tuple(parser.get_parsed_content("sample_shape"))
    parts["load_cohorts"] = lambda: get("cohorts")  # built (or read from cache_dir) only when fidelity is measured
    return parts


def test_rows(parts: dict[str, Any], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` conditions of real held-out test slices (age, sex, slice position), drawn with ``seed``."""
    rows = parts["cohorts"].test.rows
    picked = np.random.default_rng(seed).choice(len(rows), size=min(count, len(rows)), replace=False)
    names = parts["conditions"].names
    return [{k: rows[i][k] for k in names if rows[i].get(k) is not None} for i in sorted(picked)]


def reference_slices(
    parts: dict[str, Any], rows: list[dict[str, Any]], seeds: list[int], steps_to_time: int | None = None
) -> tuple[torch.Tensor | None, float]:
    """MONAI LatentDiffusionInferer + 1000-step DDPM on the same networks; (slices in [0, 1], seconds).

    With ``steps_to_time`` only that many steps are run and the seconds extrapolated to 1000 (no slices returned).
    """
    values, mask = parts["conditions"].encode_rows(rows)
    wrapped = MonaiCallingConvention(parts["network"], values, mask)
    scheduler = reference_scheduler(parts["schedule"])
    space = parts["latent_space"]
    inferer = LatentDiffusionInferer(scheduler, scale_factor=float(space.scaler.scale))
    noise = torch.stack([torch.randn(*parts["shape"], generator=torch.Generator().manual_seed(s)) for s in seeds])
    if steps_to_time is not None:
        scheduler.timesteps = scheduler.timesteps[:steps_to_time]
    start = time.perf_counter()
    with torch.inference_mode():
        decoded = inferer.sample(noise, space.autoencoder, wrapped, scheduler, verbose=False)
    seconds = time.perf_counter() - start
    if steps_to_time is not None:
        return None, seconds * REFERENCE_STEPS / steps_to_time
    return parts["normalisation"].inverse(decoded), seconds


def ours_end_to_end(rows: list[dict[str, Any]], output_dir: Path) -> float:
    """Seconds for the bundle's default inference of one slice per row's conditions (4 at a time, as a user asks)."""
    start = time.perf_counter()
    for i, row in enumerate(rows):
        run_bundle_workflow(BUNDLE, "inference", {**row, "num_samples": 1, "seed": i, "progress": False,
                                                  "output_dir": str(output_dir / f"row_{i}")})
    return time.perf_counter() - start


def fidelity(parts: dict[str, Any], pipelines: dict[str, torch.Tensor], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per pipeline, the slice-position R and sex AUROC of probes trained (once) on the real training slices."""
    train = parts["cohorts"].train
    items = train.items.numpy()
    sexes = parts["conditions"]["sex"].categories

    def sex_of(table: list[dict[str, Any]]) -> list[float]:
        return [sexes.index(r["sex"]) if r.get("sex") in sexes else np.nan for r in table]

    position = PhenotypeProbe("continuous", n_components=64).fit(items, [r["slice_position"] for r in train.rows])
    sex = PhenotypeProbe("binary", n_components=64).fit(items, sex_of(train.rows))
    return {
        name: {"slice_position_r": position.score(slices.numpy(), [r["slice_position"] for r in rows]).value,
               "sex_auroc": sex.score(slices.numpy(), sex_of(rows)).value}
        for name, slices in pipelines.items()
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    parts = bundle_parts(args.cache_dir)
    if args.tiny:  # no cohort: fixed conditions, the reference timed over 10 steps, no fidelity
        rows = [{"age": 60.0, "sex": "F", "slice_position": 0.5}] * args.slices
    else:
        parts["cohorts"] = parts["load_cohorts"]()
        rows = test_rows(parts, args.slices, args.seed)
    seeds = list(range(args.seed, args.seed + len(rows)))
    results: dict[str, Any] = {
        "torch": torch.__version__, "monai": monai.__version__, "threads": args.threads, "cpu": platform.processor(),
        "slices": len(rows), "reference_steps": REFERENCE_STEPS,
    }
    with tempfile.TemporaryDirectory() as tmp:
        end_to_end = ours_end_to_end(rows[: args.end_to_end_slices], Path(tmp))
    results["ours"] = {"seconds_per_slice_end_to_end": end_to_end / min(len(rows), args.end_to_end_slices),
                       "peak_rss_mb": _peak_rss_mb()}
    start = time.perf_counter()
    with torch.inference_mode():
        ours = parts["sample_generator"]([SampleRequest(f"s{i}", s, r) for i, (r, s) in enumerate(zip(rows, seeds, strict=True))])
    results["ours"]["sampling_seconds_per_slice"] = (time.perf_counter() - start) / len(rows)
    reference, seconds = reference_slices(parts, rows, seeds, steps_to_time=10 if args.tiny else None)
    results["reference"] = {"sampling_seconds_per_slice": seconds / len(rows), "peak_rss_mb": _peak_rss_mb(),
                            "extrapolated_from_steps": 10 if args.tiny else None}
    results["speedup_sampling"] = results["reference"]["sampling_seconds_per_slice"] / results["ours"]["sampling_seconds_per_slice"]
    results["speedup_end_to_end"] = results["reference"]["sampling_seconds_per_slice"] / results["ours"]["seconds_per_slice_end_to_end"]
    if reference is not None:
        results["fidelity"] = fidelity(parts, {"ours": ours.cpu(), "reference": reference.cpu()}, rows)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=32, help="test conditions generated by both pipelines")
    parser.add_argument("--end-to-end-slices", type=int, default=4, help="slices timed through the whole inference config")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=Path("runs") / BUNDLE / "benchmark" / "cache",
                        help="cohort cache (the training run's cache folder is reused when its inputs match)")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--tiny", action="store_true",
                        help="smoke run: 2 slices of fixed conditions, the reference timed over 10 steps, no fidelity")
    args = parser.parse_args(argv)
    if args.tiny:
        args.slices, args.end_to_end_slices = 2, 1
    results = run(args)
    print(json.dumps(results, indent=2))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
