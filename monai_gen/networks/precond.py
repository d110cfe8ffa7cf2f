"""Parameterisation wrappers: turn a network's raw prediction into the clean-data estimate ``x0_hat``.

Each wrapper exposes ``denoise(x_t, t, **cond) -> x0_hat`` (its ``forward``), the only interface samplers,
guidance and objectives see. With ``z_t = alpha_t x + sigma_t eps`` (``alpha^2 + sigma^2 = 1``):

- ``"epsilon"``: the network predicts ``eps``;  ``x0 = (z - sigma eps_hat) / alpha``.
- ``"sample"``: the network predicts ``x0`` directly.
- ``"v_prediction"``: the network predicts ``v = alpha eps - sigma x``;  ``x0 = alpha z - sigma v_hat``.

Names follow MONAI's ``prediction_type`` strings (``DDPMPredictionType``).

See: Ho et al. 2020 (epsilon); Salimans & Ho 2022, "Progressive Distillation", §4 and App. D (v); Kingma & Gao 2023.
"""

from __future__ import annotations

import torch
from monai.utils import look_up_option, unsqueeze_right
from torch import nn

__all__ = ["EpsilonDenoiser", "SampleDenoiser", "VDenoiser", "PREDICTION_TYPES", "make_denoiser"]


class _Parameterised(nn.Module):
    """Common part: evaluate the schedule at ``t`` and the network, then convert its output to ``x0_hat``."""

    def __init__(self, model: nn.Module, schedule) -> None:
        super().__init__()
        self.model = model
        self.schedule = schedule

    def to_x0(self, out: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        """``x0_hat`` from noisy ``x`` ``(B, C, *spatial)`` at times ``t`` ``(B,)``; ``cond`` goes to the network."""
        alpha, sigma = self.schedule.alpha_sigma(t)
        alpha, sigma = (unsqueeze_right(v.to(x.dtype), x.ndim) for v in (alpha, sigma))
        return self.to_x0(self.model(x, t.to(x.dtype), **cond), x, alpha, sigma)


class EpsilonDenoiser(_Parameterised):
    """The network predicts the noise ``eps``; ``x0_hat = (z - sigma eps_hat) / alpha`` (Ho et al. 2020, Eq. 15)."""

    def to_x0(self, out: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return (z - sigma * out) / alpha


class SampleDenoiser(_Parameterised):
    """The network predicts ``x0`` itself."""

    def to_x0(self, out: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return out


class VDenoiser(_Parameterised):
    """The network predicts ``v = alpha eps - sigma x``; ``x0_hat = alpha z - sigma v_hat`` (Salimans & Ho 2022)."""

    def to_x0(self, out: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return alpha * z - sigma * out


PREDICTION_TYPES: dict[str, type[_Parameterised]] = {
    "epsilon": EpsilonDenoiser,
    "sample": SampleDenoiser,
    "v_prediction": VDenoiser,
}


def make_denoiser(model: nn.Module, schedule, prediction_type: str = "v_prediction") -> nn.Module:
    """Wrap ``model`` (``net(x, t, **cond)``) as ``denoise(x, t, **cond) -> x0_hat``.

    Args:
        model: the network, e.g. :class:`monai_gen.networks.ConditionalDenoiser`.
        schedule: a :class:`monai_gen.diffusion.schedules.NoiseSchedule`.
        prediction_type: ``"epsilon"``, ``"sample"`` or ``"v_prediction"``.

    Returns:
        The wrapper module (it shares ``model``'s parameters).
    """
    return look_up_option(prediction_type, PREDICTION_TYPES)(model, schedule)
