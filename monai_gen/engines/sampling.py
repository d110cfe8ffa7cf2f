"""Sampling for generation jobs: a MONAI ``Inferer`` that runs a named sampler, and the ``generate_batch`` callable.

:class:`DiffusionSamplingInferer` wraps a trained network in its parameterisation and classifier-free guidance and runs
:func:`monai_gen.diffusion.samplers.run_sampler`; :class:`ConditionalSampleGenerator` turns
:class:`~monai_gen.engines.requests.SampleRequest` batches into encoded conditions and per-sample seeded noise, samples,
decodes a latent model's latents on the device and inverts the bundle's normalisation. A
:class:`~monai_gen.engines.generation.GenerationJob` calls it batch by batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.inferers import Inferer
from monai.utils import look_up_option
from torch import nn

from monai_gen.diffusion.guidance import ALL_CONDITIONS, ConditionGuidance
from monai_gen.diffusion.samplers import checked_sampler_options, per_sample_generators, run_sampler, sample_noise
from monai_gen.diffusion.schedules import time_grid
from monai_gen.engines.requests import SampleRequest
from monai_gen.networks.precond import make_denoiser
from monai_gen.transforms.conditions import ConditionSet

__all__ = ["PRECISIONS", "native_bfloat16", "DiffusionSamplingInferer", "ConditionalSampleGenerator"]

#: the network forward's precision: ``None`` = as the weights (float32); otherwise the ``torch.autocast`` dtype
PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16}


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` does bf16 arithmetic in hardware: a CUDA device that says so, a CPU with AMX or AVX512-BF16.

    Elsewhere oneDNN emulates bf16, which made the ECG denoiser's forward 7.6x slower than float32 on a CPU without
    these units (benchmarks/NOTES.md).
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch's own CPU feature checks
        return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return False


class _Autocast(nn.Module):
    """``network``'s forward under ``torch.autocast(dtype)``, its output cast back to the input's dtype, so the
    parameterisation, guidance and sampler arithmetic stay in the input's precision."""

    def __init__(self, network: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.network, self.dtype = network, dtype

    def forward(self, x: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype):
            return self.network(x, t, **cond).to(x.dtype)


class DiffusionSamplingInferer(Inferer):
    """A MONAI ``Inferer`` that turns initial noise into samples with a named diffusion sampler.

    ``inferer(noise, network, generator=..., conditions=..., condition_mask=...)``: the network is wrapped by its
    parameterisation (:func:`monai_gen.networks.precond.make_denoiser`), then by classifier-free guidance when a
    scale is not 1, then handed to the sampler (``"ddpm"``, ``"ddim"``, ``"dpmpp_2m"``, ``"dpmpp_3m"``) on a time grid
    of ``num_steps`` steps, all under ``torch.inference_mode``; with ``precision="bfloat16"`` the network's forward
    runs under ``torch.autocast``.

    Args:
        schedule: the noise schedule the network was trained with.
        prediction_type: ``"epsilon"``, ``"sample"`` or ``"v_prediction"``.
        sampler: sampler name.
        num_steps: network evaluations per sample (each batched over the guidance passes).
        guidance_scale: one scale for all phenotypes together (1 = plain conditional sampling).
        phenotype_guidance: optional per-phenotype scales ``{name: scale}``; needs ``condition_names``.
        condition_names: phenotype names in the network's condition order.
        spacing: time grid spacing, ``"quadratic"`` or ``"uniform"``.
        sampler_options: the sampler's own options, passed through (e.g. ``{"eta": 1.0}`` for DDIM; see
            :func:`monai_gen.diffusion.samplers.sampler_options`).
        precision: the network forward's precision (``PRECISIONS``): ``"float32"``, or ``"bfloat16"`` under
            ``torch.autocast`` (the sampler's own arithmetic stays float32). Opt-in: it pays only where the device
            does bf16 in hardware (:func:`native_bfloat16`; a warning says when it does not), and its samples differ
            from float32's (the ECG bundle's measurement: benchmarks/NOTES.md).

    Raises:
        ValueError: an unknown sampler, sampler option or precision, phenotype guidance for an unknown condition.
    """

    def __init__(
        self,
        schedule,
        *,
        prediction_type: str = "v_prediction",
        sampler: str = "dpmpp_2m",
        num_steps: int = 25,
        guidance_scale: float = 1.0,
        phenotype_guidance: Mapping[str, float] | None = None,
        condition_names: Sequence[str] = (),
        spacing: str = "quadratic",
        sampler_options: Mapping[str, Any] | None = None,
        precision: str = "float32",
    ) -> None:
        super().__init__()
        self.options = checked_sampler_options(sampler, sampler_options)  # fails at config time, not mid-job
        self.precision, self.autocast_dtype = precision, look_up_option(precision, PRECISIONS)
        self.schedule, self.prediction_type, self.sampler = schedule, prediction_type, sampler
        self.ts = time_grid(int(num_steps), spacing=spacing)
        self.scales = self._scales(float(guidance_scale), dict(phenotype_guidance or {}), list(condition_names))

    @staticmethod
    def _scales(global_scale: float, per_phenotype: dict[str, float], names: list[str]) -> dict[str, Any]:
        unknown = sorted(set(per_phenotype) - set(names))
        if unknown:
            raise ValueError(f"phenotype_guidance names {unknown} are not conditions of the model {names}.")
        scales: dict[str, Any] = {ALL_CONDITIONS: global_scale} if global_scale != 1 else {}
        if per_phenotype:
            scales["condition_mask"] = [float(per_phenotype.get(n, 1.0)) for n in names]
        return scales

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Samples ``(B, C, *spatial)`` from noise ``inputs`` of that shape; ``generator`` and conditions in kwargs."""
        generator = kwargs.pop("generator", None)
        callback = kwargs.pop("callback", None)
        if self.autocast_dtype is not None:
            if self.autocast_dtype == torch.bfloat16 and not native_bfloat16(inputs.device):
                warnings.warn(f"precision {self.precision!r} on {inputs.device}, which has no bf16 arithmetic units: "
                              "emulated, usually slower than float32.", stacklevel=2)
            network = _Autocast(network, self.autocast_dtype)
        denoise = make_denoiser(network, self.schedule, self.prediction_type)
        if self.scales:
            denoise = ConditionGuidance(denoise, self.scales).for_batch(kwargs)  # no pass for unset phenotypes
        ts = self.ts.to(inputs.device)
        with torch.inference_mode():
            return run_sampler(
                self.sampler, denoise, inputs, self.schedule, ts, options=self.options, generator=generator,
                callback=callback, **kwargs,
            )


class ConditionalSampleGenerator:
    """``generate_batch`` for :class:`GenerationJob`: requests -> encoded conditions -> seeded noise -> samples.

    Args:
        network: the trained conditional network (set to eval mode here).
        inferer: a :class:`DiffusionSamplingInferer`.
        conditions: the model's :class:`ConditionSet` (with trained statistics); requests are validated by it.
        sample_shape: ``(C, *spatial)`` of one sample in model space (for a latent model: the latent's shape).
        device: where the network (and the decoder) runs.
        decoder: for a latent model, the :class:`~monai_gen.diffusion.latent.LatentSpace` (autoencoder + latent
            scaler, tiled decoding if it asks for it) whose ``decode`` turns sampled latents into images on ``device``
            before they move to the CPU; None for a model of the data itself.
        normalisation: the model-space normalisation the network was trained on, the same config id the training
            config hands to ``training_items(normalise=...)`` (e.g. a ``LinearNormalisation`` with the ECG amplitude
            scale and mean beat); its ``inverse`` maps the decoded samples back to physical units on the CPU, before
            ``postprocess``. None: the model's space is the physical one.
        postprocess: applied last to the ``(B, *sample_shape)`` batch in physical units, e.g.
            :class:`monai_gen.transforms.ecg.DeriveLimbLeads`; None leaves the samples as they are.
        spatial_condition: ``spatial_condition(requests) -> {name: tensor}``, network inputs per request beside the
            encoded conditions (e.g. :class:`monai_gen.transforms.ct.OrganLabelMaps`: ``spatial_condition`` and
            ``spatial_condition_mask`` from each request's label map); None = none.
    """

    def __init__(
        self,
        network: nn.Module,
        inferer: DiffusionSamplingInferer,
        conditions: ConditionSet,
        sample_shape: Sequence[int],
        *,
        device: torch.device | str = "cpu",
        normalisation: Any | None = None,
        postprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
        decoder: nn.Module | None = None,
        spatial_condition: Callable[[Sequence[SampleRequest]], Mapping[str, torch.Tensor]] | None = None,
    ) -> None:
        # channels-last 4-D weights: the 1D / 2D denoisers' convolutions run 1.24x faster on CPU (oneDNN), same
        # outputs to 1e-5 (benchmarks/NOTES.md); a 3D network is left as it is (torch refuses channels_last on its
        # 5-D weights).
        three_d = any(p.dim() == 5 for p in network.parameters())
        fmt = torch.preserve_format if three_d else torch.channels_last
        self.network = network.to(device=device, memory_format=fmt).eval()
        self.inferer, self.conditions = inferer, conditions
        self.sample_shape, self.device = tuple(int(s) for s in sample_shape), torch.device(device)
        self.normalisation, self.postprocess, self.spatial_condition = normalisation, postprocess, spatial_condition
        self.decoder = None if decoder is None else decoder.to(device).eval()
        if self.decoder is not None and not callable(getattr(self.decoder, "decode", None)):
            raise TypeError(f"decoder must have a decode() method (a LatentSpace), got {type(decoder).__name__}.")
        if normalisation is not None:
            self._check_normalisation()

    def _check_normalisation(self) -> None:
        """Fail at config time, not mid-job, when the normalisation cannot invert this model's samples."""
        if not callable(getattr(self.normalisation, "inverse", None)):
            raise TypeError(f"normalisation must have an inverse() method, got {type(self.normalisation).__name__}.")
        if self.decoder is not None:  # the decoded shape is the autoencoder's to say
            return
        try:
            self.normalisation.inverse(torch.zeros(1, *self.sample_shape))
        except RuntimeError as error:
            raise ValueError(
                f"normalisation {type(self.normalisation).__name__} does not apply to samples of shape "
                f"{self.sample_shape}: {error}"
            ) from error

    def __call__(self, requests: Sequence[SampleRequest], *, callback: Callable[..., None] | None = None) -> torch.Tensor:
        """Samples ``(B, *shape)`` in physical units for ``requests``; ``callback(step, total, x)`` after every sampler
        step (the sampler's own hook: it sees the model-space batch and changes nothing), before decoding."""
        values, mask = self.conditions.encode_rows([r.conditions for r in requests], source="generation request")
        generators = per_sample_generators([r.seed for r in requests])
        noise = sample_noise((len(requests), *self.sample_shape), generator=generators, device=self.device)
        extra = {} if self.spatial_condition is None else self.spatial_condition(requests)
        samples = self.inferer(
            noise, self.network, generator=generators,
            conditions=values.to(self.device), condition_mask=mask.to(self.device), callback=callback,
            **{k: torch.as_tensor(v).to(self.device) for k, v in extra.items()},
        )
        if self.decoder is not None:
            with torch.inference_mode():
                samples = self.decoder.decode(samples)
        samples = samples.float().cpu()
        if self.normalisation is not None:
            samples = self.normalisation.inverse(samples)
        return samples if self.postprocess is None else self.postprocess(samples)
