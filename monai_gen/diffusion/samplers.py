"""Samplers over one denoiser interface: ``denoise(x, t, **cond) -> x0_hat``, ``t`` in ``[0, 1]`` (0 clean).

Each sampler is ``sample_<name>(denoise, x, schedule, ts, *, generator=None, callback=None, **cond)``: it starts from
``x`` at time ``ts[0]`` and follows the descending grid ``ts`` (:func:`monai_gen.diffusion.schedules.time_grid`) to
``ts[-1]``; a last time of 0 returns the final ``x0_hat``. Coefficients are computed in float64 from the schedule
and applied in ``x.dtype`` on ``x.device``. ``generator`` is one ``torch.Generator`` or a list with one per sample;
with a list, sample ``i``'s noise (initial and per step) comes from generator ``i`` only, so it is the same whatever
the batch it is drawn in. ``callback(step, total, x)`` is called after every step.

A sampler's own keyword arguments (DDIM's ``eta``) are its *options*. :func:`run_sampler` is the one entry point that
runs a sampler by name (``SAMPLERS``: ``"ddpm"``, ``"ddim"``, ``"dpmpp_2m"``, ``"dpmpp_3m"``) with options checked
against its signature; :func:`sample` also seeds one generator per sample and draws the initial noise.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping, Sequence

import torch
from monai.utils import look_up_option

from monai_gen.diffusion.schedules import time_grid

__all__ = [
    "Generators",
    "sample_noise",
    "per_sample_generators",
    "sample_ddpm",
    "sample_ddim",
    "sample_dpmpp_2m",
    "sample_dpmpp_3m",
    "SAMPLERS",
    "sampler_options",
    "checked_sampler_options",
    "run_sampler",
    "sample",
]

Generators = torch.Generator | Sequence[torch.Generator] | None
Callback = Callable[[int, int, torch.Tensor], None] | None


def per_sample_generators(seeds: Sequence[int], *, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One seeded ``torch.Generator`` per sample."""
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]


def sample_noise(
    shape: Sequence[int],
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise ``(B, *rest)``; with a list of generators each sample is drawn from its own.

    Draws are made in float32 (float64 for float64) on the generator's device and then moved, so a seed gives the
    same noise on every device and at every batch size.
    """
    draw_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = device if generator is None else generator.device
        noise = torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=draw_dtype)
        return noise.to(device=device, dtype=dtype)
    generators = list(generator)
    if len(generators) != shape[0]:
        raise ValueError(f"generator is a list of {len(generators)} generators but the batch has {shape[0]} samples.")
    noise = [torch.randn(tuple(shape[1:]), generator=g, device=g.device, dtype=draw_dtype) for g in generators]
    return torch.stack([n.to(device=device) for n in noise]).to(dtype=dtype)


def _coefficients(schedule, ts: torch.Tensor) -> tuple[list[float], list[float]]:
    if ts.ndim != 1 or len(ts) < 2 or (ts.diff() >= 0).any():
        raise ValueError(f"ts must be a strictly descending 1-D time grid of >= 2 points, got {ts.tolist()}.")
    alphas, sigmas = schedule.alpha_sigma(ts.detach().to(device="cpu", dtype=torch.float64))
    return alphas.tolist(), sigmas.tolist()


def _times(ts: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
    """The grid as per-batch time tensors ``(B,)`` in ``x``'s dtype and device."""
    return [torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device) for t in ts.tolist()]


@torch.inference_mode()
def sample_ddpm(
    denoise,
    x: torch.Tensor,
    schedule,
    ts: torch.Tensor,
    *,
    generator: Generators = None,
    callback: Callback = None,
    **cond,
) -> torch.Tensor:
    """Ancestral sampling: draw ``z_s ~ q(z_s | z_t, x = x0_hat)`` at each step.

    ``alpha_ts = alpha_t / alpha_s``, ``sigma_ts^2 = sigma_t^2 - alpha_ts^2 sigma_s^2``; mean
    ``(alpha_ts sigma_s^2 / sigma_t^2) z_t + (alpha_s sigma_ts^2 / sigma_t^2) x0_hat``, variance
    ``sigma_ts^2 sigma_s^2 / sigma_t^2``.

    See: Ho et al. 2020, Algorithm 2 and Eq. 6-7; Kingma et al. 2021 (VDM), Eq. 30-32 for the continuous-time form.
    """
    alphas, sigmas = _coefficients(schedule, ts)
    times, total = _times(ts, x), len(ts) - 1
    for i in range(total):
        x0 = denoise(x, times[i], **cond)
        a_t, s_t, a_s, s_s = alphas[i], sigmas[i], alphas[i + 1], sigmas[i + 1]
        if s_s == 0:
            x = x0
        else:
            a_ts = a_t / a_s
            var_ts = s_t**2 - a_ts**2 * s_s**2
            mean = (a_ts * s_s**2 / s_t**2) * x + (a_s * var_ts / s_t**2) * x0
            x = mean + math.sqrt(var_ts * s_s**2 / s_t**2) * sample_noise(
                x.shape, generator=generator, device=x.device, dtype=x.dtype
            )
        if callback is not None:
            callback(i + 1, total, x)
    return x


@torch.inference_mode()
def sample_ddim(
    denoise,
    x: torch.Tensor,
    schedule,
    ts: torch.Tensor,
    *,
    eta: float = 0.0,
    generator: Generators = None,
    callback: Callback = None,
    **cond,
) -> torch.Tensor:
    """DDIM: ``z_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c noise``; ``eta = 0`` is deterministic.

    ``eps_hat = (z_t - alpha_t x0_hat) / sigma_t`` and
    ``c = eta (sigma_s / sigma_t) sqrt(1 - alpha_t^2 / alpha_s^2)``; ``eta = 1`` is ancestral.

    See: Song et al. 2021, "Denoising Diffusion Implicit Models", Eq. 12 and Eq. 16.
    """
    if not 0.0 <= eta <= 1.0:
        warnings.warn(f"eta = {eta} lies outside [0, 1] (0 = DDIM, 1 = DDPM-like ancestral).", stacklevel=2)
    alphas, sigmas = _coefficients(schedule, ts)
    times, total = _times(ts, x), len(ts) - 1
    for i in range(total):
        x0 = denoise(x, times[i], **cond)
        a_t, s_t, a_s, s_s = alphas[i], sigmas[i], alphas[i + 1], sigmas[i + 1]
        if s_s == 0:
            x = x0
        else:
            eps = (x - a_t * x0) / s_t
            c = eta * (s_s / s_t) * math.sqrt(max(1.0 - (a_t / a_s) ** 2, 0.0))
            x = a_s * x0 + math.sqrt(max(s_s**2 - c**2, 0.0)) * eps
            if c > 0:
                x = x + c * sample_noise(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if callback is not None:
            callback(i + 1, total, x)
    return x


def _dpmpp_data_term(x0: torch.Tensor, h: float, history: list[tuple[torch.Tensor, float]]) -> torch.Tensor:
    """DPM-Solver++'s ``D`` in ``z_s = (sigma_s / sigma_t) z_t - alpha_s (exp(-h) - 1) D`` from ``x0_hat_t`` and the
    previous steps' ``(x0_hat, h)`` (newest first): order 1 without history, (2M) with one, (3M) with two."""
    if not history:
        return x0
    (x0_1, h_1), *older = history
    if not older:  # (2M), Algorithm 2: r = h_prev / h
        return (1 + h / (2 * h_1)) * x0 - (h / (2 * h_1)) * x0_1
    ((x0_2, h_2),) = older
    r0, r1 = h_1 / h, h_2 / h
    d1_0, d1_1 = (x0 - x0_1) / r0, (x0_1 - x0_2) / r1
    d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)  # ~ h x0_hat'
    d2 = 2 * (d1_0 - d1_1) / (r0 + r1)  # ~ h^2 x0_hat''; half of it leaves the method second order (tested)
    phi_1 = math.expm1(-h)
    phi_2 = phi_1 / h + 1
    phi_3 = phi_2 / h - 0.5
    # (3M): z_s = (sigma_s / sigma_t) z_t - alpha_s (phi_1 x0_hat - phi_2 D1 + phi_3 D2), written as one D
    return x0 - (phi_2 / phi_1) * d1 + (phi_3 / phi_1) * d2


def _dpmpp_multistep(denoise, x: torch.Tensor, schedule, ts: torch.Tensor, *, order: int, callback: Callback,
                     **cond) -> torch.Tensor:
    """The DPM-Solver++ multistep loop of at most ``order`` (2 or 3) on the grid ``ts``."""
    alphas, sigmas = _coefficients(schedule, ts)
    times, total = _times(ts, x), len(ts) - 1
    history: list[tuple[torch.Tensor, float]] = []  # the previous steps' (x0_hat, h), newest first, all finite
    for i in range(total):
        x0 = denoise(x, times[i], **cond)
        a_t, s_t, a_s, s_s = alphas[i], sigmas[i], alphas[i + 1], sigmas[i + 1]
        if s_s == 0:
            x = x0
        else:
            # from pure noise (alpha_t = 0, lambda = -inf) h is infinite: the first-order step
            # z_s = sigma_s z_t + alpha_s x0_hat, and no later step may use it as history
            h = math.inf if a_t == 0 else math.log(a_s / s_s) - math.log(a_t / s_t)
            d = x0 if math.isinf(h) else _dpmpp_data_term(x0, h, history)
            x = (s_s / s_t) * x - a_s * math.expm1(-h) * d
            history = [] if math.isinf(h) else [(x0, h), *history[: order - 2]]
        if callback is not None:
            callback(i + 1, total, x)
    return x


@torch.inference_mode()
def sample_dpmpp_2m(
    denoise,
    x: torch.Tensor,
    schedule,
    ts: torch.Tensor,
    *,
    generator: Generators = None,
    callback: Callback = None,
    **cond,
) -> torch.Tensor:
    """DPM-Solver++(2M): second-order multistep solver of the probability-flow ODE in data prediction.

    With ``lambda = log(alpha / sigma)``, ``h = lambda_s - lambda_t`` and ``r = h_prev / h``:
    ``D = (1 + 1 / (2 r)) x0_hat_t - 1 / (2 r) x0_hat_prev`` (first step and the step to ``t = 0``: ``D = x0_hat_t``),
    ``z_s = (sigma_s / sigma_t) z_t - alpha_s (exp(-h) - 1) D``. Deterministic; ``generator`` is unused.

    See: Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models",
    Algorithm 2.
    """
    return _dpmpp_multistep(denoise, x, schedule, ts, order=2, callback=callback, **cond)


@torch.inference_mode()
def sample_dpmpp_3m(
    denoise,
    x: torch.Tensor,
    schedule,
    ts: torch.Tensor,
    *,
    generator: Generators = None,
    callback: Callback = None,
    **cond,
) -> torch.Tensor:
    """DPM-Solver++(3M): third-order multistep solver of the probability-flow ODE in data prediction.

    With ``h`` as in :func:`sample_dpmpp_2m`, the two previous steps' ``h_1, h_2``, ``r_0 = h_1 / h``,
    ``r_1 = h_2 / h``, ``D1_0 = (x0_hat_t - x0_hat_1) / r_0``, ``D1_1 = (x0_hat_1 - x0_hat_2) / r_1``,
    ``D1 = D1_0 + r_0 / (r_0 + r_1) (D1_0 - D1_1)`` (``~ h dx0/dlambda``), ``D2 = 2 (D1_0 - D1_1) / (r_0 + r_1)``
    (``~ h^2 d^2x0/dlambda^2``) and ``phi_1 = exp(-h) - 1``, ``phi_2 = phi_1 / h + 1``, ``phi_3 = phi_2 / h - 1 / 2``:
    ``z_s = (sigma_s / sigma_t) z_t - alpha_s phi_1 x0_hat_t + alpha_s phi_2 D1 - alpha_s phi_3 D2``, the
    exponential integrator's second-order Taylor expansion of ``x0_hat`` in ``lambda``. The first steps use orders 1
    and 2 (the (2M) update), so on a grid from pure noise the start-up step's error keeps the global order at 2;
    past the start-up the local order is 3. The step to ``t = 0`` returns ``x0_hat``. Deterministic;
    ``generator`` is unused.

    See: Lu et al. 2022, "DPM-Solver++", §4 (multistep solvers, data prediction) and Lu et al. 2022,
    "DPM-Solver", §3.2 and App. B (the ``phi_k`` Taylor terms of the exponential integrator).
    """
    return _dpmpp_multistep(denoise, x, schedule, ts, order=3, callback=callback, **cond)


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_3m": sample_dpmpp_3m,
}


def sampler_options(sampler: str) -> list[str]:
    """The options a sampler takes besides the common arguments, e.g. ``["eta"]`` for ``"ddim"``."""
    common = {"denoise", "x", "schedule", "ts", "generator", "callback"}
    parameters = inspect.signature(look_up_option(sampler, SAMPLERS)).parameters.values()
    return [p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name not in common]


def checked_sampler_options(sampler: str, options: Mapping[str, object] | None) -> dict[str, object]:
    """``options`` as a dict once every key is an option of ``sampler``.

    Raises:
        ValueError: an unknown sampler, or an option it does not take (listing the ones it takes).
    """
    accepted = sampler_options(sampler)
    unknown = sorted(set(options or {}) - set(accepted))
    if unknown:
        raise ValueError(f"sampler {sampler!r} takes no option(s) {unknown}; its options are {accepted}.")
    return dict(options or {})


def run_sampler(
    sampler: str,
    denoise,
    x: torch.Tensor,
    schedule,
    ts: torch.Tensor,
    *,
    options: Mapping[str, object] | None = None,
    generator: Generators = None,
    callback: Callback = None,
    **cond,
) -> torch.Tensor:
    """Run the sampler named ``sampler`` from ``x`` along ``ts`` with its ``options`` (e.g. ``{"eta": 1.0}``).

    Raises:
        ValueError: an unknown sampler, or an option the sampler does not take (listing the ones it takes).
    """
    options = checked_sampler_options(sampler, options)
    return SAMPLERS[sampler](denoise, x, schedule, ts, generator=generator, callback=callback, **options, **cond)


def sample(
    denoise,
    schedule,
    shape: Sequence[int],
    *,
    sampler: str = "dpmpp_2m",
    num_steps: int = 50,
    spacing: str = "quadratic",
    seeds: Sequence[int] | None = None,
    options: Mapping[str, object] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    callback: Callback = None,
    **cond,
) -> torch.Tensor:
    """Generate a batch: seeded initial noise at ``t = 1``, then the named sampler down to ``t = 0``.

    Args:
        denoise: ``denoise(x, t, **cond) -> x0_hat`` (a :mod:`monai_gen.networks.precond` wrapper, possibly
            wrapped by :class:`monai_gen.diffusion.guidance.ConditionGuidance`), in eval mode.
        schedule: the schedule the denoiser was trained with.
        shape: ``(B, C, *spatial)`` of the output.
        sampler: ``"ddpm"``, ``"ddim"``, ``"dpmpp_2m"`` or ``"dpmpp_3m"``.
        num_steps: network evaluations (xMADD: 50).
        spacing: time grid, ``"quadratic"`` (finer near clean data; keeps narrow features' variance) or
            ``"uniform"`` (see :func:`monai_gen.diffusion.schedules.time_grid`).
        seeds: one seed per sample (sample ``i`` depends on ``seeds[i]`` only); None uses the global RNG.
        options: the sampler's own options (see :func:`sampler_options`), e.g. ``{"eta": 1.0}`` for DDIM.
        device, dtype: of the output.
        callback: ``callback(step, total, x)`` after every step.
        cond: condition tensors ``(B, ...)`` for the denoiser.

    Returns:
        Samples ``(B, C, *spatial)``.
    """
    if seeds is not None and len(seeds) != shape[0]:
        raise ValueError(f"seeds has {len(seeds)} entries but shape {tuple(shape)} asks for {shape[0]} samples.")
    generator = None if seeds is None else per_sample_generators(seeds)
    x = sample_noise(shape, generator=generator, device=device, dtype=dtype)
    ts = time_grid(num_steps, spacing=spacing)
    return run_sampler(sampler, denoise, x, schedule, ts, options=options, generator=generator, callback=callback, **cond)
