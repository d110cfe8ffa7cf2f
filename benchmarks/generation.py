"""Generation benchmark: the shipped ECG bundle next to MONAI's tutorial pipeline and to this machine's limit.

Run ``python -m benchmarks.generation`` (``make bench``); ``--tiny`` runs a seconds-long smoke version. In one
process it measures and prints:

- the machine's practical limit: fp32 / bf16 matmul GFLOP/s and copy bandwidth;
- the bundle denoiser at the bundle's batch size: FLOPs per forward (``torch.utils.flop_counter``), median time
  per forward, achieved GFLOP/s and its fraction of the measured fp32 matmul peak;
- the **reference**: MONAI ``DiffusionInferer.sample`` with a 1000-step ``DDPMScheduler`` carrying the bundle's
  own noise levels, on the same network and conditions (timed over a fixed number of steps and extrapolated
  linearly when a full run would take more than ``--max-reference-seconds``; the table says so);
- **ours**: the bundle's default generation path end to end (config parsing, weight loading, sampling, WFDB +
  sidecar + preview writing) through ``run_bundle_workflow``;
- the speed ratio ours / reference in samples per second, and the QRS / QT fidelity R of both on held-out test
  conditions (measured with the evaluation's delineation) so speed is never bought with quality silently.

Medians over repeats after warm-up; threads and versions printed; results written as JSON (``--output``).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch
from monai.inferers import DiffusionInferer
from monai.networks.schedulers import DDPMScheduler
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.machine import measure_machine_limits, median_seconds
from monai_gen.bundle.ecg_cohort import load_split_cohort
from monai_gen.bundle.ecg_evaluation import measure_beats
from monai_gen.bundle.registry import bundle_component, find_bundle, run_bundle_workflow
from monai_gen.bundle.runs import default_output_dir
from monai_gen.engines.requests import SampleRequest
from monai_gen.engines.sampling import ConditionalSampleGenerator, DiffusionSamplingInferer
from monai_gen.engines.weights import load_tensor, load_weights
from monai_gen.metrics import pearson_fidelity
from monai_gen.transforms.conditions import ConditionSet
from monai_gen.transforms.ecg import CropContextMargin
from monai_gen.transforms.normalisation import LinearNormalisation

BUNDLE = "ecg_generative_diffusion"
REFERENCE_STEPS = 1000


class MonaiCallingConvention(nn.Module):
    """Our conditional network called the way MONAI's inferers call a ``DiffusionModelUNet``.

    ``forward(x, timesteps, context)`` with integer MONAI steps ``k`` in ``[0, 1000)`` maps to our continuous
    ``t = (k + 1) / 1000`` and passes the fixed encoded conditions ``(B, P)``. ``context``, when given, is the
    condition mask: MONAI's classifier-free guidance (``DiffusionInferer.sample(conditioning=mask, cfg=s,
    cfg_fill_value=0)``) stacks an all-zero (every condition dropped) and the conditional mask into ``(2B, P)``.
    """

    def __init__(self, network: nn.Module, conditions: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.network, self.conditions, self.mask = network, conditions, mask

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        t = ((timesteps.float() + 1) / REFERENCE_STEPS).expand(x.shape[0])
        mask = self.mask if context is None else context
        conditions = torch.cat([self.conditions] * (x.shape[0] // self.conditions.shape[0]))
        return self.network(x, t, conditions=conditions, condition_mask=mask)


def reference_scheduler(schedule) -> DDPMScheduler:
    """MONAI's DDPM scheduler (v-prediction) whose 1000 noise levels are the bundle schedule's at ``(k + 1) / 1000``."""
    scheduler = DDPMScheduler(num_train_timesteps=REFERENCE_STEPS, prediction_type="v_prediction", clip_sample=False)
    t = torch.arange(1, REFERENCE_STEPS + 1, dtype=torch.float64) / REFERENCE_STEPS
    alpha, _ = schedule.alpha_sigma(t)
    alphas_cumprod = (alpha**2).float()
    alphas = alphas_cumprod / torch.cat([torch.ones(1), alphas_cumprod[:-1]])
    scheduler.alphas_cumprod, scheduler.alphas, scheduler.betas = alphas_cumprod, alphas, 1 - alphas
    scheduler.set_timesteps(REFERENCE_STEPS)
    return scheduler


def load_bundle_model(device: torch.device) -> dict[str, Any]:
    root = find_bundle(BUNDLE)
    network = load_weights(bundle_component(root, "network_def"), root / "models/model.safetensors")
    network = network.to(device=device, memory_format=torch.channels_last).eval()  # as ConditionalSampleGenerator
    return {
        "root": root,
        "network": network,
        "conditions": ConditionSet.load(root / "models/conditions.json"),
        "schedule": bundle_component(root, "schedule"),
        "normalisation": LinearNormalisation(
            float(bundle_component(root, "amplitude_scale_mv")), offset=load_tensor(root / "models/mean_beat.safetensors", "mean_beat")
        ),
        "shape": tuple(bundle_component(root, "sample_shape")),  # the denoised window, context margin included
        "crop": CropContextMargin(int(bundle_component(root, "context_margin"))),  # -> the (12, 576) beat
    }


def denoiser_forward(model: dict[str, Any], batch: int, device: torch.device, repeats: int) -> dict[str, float]:
    x = torch.randn(batch, *model["shape"], device=device)
    t = torch.full((batch,), 0.5, device=device)
    values, mask = model["conditions"].encode_rows([{"heart_rate": 70}] * batch)
    kwargs = {"conditions": values.to(device), "condition_mask": mask.to(device)}
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            model["network"](x, t, **kwargs)
        seconds = median_seconds(lambda: model["network"](x, t, **kwargs), repeats=repeats, device=device)
    flops = counter.get_total_flops()
    return {"batch": batch, "gflop_per_forward": flops / 1e9, "seconds_per_forward": seconds, "gflops": flops / seconds / 1e9}


def reference_samples(model, rows, seeds, device, steps_to_time: int | None) -> tuple[torch.Tensor | None, float, bool]:
    """MONAI DiffusionInferer + DDPMScheduler; returns (samples or None when extrapolated, seconds per batch, extrapolated)."""
    values, mask = model["conditions"].encode_rows(rows)
    wrapped = MonaiCallingConvention(model["network"], values.to(device), mask.to(device))
    scheduler = reference_scheduler(model["schedule"])
    noise = torch.stack([torch.randn(*model["shape"], generator=torch.Generator().manual_seed(s)) for s in seeds]).to(device)
    inferer = DiffusionInferer(scheduler)
    if steps_to_time is None:
        start = time.perf_counter()
        samples = inferer.sample(noise, wrapped, scheduler, verbose=False)
        return model["crop"](model["normalisation"].inverse(samples.cpu())), time.perf_counter() - start, False
    scheduler.timesteps = scheduler.timesteps[:steps_to_time]
    start = time.perf_counter()
    inferer.sample(noise, wrapped, scheduler, verbose=False)
    return None, (time.perf_counter() - start) * REFERENCE_STEPS / steps_to_time, True


def ours_end_to_end(num_samples: int, steps: int | None, output_dir: Path) -> float:
    """Seconds for the bundle's default inference (config, weights, sampling, writing) of ``num_samples``."""
    overrides: dict[str, Any] = {"num_samples": num_samples, "output_dir": str(output_dir), "progress": False}
    if steps is not None:
        overrides["num_inference_steps"] = steps
    start = time.perf_counter()
    run_bundle_workflow(BUNDLE, "inference", overrides)
    return time.perf_counter() - start


def fidelity(beats: torch.Tensor, rows: list[dict[str, Any]]) -> dict[str, float]:
    measured = measure_beats(beats)
    return {name: pearson_fidelity([r.get(name, np.nan) for r in rows], measured[name]).value for name in ("qrs", "qt")}


def test_conditions(model: dict[str, Any], count: int) -> list[dict[str, Any]]:
    root = model["root"]
    preparation = {
        "prepare": bundle_component(root, "prepare_record"),
        "fs": bundle_component(root, "fs"),
        "phenotypes": ConditionSet(bundle_component(root, "condition_specs")).names,
        "window": bundle_component(root, "training_window"),
    }
    cache = default_output_dir(root, "benchmark")  # never inside the bundle
    test = load_split_cohort(root / "../../../shared/data/ecg", cache, **preparation).test
    picks = np.linspace(0, len(test) - 1, count).round().astype(int)
    return [{k: v for k, v in test.rows[i].items() if k != "record_id" and v is not None} for i in picks]


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads) if args.threads else None
    device = torch.device(args.device)
    results: dict[str, Any] = {
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "monai": monai.__version__},
        "threads": torch.get_num_threads(),
        "machine": measure_machine_limits(device, size=512 if args.tiny else 2048, repeats=3 if args.tiny else 5).as_dict(),
    }
    model = load_bundle_model(device)
    forward = denoiser_forward(model, args.batch_size, device, repeats=3 if args.tiny else 10)
    forward["fraction_of_fp32_peak"] = forward["gflops"] / results["machine"]["matmul_fp32_gflops"]
    results["denoiser_forward"] = forward

    rows = [{"heart_rate": 70}] * args.batch_size if args.tiny else test_conditions(model, args.fidelity_samples)
    seeds = list(range(len(rows)))
    full_reference_s = forward["seconds_per_forward"] * REFERENCE_STEPS * len(rows) / args.batch_size
    steps_to_time = None if full_reference_s <= args.max_reference_seconds else max(2, int(args.max_reference_seconds / full_reference_s * REFERENCE_STEPS))
    reference, reference_s, extrapolated = reference_samples(model, rows, seeds, device, steps_to_time)
    results["reference"] = {
        "pipeline": f"monai DiffusionInferer.sample + DDPMScheduler({REFERENCE_STEPS} steps)",
        "samples": len(rows), "seconds": reference_s, "samples_per_second": len(rows) / reference_s,
        "extrapolated_from_steps": steps_to_time if extrapolated else None,
    }
    with tempfile.TemporaryDirectory() as folder:
        ours_s = ours_end_to_end(args.batch_size, 2 if args.tiny else None, Path(folder) / "ours")
    results["ours"] = {"pipeline": "bundle inference.json defaults, end to end", "samples": args.batch_size,
                       "seconds": ours_s, "seconds_per_sample": ours_s / args.batch_size,
                       "samples_per_second": args.batch_size / ours_s}
    results["speedup_samples_per_second"] = results["ours"]["samples_per_second"] / results["reference"]["samples_per_second"]
    if not args.tiny:
        inferer = DiffusionSamplingInferer(model["schedule"], num_steps=args.steps, condition_names=model["conditions"].names)
        generate = ConditionalSampleGenerator(model["network"], inferer, model["conditions"], model["shape"], device=device, normalisation=model["normalisation"],
                                              postprocess=model["crop"])
        ours_beats = generate([SampleRequest(f"b{i}", s, r) for i, (r, s) in enumerate(zip(rows, seeds, strict=True))])
        results["fidelity_r"] = {"ours": fidelity(ours_beats, rows)}
        if reference is not None:
            results["fidelity_r"]["reference"] = fidelity(reference, rows)
    return results


def print_table(results: dict[str, Any]) -> None:
    m, f = results["machine"], results["denoiser_forward"]
    ref, ours = results["reference"], results["ours"]
    print(f"torch {results['versions']['torch']}, monai {results['versions']['monai']}, threads {results['threads']}, device {m['device']}")
    print(f"machine   fp32 matmul {m['matmul_fp32_gflops']:.1f} GFLOP/s | bf16 {m['matmul_bf16_gflops']:.1f} GFLOP/s | copy {m['copy_gbps']:.1f} GB/s")
    print(f"denoiser  batch {f['batch']}: {f['gflop_per_forward']:.2f} GFLOP/forward, {f['seconds_per_forward'] * 1e3:.1f} ms, "
          f"{f['gflops']:.1f} GFLOP/s = {100 * f['fraction_of_fp32_peak']:.0f} % of fp32 matmul peak")
    note = f" (extrapolated from {ref['extrapolated_from_steps']} steps)" if ref["extrapolated_from_steps"] else ""
    print(f"reference {ref['pipeline']}: {ref['samples']} samples in {ref['seconds']:.1f} s{note} = {ref['samples_per_second']:.3f} samples/s")
    print(f"ours      {ours['pipeline']}: {ours['samples']} samples in {ours['seconds']:.1f} s = {ours['seconds_per_sample']:.3f} s/sample")
    print(f"ratio     ours / reference samples per second: {results['speedup_samples_per_second']:.1f}x")
    if "fidelity_r" in results:
        for name, scores in results["fidelity_r"].items():
            print(f"fidelity  {name}: QRS R {scores['qrs']:.3f}, QT R {scores['qt']:.3f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="seconds-long smoke run (no fidelity, 2 sampling steps)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--batch-size", type=int, default=16, help="the bundle's default batch size")
    parser.add_argument("--steps", type=int, default=25, help="our sampler steps for the fidelity comparison")
    parser.add_argument("--fidelity-samples", type=int, default=32, help="test conditions for the fidelity comparison")
    parser.add_argument("--max-reference-seconds", type=float, default=600.0)
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch_size, args.max_reference_seconds = min(args.batch_size, 2), 1.0
    results = run(args)
    print_table(results)
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
