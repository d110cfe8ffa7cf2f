"""Step count and precision of the ECG bundle's sampler, chosen by its own fidelity measure (issue 16 item 3).

Run ``python -m benchmarks.ecg_steps --threads 1``. On the evaluation's held-out test conditions (``evaluate.json``:
its cohort, ``max_samples`` picked evenly, seed ``i`` for condition ``i``) it samples:

- the **reference**: MONAI ``DiffusionInferer.sample`` with a 1000-step ``DDPMScheduler`` carrying the bundle's noise
  levels, on the same network, with MONAI's own classifier-free guidance at the bundle's scale (the condition mask is
  MONAI's ``conditioning``, filled with 0 = every condition dropped for the unconditional pass), the same initial
  noise and post-processing; cached under ``--cache-dir`` (40 min on one shared CPU thread for 128 beats);
- **ours**: the bundle's ``sample_generator`` (``common.json``) at each ``--samplers`` x ``--steps`` x
  ``--precisions`` setting, timed;
- a **converged** run of ours (``--converged-steps``, the first sampler): the mean absolute difference of each setting
  from it in mV is the solver's own error, free of the sampling noise that separates ours from the stochastic
  reference.

For each it reports the evaluation's QRS / QT / heart-rate fidelity (Pearson R of measured vs requested, the
LUDB-validated delineation of :func:`monai_gen.bundle.ecg_evaluation.measure_beats`) with a bootstrap standard error
and 95 % interval over the conditions, and the paired bootstrap interval of its ratio to the reference's R.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.inferers import DiffusionInferer
from safetensors.torch import load_file, save_file

from benchmarks.generation import REFERENCE_STEPS, MonaiCallingConvention, reference_scheduler
from monai_gen.bundle.ecg_evaluation import measure_beats
from monai_gen.bundle.registry import find_bundle, workflow_config_names
from monai_gen.diffusion.samplers import per_sample_generators, sample_noise
from monai_gen.engines.requests import SampleRequest

__all__ = ["EcgEvaluationSetup", "load_setup", "reference_beats", "ours_beats", "fidelity", "compare", "main"]

BUNDLE = "ecg_generative_diffusion"
MEASURES = ("qrs", "qt", "heart_rate")


class EcgEvaluationSetup:
    """The bundle's evaluation as both pipelines see it: ``common.json`` + ``evaluate.json`` with ``overrides``.

    ``rows`` / ``seeds``: the first ``max_samples`` held-out conditions, picked as the evaluation picks them.
    """

    def __init__(self, overrides: Mapping[str, Any]) -> None:
        self.root = find_bundle(BUNDLE)
        self.overrides = dict(overrides)
        test = self.parser().get_parsed_content("dataset", instantiate=True).test
        count = int(self.overrides.get("max_samples", 128))
        picks = np.linspace(0, len(test) - 1, min(count, len(test))).round().astype(int)
        self.rows = [{k: v for k, v in test.rows[i].items() if k != test.subject_key} for i in picks]
        self.seeds = [int(self.overrides.get("seed", 0)) + i for i in range(len(self.rows))]

    def parser(self, **extra: Any) -> ConfigParser:
        parser = ConfigParser()
        parser.read_meta(self.root / "configs" / "metadata.json")
        parser.read_config([self.root / "configs" / f"{n}.json" for n in workflow_config_names(self.root, "evaluate")])
        parser.update({"bundle_root": str(self.root), **self.overrides, **extra})
        return parser

    def sample_generator(self, **settings: Any):
        """The bundle's ``sample_generator`` with config ids ``settings`` (e.g. ``num_inference_steps=12``)."""
        return self.parser(**settings).get_parsed_content("sample_generator", instantiate=True)

    def requests(self) -> list[SampleRequest]:
        return [SampleRequest(f"eval_{i}", s, r) for i, (r, s) in enumerate(zip(self.rows, self.seeds, strict=True))]

    def key(self, guidance_scale: float) -> str:
        """What the reference depends on: weights, conditions, seeds, guidance scale."""
        digest = hashlib.sha256((self.root / "models" / "model.safetensors").read_bytes())
        digest.update(json.dumps([self.rows, self.seeds, guidance_scale], sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]


def load_setup(cache_dir: Path, max_samples: int) -> EcgEvaluationSetup:
    return EcgEvaluationSetup({"cache_dir": str(cache_dir), "max_samples": max_samples})


def reference_beats(setup: EcgEvaluationSetup, cache_dir: Path, *, batch_size: int) -> tuple[torch.Tensor, dict]:
    """MONAI's 1000-step guided DDPM beats ``(N, 12, 576)`` mV for the setup's conditions, read from the cache if there.

    Returns:
        The beats and ``{"seconds", "cached", "file"}`` (seconds of the run that made them).
    """
    generator = setup.sample_generator()
    scale = float(setup.parser().get_parsed_content("guidance_scale"))
    path = cache_dir / f"reference_ddpm{REFERENCE_STEPS}_g{scale:g}_{setup.key(scale)}.safetensors"
    if path.is_file():
        stored = load_file(path)
        return stored["beats"], {"seconds": float(stored["seconds"]), "cached": True, "file": str(path)}
    scheduler = reference_scheduler(generator.inferer.schedule)
    inferer = DiffusionInferer(scheduler)
    chunks, start = [], time.perf_counter()
    requests = setup.requests()
    for i in range(0, len(requests), batch_size):
        chunk = requests[i : i + batch_size]
        values, mask = generator.conditions.encode_rows([r.conditions for r in chunk])
        noise = sample_noise(
            (len(chunk), *generator.sample_shape), generator=per_sample_generators([r.seed for r in chunk])
        )
        network = MonaiCallingConvention(generator.network, values, mask)
        torch.manual_seed(chunk[0].seed)  # MONAI's DDPM step draws its noise from the global RNG
        samples = inferer.sample(
            noise,
            network,
            scheduler,
            conditioning=mask,
            cfg=None if scale == 1 else scale,
            cfg_fill_value=0.0,
            verbose=True,
        )
        chunks.append(generator.postprocess(generator.normalisation.inverse(samples.float())))
    beats, seconds = torch.cat(chunks), time.perf_counter() - start
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_file({"beats": beats.contiguous(), "seconds": torch.tensor(seconds, dtype=torch.float64)}, str(path))
    return beats, {"seconds": seconds, "cached": False, "file": str(path)}


def ours_beats(setup: EcgEvaluationSetup, *, batch_size: int, **settings: Any) -> tuple[torch.Tensor, float]:
    """Our beats ``(N, 12, 576)`` mV from the bundle's generator with config ids ``settings``; sampling seconds."""
    generator = setup.sample_generator(**settings)
    requests = setup.requests()
    generator(requests[:1])  # warm-up: oneDNN primitive creation, first-call allocations
    start = time.perf_counter()
    beats = torch.cat([generator(requests[i : i + batch_size]) for i in range(0, len(requests), batch_size)])
    return beats, time.perf_counter() - start


def _interval(boot: np.ndarray) -> list[float]:
    boot = boot[np.isfinite(boot)]
    return np.percentile(boot, [2.5, 97.5]).tolist() if boot.size > 1 else [float("nan")] * 2


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def fidelity(measured: Mapping[str, np.ndarray], requested: Mapping[str, np.ndarray], draws: np.ndarray) -> dict:
    """Per measure: R, its bootstrap SE and 95 % interval (``draws``: ``(B, N)`` resampled condition indices), n."""
    scores = {}
    for name in MEASURES:
        x, y = requested[name], measured[name]
        boot = np.array([_pearson(x[d], y[d]) for d in draws])
        finite = boot[np.isfinite(boot)]
        scores[name] = {
            "r": _pearson(x, y),
            "se": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
            "ci95": _interval(boot),
            "n": int((np.isfinite(x) & np.isfinite(y)).sum()),
            "n_failed": int((np.isfinite(x) & ~np.isfinite(y)).sum()),
        }
    return scores


def compare(
    ours: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    requested: Mapping[str, np.ndarray],
    draws: np.ndarray,
) -> dict:
    """Per measure: ours' R / the reference's R with its paired bootstrap 95 % interval (same resampled conditions)."""
    ratios = {}
    for name in MEASURES:
        x = requested[name]
        boot = np.array([_pearson(x[d], ours[name][d]) / _pearson(x[d], reference[name][d]) for d in draws])
        ratios[name] = {"ratio": _pearson(x, ours[name]) / _pearson(x, reference[name]), "ci95": _interval(boot)}
    return ratios


def _measured(beats: torch.Tensor) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=float) for k, v in measure_beats(beats).items()}


def _settings(args: argparse.Namespace) -> list[dict[str, Any]]:
    grid = [
        {"sampler": s, "num_inference_steps": n, "inferer#precision": p}
        for p in args.precisions
        for s in args.samplers
        for n in args.steps
    ]
    return [{k: v for k, v in g.items() if not (k == "inferer#precision" and v == "float32")} for g in grid]


def _listed(measured: Mapping[str, np.ndarray]) -> dict[str, list[float | None]]:
    """Per-sample measurements for the JSON (None where the measurement failed), for paired analyses later."""
    return {n: [None if not np.isfinite(v) else float(v) for v in measured[n]] for n in MEASURES}


def _bundle_default(setup: EcgEvaluationSetup) -> dict[str, Any]:
    parser = setup.parser()
    return {
        "sampler": parser.get_parsed_content("sampler"),
        "num_inference_steps": parser.get_parsed_content("num_inference_steps"),
    }


def _score(
    settings: Mapping[str, Any],
    beats: torch.Tensor,
    seconds: float,
    anchor: torch.Tensor | None,
    requested,
    draws,
    baselines: Mapping[str, Mapping[str, np.ndarray]],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One setting's row: timing, R with bootstrap SE / interval, paired ratios to ``baselines``, solver error."""
    measured = _measured(beats)
    row = {
        **settings,
        "seconds": seconds,
        "fidelity": fidelity(measured, requested, draws),
        **{f"ratio_to_{name}": compare(measured, base, requested, draws) for name, base in baselines.items()},
        "mean_abs_diff_to_converged_mv": None if anchor is None else float((beats - anchor).abs().mean()),
        "measured": _listed(measured),
    }
    return row, measured


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    setup = load_setup(args.cache_dir, args.samples)
    requested = {n: np.array([np.nan if r.get(n) is None else float(r[n]) for r in setup.rows]) for n in MEASURES}
    draws = np.random.default_rng(0).integers(0, len(setup.rows), size=(args.bootstrap, len(setup.rows)))
    results: dict[str, Any] = {
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "monai": monai.__version__},
        "threads": torch.get_num_threads(),
        "samples": len(setup.rows),
        "bootstrap": args.bootstrap,
        "load_average_start": os.getloadavg(),
        "requested": _listed(requested),
    }
    reference, info = reference_beats(setup, args.cache_dir, batch_size=args.reference_batch_size)
    baselines = {"reference": _measured(reference)}
    results["reference"] = {
        **info,
        "pipeline": f"monai DiffusionInferer.sample(cfg) + DDPMScheduler({REFERENCE_STEPS})",
        "fidelity": fidelity(baselines["reference"], requested, draws),
        "measured": _listed(baselines["reference"]),
    }
    print(f"reference: {info}", flush=True)
    anchor = None
    if args.converged_steps:
        converged = {"sampler": args.samplers[0], "num_inference_steps": args.converged_steps}
        anchor, seconds = ours_beats(setup, batch_size=args.batch_size, **converged)
        results["converged"], _ = _score(converged, anchor, seconds, anchor, requested, draws, baselines)
        results["converged"]["mean_abs_diff_to_reference_mv"] = float((anchor - reference).abs().mean())
        print(_line(results["converged"]), flush=True)
    fp32, measured_rows, results["ours"] = {}, [], []
    for settings in _settings(args):
        beats, seconds = ours_beats(setup, batch_size=args.batch_size, **settings)
        row, measured = _score(settings, beats, seconds, anchor, requested, draws, baselines)
        key = (settings["sampler"], settings["num_inference_steps"])
        if "inferer#precision" not in settings:
            fp32[key] = (beats, seconds, measured)
        elif key in fp32:
            row["mean_abs_diff_to_float32_mv"] = float((beats - fp32[key][0]).abs().mean())
            row["speed_ratio_to_float32"] = fp32[key][1] / seconds
            row["ratio_to_float32"] = compare(measured, fp32[key][2], requested, draws)
        results["ours"].append(row)
        measured_rows.append(measured)
        print(_line(row), flush=True)
    default = _bundle_default(setup)
    default_key = (default["sampler"], default["num_inference_steps"])
    if default_key in fp32:  # every setting against the bundle's default, paired (same seeds and conditions)
        for row, measured in zip(results["ours"], measured_rows, strict=True):
            row["ratio_to_bundle_default"] = compare(measured, fp32[default_key][2], requested, draws)
    results["bundle_default"], results["load_average_end"] = default, os.getloadavg()
    return results


def _line(row: Mapping[str, Any]) -> str:
    fid = "  ".join(f"{n} R {s['r']:.3f} +- {s['se']:.3f}" for n, s in row["fidelity"].items())
    ratio = "  ".join(
        f"{n} {s['ratio']:.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]" for n, s in row["ratio_to_reference"].items()
    )
    return (
        f"{row['sampler']:>9} {row['num_inference_steps']:>3} steps {row.get('inferer#precision', 'float32'):>8}: "
        f"{row['seconds']:.1f} s | {fid} | / reference {ratio} | "
        f"{row['mean_abs_diff_to_converged_mv']} mV from converged"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--samples", type=int, default=128, help="held-out conditions (the evaluation's max_samples)")
    parser.add_argument("--samplers", nargs="+", default=["dpmpp_2m"])
    parser.add_argument("--steps", nargs="+", type=int, default=[8, 12, 16, 25])
    parser.add_argument("--precisions", nargs="+", default=["float32"], help="the inferer's precision option(s)")
    parser.add_argument("--converged-steps", type=int, default=100, help="0: no converged run")
    parser.add_argument("--batch-size", type=int, default=32, help="ours: the evaluation's batch size")
    parser.add_argument("--reference-batch-size", type=int, default=128)
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the conditions")
    parser.add_argument(
        "--cache-dir", type=Path, default=Path("runs") / BUNDLE / "benchmark", help="cohort and reference cache"
    )
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    results = run(args)
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
