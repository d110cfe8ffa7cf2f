"""CT generation benchmark: memory and seconds per volume end to end, and the sampler against MONAI's tutorial pipeline.

Run ``python -m benchmarks.ct_generation`` once the bundle ships weights (``--models-dir runs/<run>/models`` before
they are exported; ``--tiny`` trains the configuration-only test bundle ``tests/bundle/tiny_ct_bundle`` for one epoch
per stage and runs everything on it in about a minute). It measures (:mod:`benchmarks.image_generation` holds the
parts every image bundle's benchmark shares):

- **end to end, per volume**: the bundle's inference workflow (``run_bundle_workflow``: config parsing, weight loading,
  25 DPM-Solver++(2M) steps, the decoding the config asks for (``decode_slab_size``: streamed, exact), NIfTI + CT
  DICOM series + three preview PNGs (``per_sample_previews`` on) + the job's contact sheet) for one volume of
  ``--volume-size``^3 voxels (config id ``volume_size``) and one at the default patch size, each in a **child process
  of its own**, so its peak resident memory (``ru_maxrss``: the whole process, Python, torch and the networks
  included) is that volume's alone; on CUDA the child's peak GPU memory too. ``--compare-full-decode`` adds the large
  volume decoded whole (``decode_slab_size`` null: MONAI's ``decode_stage_2_outputs``), what the streamed decoding
  saves. The files each run wrote are counted and the NIfTI's shape read back;
- **sampling at the patch size**: the bundle's ``sample_generator`` on ``--patches`` requests in one batch, against
  MONAI ``LatentDiffusionInferer.sample`` with a 1000-step ``DDPMScheduler`` carrying the bundle's own noise levels,
  on the same denoiser, autoencoder, latent scale, initial noise and denoiser inputs (the craniocaudal position, and the
  organ channels the generator adds: zeros with presence 0 for requests without a label map, as here); each
  pipeline's decoding of such a batch is also timed alone, so the speedup is given with and without it;
  ``--fewer-steps K`` adds ours at ``K`` steps (``ours_fewer_steps``), timed and scored beside the others;
- **quality of both**: the craniocaudal-position R read by a linear probe trained on the real training patches
  (:class:`~monai_gen.metrics.evaluation.ProbeFidelity`), Fréchet distance and linear MMD in a PCA space of the real
  training patches (:class:`~monai_gen.metrics.evaluation.DistributionDistances`) and the Wasserstein-1 distance in HU
  between the HU histograms of all voxels (:func:`~monai_gen.metrics.ct.hu_wasserstein`), each against the real
  patches whose conditions were requested, beside the same figures of the real items (the probe on those patches;
  the distances from the real training patches).

The requested conditions are those of real patches of the held-out split by default (``--conditions-from``). Results
are printed and written as JSON (``--output``); the issue's targets (``memory_target_gb``, ``speedup_target``) are
written beside the figures they judge.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.generation import REFERENCE_STEPS
from benchmarks.image_generation import (
    CONDITION_SOURCES,
    ImageBundle,
    ProbeSetup,
    add_run_arguments,
    condition_rows,
    default_cache_dir,
    environment,
    load_image_bundle,
    memory_figures,
    probe_fidelity,
    probes_for,
    sample_ours,
    sample_reference,
    write_results,
)
from benchmarks.machine import rss_mb
from monai_gen.bundle.registry import run_bundle_workflow, training_stages
from monai_gen.metrics.ct import hu_wasserstein
from monai_gen.metrics.evaluation import DistributionDistances, EvaluationData

BUNDLE = "ct_generative_diffusion"
REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_BUNDLE = REPO_ROOT / "tests" / "bundle" / "tiny_ct_bundle"
TINY_SETTINGS = {"patches": 8, "volume_size": 32, "probe_components": 4, "pca_components": 4, "conditions_from": "train"}
"""``--tiny``: 8 patches of 16^3 voxels (4 mm), the large volume 32^3, small PCA spaces, and the conditions of training
patches (the tiny cohort's 12 patches leave 3 held out, too few for an R)."""
PROBED = ("craniocaudal_position",)
END_TO_END_POSITION = 0.5
"""The craniocaudal position requested of each end-to-end volume."""
MEMORY_TARGET_GB = 4.0  # issue 15: a 128^3 volume on CPU peaks at <= 4 GB resident memory
SPEEDUP_TARGET = 50.0  # issue 15: >= 50x MONAI's 1000-step tutorial pipeline at equal quality


def train_tiny(train_dir: Path, cache_dir: Path) -> Path:
    """Train the tiny test bundle for one epoch per stage on its example records into ``train_dir`` (cohort cached in
    ``cache_dir``); returns its models folder."""
    for stage in training_stages(TINY_BUNDLE):
        run_bundle_workflow(TINY_BUNDLE, stage, {"output_dir": str(train_dir), "cache_dir": str(cache_dir),
                                                 "max_epochs": 1})
    return train_dir / "models"


def volume_overrides(bundle: ImageBundle, size: Sequence[int]) -> dict[str, Any]:
    """Config ids of an end-to-end run of one volume of ``size`` voxels: the inference config's ``volume_size`` and,
    where the config has the option, ``per_sample_previews`` on (the three orthogonal previews per volume issue 15
    asks for, beside the job's contact sheet).

    Raises:
        ValueError: the bundle's inference config has no ``volume_size``.
    """
    if "volume_size" not in bundle.parser:
        raise ValueError(f"{bundle.name}: the inference config has no volume_size option, so it generates its patch "
                         "size only.")
    previews = {"per_sample_previews": True} if "per_sample_previews" in bundle.parser else {}
    return {"volume_size": [int(s) for s in size], **previews}



def _written(output_dir: Path) -> dict[str, Any]:
    """What a one-volume inference run wrote: file counts, and the NIfTI's shape and voxel size read back."""
    import nibabel as nib

    niftis = sorted(output_dir.glob("*.nii.gz"))
    written = {"nifti_files": len(niftis), "dicom_files": len(list(output_dir.glob("*_dicom/*.dcm"))),
               "preview_files": sorted(p.name for p in output_dir.rglob("*.png"))}
    if niftis:
        header = nib.load(niftis[0]).header
        written.update(nifti_shape=[int(s) for s in header.get_data_shape()],
                       nifti_spacing_mm=[float(z) for z in header.get_zooms()])
    return written


def run_child(spec: Mapping[str, Any]) -> dict[str, Any]:
    """In the child process: run the inference workflow once with ``spec["overrides"]`` and report its seconds, the
    process's peak resident memory (and, on CUDA, peak GPU memory) and what it wrote."""
    torch.set_num_threads(int(spec["threads"]))
    cuda = torch.cuda.is_available()  # the bundles run on cuda:0 when there is one
    baseline = rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run_bundle_workflow(spec["bundle"], "inference", spec["overrides"])
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: kB
    result = {"seconds": seconds, "peak_rss_mb": peak_kb / 1024, "peak_rss_gb": peak_kb * 1024 / 1e9,
              "baseline_rss_mb": baseline, **_written(Path(spec["overrides"]["output_dir"]))}
    if cuda:
        result["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["peak_gpu_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    return result


def end_to_end_volume(
    bundle: ImageBundle, size: Sequence[int], *, seed: int, threads: int, work_dir: Path,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One volume of ``size`` voxels through the bundle's inference workflow in a child process (``extra``: further
    config ids, e.g. ``decode_slab_size``): ``{volume_size, seconds_per_volume, process_seconds, peak_rss_mb, ...}``.

    Raises:
        RuntimeError: the child failed (its last output is in the message).
    """
    size = [int(s) for s in size]
    name = "x".join(map(str, size)) + ("_" + "_".join(map(str, extra)) if extra else "")
    overrides = {**bundle.overrides, **volume_overrides(bundle, size),
                 "num_samples": 1, "seed": seed, "craniocaudal_position": END_TO_END_POSITION, "progress": False,
                 "output_dir": str(work_dir / name), **dict(extra or {})}
    spec_file, result_file = work_dir / f"{name}.spec.json", work_dir / f"{name}.result.json"
    spec_file.write_text(json.dumps({"bundle": str(bundle.root), "overrides": overrides, "threads": threads,
                                     "result": str(result_file)}))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchmarks.ct_generation", "--child", str(spec_file)],
                          capture_output=True, text=True, check=False, env=env)
    process_seconds = time.perf_counter() - start
    if done.returncode != 0 or not result_file.is_file():
        raise RuntimeError(f"the end-to-end run of a {name} volume failed (exit {done.returncode}):\n"
                           f"{(done.stdout + done.stderr)[-3000:]}")
    child = json.loads(result_file.read_text())
    settings = {k: bundle.option(k) for k in ("decode_slab_size", "decode_tile_size")}
    return {"volume_size": size, "volumes": 1, "seconds_per_volume": child.pop("seconds"),
            "process_seconds": process_seconds, **settings, **dict(extra or {}), **child}


def _patch_size(bundle: ImageBundle) -> list[int]:
    return [int(s) for s in bundle.option("patch_size")]


def distribution_scores(
    setup: ProbeSetup, pipelines: Mapping[str, torch.Tensor], *, n_components: int, hu_window: Sequence[float],
    seed: int,
) -> dict[str, Any]:
    """Per pipeline, and for the real training patches (``"real_train"``), distances to the requested real patches:
    Fréchet and linear MMD in a PCA space of the real training patches, and the HU-histogram Wasserstein-1 (HU) of
    all voxels. Lower is closer."""
    measure = DistributionDistances(n_components)
    target = setup.requested.items.numpy().ravel()
    scores: dict[str, Any] = {}
    for name, images in pipelines.items():
        data = EvaluationData(synthetic=images, requested=[], train=setup.train, test=setup.requested, seed=seed)
        section = measure(data)
        scores[name] = {"frechet": section["frechet_distance"]["synthetic_vs_test"],
                        "mmd": section["mmd"]["synthetic_vs_test"],
                        "hu_wasserstein": hu_wasserstein(images.numpy().ravel(), target, hu_range=hu_window)}
        scores.setdefault("real_train", {
            "frechet": section["frechet_distance"]["train_vs_test"], "mmd": section["mmd"]["train_vs_test"],
            "hu_wasserstein": hu_wasserstein(setup.train.items.numpy().ravel(), target, hu_range=hu_window)})
    return {"feature_space": f"PCA({n_components}) of standardised real training patches",
            **{name: scores[name] for name in (*pipelines, "real_train")}}


def decode_seconds(bundle: ImageBundle, count: int) -> dict[str, float]:
    """Seconds per patch to decode ``count`` latents (random: the cost does not depend on their values) as each
    pipeline decodes them: ``ours`` the bundle's ``latent_space.decode`` (its ``decode_slab_size`` / tile settings),
    ``reference`` MONAI's whole ``decode_stage_2_outputs``, as ``LatentDiffusionInferer.sample`` ends."""
    space = bundle.latent_space
    latents = torch.randn(count, *bundle.shape, generator=torch.Generator().manual_seed(0)).to(bundle.device)
    decoders = {"ours": space.decode, "reference": lambda z: space.autoencoder.decode_stage_2_outputs(space.scaler.inverse(z))}
    seconds = {}
    for name, decode in decoders.items():
        start = time.perf_counter()
        with torch.inference_mode():
            decode(latents)
            if bundle.device.type == "cuda":
                torch.cuda.synchronize(bundle.device)
        seconds[name] = (time.perf_counter() - start) / count
    return seconds


def with_steps(bundle: ImageBundle, steps: int) -> ImageBundle:
    """The same bundle (weights, cohort cache, overrides) parsed again with ``num_inference_steps = steps``."""
    return load_image_bundle(bundle.root, cache_dir=Path(bundle.overrides["cache_dir"]),
                             overrides={**bundle.overrides, "num_inference_steps": int(steps)})


def _time_ours(bundle: ImageBundle, rows: Sequence[Mapping[str, Any]], seeds: Sequence[int]
               ) -> tuple[torch.Tensor, dict[str, Any]]:
    images, seconds = sample_ours(bundle, rows, seeds)
    return images, {"num_inference_steps": int(bundle.option("num_inference_steps")),
                    "sampling_seconds_per_patch": seconds / len(rows),
                    **{f"sampling_{k}": v for k, v in memory_figures(bundle.device).items()}}


def sampling_comparison(
    bundle: ImageBundle, setup: ProbeSetup, rows: Sequence[Mapping[str, Any]], seeds: Sequence[int], *,
    reference_steps: int | None, pca_components: int, fewer_steps: int | None = None,
) -> dict[str, Any]:
    """Ours (and, with ``fewer_steps``, ours at that step count: ``ours_fewer_steps``) and the 1000-step reference on
    the same patch-size batch: seconds per patch, memory, speedups (also without each pipeline's decoding, timed
    apart by :func:`decode_seconds`) and, when the reference ran all its steps, the quality of each."""
    pipelines, results = {}, {}
    variants = {"ours": bundle} | ({"ours_fewer_steps": with_steps(bundle, fewer_steps)} if fewer_steps else {})
    for name, variant in variants.items():
        pipelines[name], results[name] = _time_ours(variant, rows, seeds)
    reference, seconds = sample_reference(bundle, rows, seeds, steps_to_time=reference_steps)
    results["reference"] = {"sampling_seconds_per_patch": seconds / len(rows),
                            **{f"sampling_{k}": v for k, v in memory_figures(bundle.device).items()},
                            "extrapolated_from_steps": reference_steps}
    per_patch = results["reference"]["sampling_seconds_per_patch"]
    for name in variants:
        suffix = name.removeprefix("ours")
        results[f"speedup_sampling{suffix}"] = per_patch / results[name]["sampling_seconds_per_patch"]
    for name, seconds in decode_seconds(bundle, len(rows)).items():
        results[name]["decode_seconds_per_patch"] = seconds
    results["speedup_without_decoding"] = (
        (per_patch - results["reference"]["decode_seconds_per_patch"])
        / (results["ours"]["sampling_seconds_per_patch"] - results["ours"]["decode_seconds_per_patch"]))
    if reference is not None:
        pipelines["reference"] = reference
        results["fidelity"] = probe_fidelity(setup, pipelines, rows)
        hu_window = bundle.option("hu_window")
        results["distribution"] = distribution_scores(setup, pipelines, n_components=pca_components,
                                                      hu_window=hu_window, seed=seeds[0])
        # the two samplers' HU histograms against each other: free of the real split's own distance
        results["distribution"]["ours_vs_reference"] = {"hu_wasserstein": hu_wasserstein(
            pipelines["ours"].numpy().ravel(), reference.numpy().ravel(), hu_range=hu_window)}
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    cache_dir = args.cache_dir or default_cache_dir(Path(args.bundle).name)
    models_dir = args.models_dir
    if args.tiny and models_dir is None:
        models_dir = train_tiny(cache_dir.parent / "tiny_train", cache_dir)
    bundle = load_image_bundle(args.bundle, cache_dir=cache_dir, models_dir=models_dir)
    compression = int(bundle.option("compression"))
    if args.volume_size % compression:
        raise ValueError(f"--volume-size must be a multiple of the autoencoder's compression {compression}, got "
                         f"{args.volume_size}.")
    memory_figures(bundle.device)  # resets the GPU peak: each part's figure below is its own
    results: dict[str, Any] = {**environment(bundle, args.threads), "reference_steps": REFERENCE_STEPS,
                               "memory_target_gb": MEMORY_TARGET_GB, "speedup_target": SPEEDUP_TARGET}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [([args.volume_size] * 3, None), (_patch_size(bundle), None)]
        if args.compare_full_decode:
            runs.append(([args.volume_size] * 3, {"decode_slab_size": None, "decode_tile_size": None}))
        results["end_to_end"] = [end_to_end_volume(bundle, size, seed=args.seed, threads=args.threads,
                                                   work_dir=Path(tmp), extra=extra) for size, extra in runs]
    large = results["end_to_end"][0]
    results["meets_memory_target"] = large["peak_rss_gb"] <= MEMORY_TARGET_GB

    cohorts = bundle.cohorts()
    source = getattr(cohorts, args.conditions_from)
    rows, picked = condition_rows(source, bundle.conditions.names, args.patches, args.seed)
    seeds = list(range(args.seed, args.seed + len(rows)))
    setup = ProbeSetup(probes_for(bundle.conditions, PROBED, n_components=args.probe_components), cohorts.train,
                       source.subset(picked))
    results.update(patches=len(rows), patch_size=_patch_size(bundle), conditions_from=args.conditions_from)
    results.update(sampling_comparison(bundle, setup, rows, seeds, reference_steps=args.reference_steps,
                                       pca_components=args.pca_components, fewer_steps=args.fewer_steps))
    results["speedup_end_to_end"] = (results["reference"]["sampling_seconds_per_patch"]
                                     / results["end_to_end"][1]["seconds_per_volume"])
    return results


def _print_summary(results: Mapping[str, Any]) -> None:
    for run in results["end_to_end"]:
        gpu = f", peak GPU {run['peak_gpu_memory_mb']:.0f} MB" if "peak_gpu_memory_mb" in run else ""
        print(f"end to end {'x'.join(map(str, run['volume_size']))} (slab {run['decode_slab_size']}): "
              f"{run['seconds_per_volume']:.1f} s per volume, peak RSS {run['peak_rss_gb']:.2f} GB{gpu}")
    ours, ref = results["ours"], results["reference"]
    print(f"sampling per {'x'.join(map(str, results['patch_size']))} patch (batch {results['patches']}): ours "
          f"{ours['sampling_seconds_per_patch']:.2f} s, reference {ref['sampling_seconds_per_patch']:.1f} s, "
          f"{results['speedup_sampling']:.1f}x ({results['speedup_without_decoding']:.1f}x without decoding: "
          f"{ours['decode_seconds_per_patch']:.2f} s vs {ref['decode_seconds_per_patch']:.2f} s per patch)")
    if "ours_fewer_steps" in results:
        fast = results["ours_fewer_steps"]
        print(f"ours at {fast['num_inference_steps']} steps: {fast['sampling_seconds_per_patch']:.2f} s per patch, "
              f"{results['speedup_sampling_fewer_steps']:.1f}x")
    for name, scores in results.get("fidelity", {}).items():  # "real": the probe on the requested real patches,
        dist = results["distribution"].get(name if name != "real" else "real_train", {})  # distances of training ones
        print(f"quality {name}: craniocaudal R {scores['craniocaudal_position_r']:.2f}, Fréchet "
              f"{dist.get('frechet', float('nan')):.1f}, HU W1 {dist.get('hu_wasserstein', float('nan')):.1f} HU")
    if "distribution" in results:
        print(f"HU W1 ours vs reference: {results['distribution']['ours_vs_reference']['hu_wasserstein']:.1f} HU")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=BUNDLE, help="bundle name or folder")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="weights folder (default: the bundle's models/), e.g. a training run's models/")
    parser.add_argument("--volume-size", type=int, default=128, help="edge (voxels) of the large end-to-end volume")
    parser.add_argument("--compare-full-decode", action="store_true",
                        help="also run the large volume decoded whole (decode_slab_size null)")
    parser.add_argument("--patches", type=int, default=16, help="patch-size requests sampled by both pipelines")
    parser.add_argument("--fewer-steps", type=int, default=None,
                        help="also sample and score ours at this many steps (e.g. the count a speedup target needs)")
    parser.add_argument("--reference-steps", type=int, default=None,
                        help="time the reference over this many steps and extrapolate (then its quality is not "
                        "measured); default: all 1000")
    parser.add_argument("--conditions-from", choices=CONDITION_SOURCES, default="test",
                        help="the real split whose patches' conditions are requested")
    parser.add_argument("--probe-components", type=int, default=32, help="PCA components under the probe")
    parser.add_argument("--pca-components", type=int, default=16, help="PCA components of the distribution distances")
    add_run_arguments(parser, threads=1)
    parser.add_argument("--tiny", action="store_true",
                        help="smoke run on tests/bundle/tiny_ct_bundle, trained here for one epoch per stage unless "
                        "--models-dir holds its weights: 8 training patches' conditions, a 32^3 volume, the full 1000-step "
                        "reference")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.child is not None:
        spec = json.loads(args.child.read_text())
        result = run_child(spec)
        Path(spec["result"]).write_text(json.dumps(result))
        return result
    for name in ("patches", "volume_size", "probe_components", "pca_components", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    if args.fewer_steps is not None and args.fewer_steps < 2:
        parser.error(f"--fewer-steps must be at least 2 (DPM-Solver++(2M) takes two), got {args.fewer_steps}.")
    if args.reference_steps is not None and not 1 <= args.reference_steps <= REFERENCE_STEPS:
        parser.error(f"--reference-steps must be in [1, {REFERENCE_STEPS}], got {args.reference_steps}.")
    if args.tiny:
        args.bundle = str(TINY_BUNDLE)
        for name, value in TINY_SETTINGS.items():
            setattr(args, name, value)
    results = run(args)
    _print_summary(results)
    write_results(results, args.output)
    return results


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
