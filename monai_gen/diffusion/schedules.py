"""Noise schedules in continuous time and the sampling time grid.

Time convention of the whole package: ``t`` in ``[0, 1]``, ``t = 0`` clean data, ``t = 1`` the noisiest level.
A schedule maps ``t`` to the variance-preserving coefficients ``(alpha_t, sigma_t)`` of
``z_t = alpha_t x + sigma_t eps`` (``alpha^2 + sigma^2 = 1``) and to the log signal-to-noise ratio
``lambda_t = log(alpha_t^2 / sigma_t^2)``. Every schedule offers ``alpha_sigma(t)`` and ``log_snr(t)``; they compute in
float64 and return the dtype of ``t`` (pass float64 ``t`` to keep float64).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from monai.utils import look_up_option

__all__ = ["NoiseSchedule", "CosineSchedule", "DiscreteSchedule", "TIME_SPACINGS", "time_grid"]


class NoiseSchedule(Protocol):
    """What samplers, parameterisations and objectives need from a schedule."""

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def log_snr(self, t: torch.Tensor) -> torch.Tensor: ...


def _check_time(t: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t)
    if not t.is_floating_point():
        raise TypeError(f"t must be a floating-point tensor in [0, 1], got dtype {t.dtype}.")
    if t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(
            f"t must lie in [0, 1] (0 clean, 1 noisiest), got values in [{t.min().item()}, {t.max().item()}]."
        )
    return t


class CosineSchedule:
    """The xMADD shifted cosine schedule in continuous time.

    xMADD Eq. 1 writes ``z = sin(phi) x + cos(phi) eps`` with ``phi = ((tau / T + s) / (1 + s)) * pi / 2`` and ``tau``
    running from 0 (noisiest) to ``T`` (clean). With this package's ``t = 1 - tau / T``:

        ``phi(t) = ((1 - t + s) / (1 + s)) * pi / 2``,  ``alpha_t = sin(phi)``,  ``sigma_t = cos(phi)``.

    So ``t = 0`` gives ``alpha = 1, sigma = 0`` (clean) and ``t = 1`` gives ``phi = s / (1 + s) * pi / 2``:
    the shift ``s`` keeps the noisiest level away from pure noise (``alpha_1 = 0.0747`` for ``s = 0.05``).
    ``lambda_t = 2 log tan(phi)``.

    Args:
        shift: the constant ``s`` of Eq. 1 (paper: 0.05), ``0 <= s``.

    See: xMADD §3.2, Eq. 1; Nichol & Dhariwal 2021 (cosine schedule).
    """

    def __init__(self, shift: float = 0.05) -> None:
        if not shift >= 0:
            raise ValueError(f"shift must be >= 0, got {shift!r}.")
        self.shift = float(shift)

    def _phi(self, t: torch.Tensor) -> torch.Tensor:
        return (1.0 - _check_time(t).double() + self.shift) / (1.0 + self.shift) * (math.pi / 2)

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha_t, sigma_t)`` with the shape and dtype of ``t``; ``sigma_0`` is exactly 0."""
        t = torch.as_tensor(t)
        phi = self._phi(t)
        sigma = torch.where(t == 0, torch.zeros_like(phi), phi.cos())
        return phi.sin().to(t.dtype), sigma.to(t.dtype)

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """``lambda_t = log(alpha_t^2 / sigma_t^2)``; ``+inf`` at ``t = 0``."""
        t = torch.as_tensor(t)
        alpha, sigma = self.alpha_sigma(t.double())
        return (2 * (alpha.log() - sigma.log())).to(t.dtype)


class DiscreteSchedule:
    """A MONAI scheduler's discrete noise levels as a continuous-time schedule (adapter, not a re-implementation).

    Step ``k`` of ``N`` (``alphas_cumprod[k]``) sits at ``t = (k + 1) / N`` and ``t = 0`` is clean data
    (``alpha_bar = 1``); ``alpha_bar`` is linearly interpolated in between. ``alpha_t = sqrt(alpha_bar)``,
    ``sigma_t = sqrt(1 - alpha_bar)``. The denoiser network receives ``1000 t``, i.e. ``k + 1`` for ``N = 1000``.

    Args:
        scheduler: a MONAI scheduler with ``alphas_cumprod`` (``DDPMScheduler``, ``DDIMScheduler``, ...), e.g.
            ``DDPMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta")``.

    See: Ho et al. 2020 (DDPM, discrete schedule); MONAI ``monai.networks.schedulers``.
    """

    def __init__(self, scheduler: object) -> None:
        alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
        if not isinstance(alphas_cumprod, torch.Tensor):
            raise TypeError(
                f"scheduler must be a MONAI scheduler with an alphas_cumprod tensor (DDPMScheduler, DDIMScheduler), "
                f"got {type(scheduler).__name__}."
            )
        self.alpha_bar = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod]).double()

    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        table = self.alpha_bar.to(t.device)
        u = _check_time(t).double() * (len(table) - 1)
        low = u.floor().clamp(max=len(table) - 2).long()
        frac = u - low
        return table[low] * (1 - frac) + table[low + 1] * frac

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha_t, sigma_t)`` with the shape and dtype of ``t``."""
        t = torch.as_tensor(t)
        alpha_bar = self._alpha_bar(t)
        return alpha_bar.sqrt().to(t.dtype), (1 - alpha_bar).clamp(min=0).sqrt().to(t.dtype)

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """``lambda_t = log(alpha_bar / (1 - alpha_bar))``; ``+inf`` at ``t = 0``."""
        t = torch.as_tensor(t)
        alpha_bar = self._alpha_bar(t)
        return (alpha_bar.log() - (1 - alpha_bar).log()).to(t.dtype)


#: time-grid spacings: name -> map from u in [0, 1] (uniform in step index) to the fraction of [t_min, t_max]
TIME_SPACINGS = {"uniform": lambda u: u, "quadratic": lambda u: u.square()}


def time_grid(
    num_steps: int,
    *,
    spacing: str = "uniform",
    t_max: float = 1.0,
    t_min: float = 0.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Descending time grid for a sampler: ``num_steps`` network evaluations from ``t_max`` to ``t_min``.

    ``"uniform"`` spaces times evenly (xMADD's 50 equal steps); ``"quadratic"`` puts ``t_i - t_min`` proportional to
    ``((N - i) / N)^2``, so steps get finer towards clean data, where the last ``x0_hat`` would otherwise shrink narrow
    (low-variance) features (Song et al. 2021, DDIM, App. D.2).

    Args:
        num_steps: number of steps ``N`` (xMADD used 50).
        spacing: ``"uniform"`` or ``"quadratic"``.
        t_max: first (noisiest) time.
        t_min: last time, 0 = clean data.
        device: device of the grid.

    Returns:
        float64 tensor ``(num_steps + 1,)`` from ``t_max`` down to ``t_min``.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}.")
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"need 0 <= t_min < t_max <= 1, got t_min={t_min!r}, t_max={t_max!r}.")
    warp = look_up_option(spacing, TIME_SPACINGS)
    u = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64, device=device)
    return t_min + (t_max - t_min) * warp(u)
