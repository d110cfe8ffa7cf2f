"""What the image-bundle generation benchmarks share (brain MRI slices, cardiac cine frames): one latent diffusion
bundle timed end to end and in sampling against MONAI's tutorial pipeline on the same networks, with the fidelity of
both read by probes trained on the real training items, and the memory each part needed.

- **ours**: the bundle's default generation through ``run_bundle_workflow`` (config parsing, weight loading,
  sampling, decoding, writing and previews), and its ``sample_generator`` alone (sampling + decoding);
- the **reference**: MONAI ``LatentDiffusionInferer.sample`` with a 1000-step ``DDPMScheduler`` carrying the bundle's
  own noise levels (:func:`benchmarks.generation.reference_scheduler`), on the same denoiser, autoencoder, latent
  scale, conditions, initial noise and any per-request network inputs the bundle's generator adds (its
  ``spatial_condition``, e.g. the CT bundle's organ channels);
- **fidelity**: :class:`monai_gen.metrics.evaluation.ProbeFidelity` (PCA + linear probe per condition, fitted on the
  real training items) scores both pipelines' images against the requested conditions, beside the real items whose
  conditions were requested (the ceiling when those items are held out);
- **memory**: the process's peak resident memory after each part (``ru_maxrss`` never decreases, so a later part's
  figure is the maximum so far) and, on CUDA, each part's own peak of allocated GPU memory.

The per-bundle scripts (:mod:`benchmarks.brain_generation`, :mod:`benchmarks.cardiac_generation`) choose the
conditions, the unit (``slice`` / ``frame``) and any extra end-to-end section (the cardiac cines).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.inferers import LatentDiffusionInferer
from torch import nn

from benchmarks.generation import REFERENCE_STEPS, MonaiCallingConvention, reference_scheduler
from monai_gen.bundle.registry import find_bundle, run_bundle_workflow, workflow_config_names
from monai_gen.diffusion.samplers import per_sample_generators, sample_noise
from monai_gen.engines.cohort import Cohort, CohortSplit
from monai_gen.engines.requests import SampleRequest
from monai_gen.metrics.evaluation import EvaluationData, ProbeFidelity
from monai_gen.transforms.conditions import ConditionKind, ConditionSet

__all__ = [
    "CONDITION_SOURCES",
    "ImageBundle",
    "ProbeSetup",
    "default_cache_dir",
    "load_image_bundle",
    "condition_rows",
    "probes_for",
    "sample_ours",
    "generator_inputs",
    "reference_network",
    "sample_reference",
    "time_inference",
    "probe_fidelity",
    "memory_figures",
    "environment",
    "benchmark",
    "add_common_arguments",
    "write_results",
]

CONDITION_SOURCES = ("test", "train")
"""Which real split the requested conditions are drawn from (``--conditions-from``)."""

_METRIC_SUFFIX = {"pearson_r": "r"}  # result keys: slice_position_r, sex_auroc, group_auroc_ovr, phase_circular_r


@dataclass
class ImageBundle:
    """A latent diffusion image bundle as both pipelines see it, parsed from its layered inference configs.

    Attributes:
        root: the bundle folder.
        overrides: config ids set in every parse and every workflow run (weights folder, cohort cache, data).
        parser: the parsed ``common.json`` + ``inference.json`` with ``overrides`` applied.
        network / latent_space / schedule / conditions / normalisation / sample_generator: the bundle's components.
        shape: ``(C, *spatial)`` of one latent.
        device: where the networks run (the bundle's ``device``).
    """

    root: Path
    overrides: dict[str, Any]
    parser: ConfigParser
    network: torch.nn.Module
    latent_space: Any
    schedule: Any
    conditions: ConditionSet
    normalisation: Any
    sample_generator: Callable[[Sequence[SampleRequest]], torch.Tensor]
    shape: tuple[int, ...]
    device: torch.device
    _cohorts: CohortSplit | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.root.name

    def option(self, key: str) -> Any:
        """A plain option of the inference config (e.g. ``cine_frames``), resolved."""
        return self.parser.get_parsed_content(key, instantiate=True)

    def cohorts(self) -> CohortSplit:
        """The bundle's real train / test cohorts (built once, or read from the cohort cache)."""
        if self._cohorts is None:
            self._cohorts = self.option("cohorts")
        return self._cohorts


def default_cache_dir(bundle_name: str) -> Path:
    """``runs/<bundle name>/benchmark/cache`` under the working directory."""
    return Path("runs") / bundle_name / "benchmark" / "cache"


def load_image_bundle(
    bundle: str | Path,
    *,
    cache_dir: Path | None = None,
    models_dir: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ImageBundle:
    """Parse ``bundle``'s ``common.json`` + ``inference.json`` (what its inference workflow runs) and build its parts.

    Args:
        bundle: bundle name or folder.
        cache_dir: the cohort cache (a training run's cache is reused when its inputs match); None:
            :func:`default_cache_dir`.
        models_dir: the weights folder; None: the one the inference config names (the bundle's ``models/``).
        overrides: further config ids (e.g. the data selection a tiny bundle was trained on).

    Raises:
        FileNotFoundError: no such bundle, or a weights file missing from the models folder.
    """
    root = find_bundle(bundle)
    settings = {**dict(overrides or {}), "cache_dir": str(cache_dir or default_cache_dir(root.name))}
    if models_dir is not None:
        settings["models_dir"] = str(models_dir)
    parser = ConfigParser()
    parser.read_meta(root / "configs" / "metadata.json")
    parser.read_config([root / "configs" / f"{name}.json" for name in workflow_config_names(root, "inference")])
    parser.update({"bundle_root": str(root), **settings})
    get = lambda key: parser.get_parsed_content(key, instantiate=True)  # noqa: E731
    for key in ("autoencoder_file", "latent_scaler_file", "weights_file", "trained_conditions_file"):
        if not Path(get(key)).is_file():
            raise FileNotFoundError(
                f"{bundle}: {key} {get(key)} does not exist; train the bundle or pass --models-dir."
            )
    parts = {key: get(key) for key in ("network", "latent_space", "schedule", "conditions", "normalisation",
                                       "sample_generator")}
    parts["network"].eval()
    shape, device = tuple(get("sample_shape")), torch.device(get("device"))
    return ImageBundle(root, settings, parser, **parts, shape=shape, device=device)


def condition_rows(
    cohort: Cohort, names: Sequence[str], count: int, seed: int
) -> tuple[list[dict[str, Any]], list[int]]:
    """The conditions ``names`` of ``count`` real items of ``cohort`` drawn with ``seed`` (in cohort order), and
    the items' indices."""
    drawn = np.random.default_rng(seed).choice(len(cohort), size=min(count, len(cohort)), replace=False)
    picked = sorted(int(i) for i in drawn)
    return [{k: cohort.rows[i][k] for k in names if cohort.rows[i].get(k) is not None} for i in picked], picked


def probes_for(conditions: ConditionSet, names: Sequence[str], *, n_components: int = 64) -> ProbeFidelity:
    """A :class:`ProbeFidelity` over the model's conditions ``names``, each by its kind (periodic ones with their
    period, categorical ones with their categories)."""
    specs = [conditions[name] for name in names]
    return ProbeFidelity(
        continuous=[s.name for s in specs if s.kind == ConditionKind.CONTINUOUS],
        categorical={s.name: list(s.categories) for s in specs if s.kind == ConditionKind.CATEGORICAL},
        periodic={s.name: float(s.period) for s in specs if s.kind == ConditionKind.PERIODIC},
        n_components=n_components,
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _requests(rows: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> list[SampleRequest]:
    return [SampleRequest(f"s{i}", seed, dict(row)) for i, (row, seed) in enumerate(zip(rows, seeds, strict=True))]


def sample_ours(
    bundle: ImageBundle, rows: Sequence[Mapping[str, Any]], seeds: Sequence[int]
) -> tuple[torch.Tensor, float]:
    """The bundle's ``sample_generator`` on one batch of ``rows``: (images ``(N, C, *spatial)`` on the CPU in physical
    units, seconds)."""
    _synchronize(bundle.device)
    start = time.perf_counter()
    with torch.inference_mode():
        images = bundle.sample_generator(_requests(rows, seeds))
    return images, time.perf_counter() - start


class _WithInputs(nn.Module):
    """``network(x, t, **kwargs)`` called with fixed extra inputs (``inputs``) beside the ones it is given."""

    def __init__(self, network: nn.Module, inputs: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.network, self.inputs = network, dict(inputs)

    def forward(self, x: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.network(x, t, **kwargs, **self.inputs)


def generator_inputs(
    bundle: ImageBundle, rows: Sequence[Mapping[str, Any]], seeds: Sequence[int]
) -> dict[str, torch.Tensor]:
    """The network inputs the bundle's ``sample_generator`` adds for these requests beside the encoded conditions, on
    the bundle's device: those of its ``spatial_condition`` (e.g. the CT bundle's
    :class:`~monai_gen.transforms.ct.OrganLabelMaps`: ``spatial_condition`` ``(N, K, *latent)`` and
    ``spatial_condition_mask`` ``(N,)``, zeros and 0 for a request without a label map), as
    :class:`~monai_gen.engines.sampling.ConditionalSampleGenerator` computes them; ``{}`` when it has none."""
    spatial = getattr(bundle.sample_generator, "spatial_condition", None)
    if spatial is None:
        return {}
    return {k: torch.as_tensor(v).to(bundle.device) for k, v in spatial(_requests(rows, seeds)).items()}


def reference_network(
    bundle: ImageBundle, rows: Sequence[Mapping[str, Any]], seeds: Sequence[int]
) -> nn.Module:
    """The bundle's network called as MONAI's inferers call a ``DiffusionModelUNet`` (``forward(x, timesteps,
    context)``, :class:`benchmarks.generation.MonaiCallingConvention`) with the encoded conditions of ``rows`` and the
    generator's other inputs for them (:func:`generator_inputs`) fixed: what every reference step evaluates."""
    values, mask = bundle.conditions.encode_rows(list(rows))
    extra = generator_inputs(bundle, rows, seeds)
    network = _WithInputs(bundle.network, extra) if extra else bundle.network
    return MonaiCallingConvention(network, values.to(bundle.device), mask.to(bundle.device))


def sample_reference(
    bundle: ImageBundle, rows: Sequence[Mapping[str, Any]], seeds: Sequence[int], *, steps_to_time: int | None = None
) -> tuple[torch.Tensor | None, float]:
    """MONAI ``LatentDiffusionInferer`` + 1000-step ``DDPMScheduler`` on the bundle's networks, from the same initial
    noise and network inputs (:func:`reference_network`) as :func:`sample_ours`: (images on the CPU in physical
    units, seconds).

    With ``steps_to_time`` only that many steps are run and the seconds extrapolated to 1000 (no images returned).

    Raises:
        ValueError: the latent scaler has a shift, which ``LatentDiffusionInferer`` (a scale factor only) cannot apply.
    """
    scaler = bundle.latent_space.scaler
    if float(scaler.shift) != 0.0:
        raise ValueError(
            f"{bundle.name}: LatentDiffusionInferer applies a latent scale only, but the latent scaler has shift "
            f"{float(scaler.shift)}."
        )
    wrapped = reference_network(bundle, rows, seeds)
    scheduler = reference_scheduler(bundle.schedule)
    inferer = LatentDiffusionInferer(scheduler, scale_factor=float(scaler.scale))
    noise = sample_noise((len(seeds), *bundle.shape), generator=per_sample_generators(seeds), device=bundle.device)
    if steps_to_time is not None:
        scheduler.timesteps = scheduler.timesteps[:steps_to_time]
    _synchronize(bundle.device)
    start = time.perf_counter()
    with torch.inference_mode():
        decoded = inferer.sample(noise, bundle.latent_space.autoencoder, wrapped, scheduler, verbose=False)
        images = None if steps_to_time is not None else bundle.normalisation.inverse(decoded.float().cpu())
    _synchronize(bundle.device)
    seconds = time.perf_counter() - start
    if steps_to_time is not None:
        return None, seconds * REFERENCE_STEPS / steps_to_time
    return images, seconds


def time_inference(bundle: ImageBundle, runs: Sequence[Mapping[str, Any]], output_dir: Path) -> float:
    """Seconds for the bundle's inference workflow run once per entry of ``runs`` (config ids, e.g. the conditions,
    ``num_samples`` and ``seed``), each into its own folder under ``output_dir``, progress bars off."""
    start = time.perf_counter()
    for i, run in enumerate(runs):
        run_bundle_workflow(bundle.root, "inference", {**bundle.overrides, "progress": False, **run,
                                                       "output_dir": str(output_dir / f"run_{i}")})
    return time.perf_counter() - start


@dataclass(frozen=True)
class ProbeSetup:
    """What fidelity is measured with: the probes, the real items they are trained on and the real items whose
    conditions were requested (aligned with the requests)."""

    probes: ProbeFidelity
    train: Cohort
    requested: Cohort


def probe_fidelity(
    setup: ProbeSetup, pipelines: Mapping[str, torch.Tensor], rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Per pipeline (and ``"real"``: the requested real items themselves), ``{<condition>_<metric>: value}``.

    The probes are refitted for each pipeline; PCA and the linear heads are deterministic, so each pipeline is read
    by the same probes.
    """
    scores: dict[str, Any] = {}
    requested = [dict(r) for r in rows]
    for name, images in pipelines.items():
        data = EvaluationData(synthetic=images, requested=requested, train=setup.train, test=setup.requested, seed=0)
        section = setup.probes(data)["conditions"]
        scores[name] = _flat(section, "synthetic")
        scores.setdefault("real", _flat(section, "real"))
    return {name: scores[name] for name in (*pipelines, "real")}


def _flat(section: Mapping[str, Any], side: str) -> dict[str, float]:
    """``{condition: {side: {metric, value, ...}}}`` -> ``{<condition>_<metric>: value}``."""
    scores = {}
    for condition, entry in section.items():
        metric = entry[side]["metric"]
        scores[f"{condition}_{_METRIC_SUFFIX.get(metric, metric)}"] = entry[side]["value"]
    return scores


def memory_figures(device: torch.device) -> dict[str, float]:
    """``peak_rss_mb`` of the process so far and, on CUDA, ``peak_gpu_memory_mb`` since the last call (then reset)."""
    figures = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        figures["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    return figures


def environment(bundle: ImageBundle, threads: int) -> dict[str, Any]:
    """Versions, threads, CPU, the bundle and its device (and the GPU's name on CUDA)."""
    env = {"torch": torch.__version__, "monai": monai.__version__, "threads": threads, "cpu": platform.processor(),
           "device": str(bundle.device), "bundle": bundle.name}
    if bundle.device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(bundle.device)
    return env


def benchmark(
    bundle: ImageBundle,
    rows: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    *,
    unit: str,
    threads: int,
    end_to_end: int,
    reference_steps_to_time: int | None = None,
    fidelity: ProbeSetup | None = None,
    extra_end_to_end: Mapping[str, Callable[[Path], dict[str, Any]]] | None = None,
    conditions_from: str | None = None,
) -> dict[str, Any]:
    """Both pipelines on ``rows`` (seed ``seeds[i]`` for row ``i``): the results as a JSON-compatible dictionary.

    Order (so each peak-RSS figure is the part's own or below): ours end to end on the first ``end_to_end`` rows, one
    ``<unit>`` per workflow run; each ``extra_end_to_end`` section (``name -> fn(output_dir) -> section``); ours
    sampling of all rows in one batch; the reference on the same batch (timed over ``reference_steps_to_time`` steps
    and extrapolated when given, else run in full); then, with ``fidelity`` and full reference images, the probes.
    """
    memory_figures(bundle.device)  # resets the GPU peak: each part's figure below is its own
    results: dict[str, Any] = {**environment(bundle, threads), f"{unit}s": len(rows),
                               "reference_steps": REFERENCE_STEPS, "conditions_from": conditions_from}
    n_end = min(len(rows), end_to_end)
    runs = [{**row, "num_samples": 1, "seed": seed} for row, seed in zip(rows[:n_end], seeds[:n_end], strict=True)]
    with tempfile.TemporaryDirectory() as tmp:
        seconds = time_inference(bundle, runs, Path(tmp))
        results["ours"] = {f"seconds_per_{unit}_end_to_end": seconds / n_end, **memory_figures(bundle.device)}
        for name, section in (extra_end_to_end or {}).items():
            results[name] = {**section(Path(tmp) / name), **memory_figures(bundle.device)}
    ours, seconds = sample_ours(bundle, rows, seeds)
    results["ours"][f"sampling_seconds_per_{unit}"] = seconds / len(rows)
    results["ours"].update({f"sampling_{key}": value for key, value in memory_figures(bundle.device).items()})
    reference, seconds = sample_reference(bundle, rows, seeds, steps_to_time=reference_steps_to_time)
    results["reference"] = {f"sampling_seconds_per_{unit}": seconds / len(rows), **memory_figures(bundle.device),
                            "extrapolated_from_steps": reference_steps_to_time}
    per_unit = results["reference"][f"sampling_seconds_per_{unit}"]
    results["speedup_sampling"] = per_unit / results["ours"][f"sampling_seconds_per_{unit}"]
    results["speedup_end_to_end"] = per_unit / results["ours"][f"seconds_per_{unit}_end_to_end"]
    if fidelity is not None and reference is not None:
        results["fidelity"] = probe_fidelity(fidelity, {"ours": ours, "reference": reference}, rows)
    return results


def add_common_arguments(parser: argparse.ArgumentParser, *, unit: str, count: int = 32) -> None:
    """The options every image benchmark takes (``--<unit>s``, ``--end-to-end-<unit>s``, threads, seed, cache,
    output)."""
    parser.add_argument(f"--{unit}s", type=int, default=count, help=f"conditions generated by both pipelines ({unit}s)")
    parser.add_argument(f"--end-to-end-{unit}s", type=int, default=4,
                        help=f"{unit}s timed through the whole inference config")
    add_run_arguments(parser, threads=2)


def add_run_arguments(parser: argparse.ArgumentParser, *, threads: int) -> None:
    """The options of how any benchmark runs: threads, seed, cohort cache, output."""
    parser.add_argument("--threads", type=int, default=threads)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="cohort cache (the training run's cache folder is reused when its inputs match; default "
                        "runs/<bundle>/benchmark/cache)")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON")


def write_results(results: Mapping[str, Any], output: Path | None) -> None:
    """Print the results and, with ``output``, write them there as JSON."""
    text = json.dumps(results, indent=2)
    print(text)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n", encoding="utf-8")
