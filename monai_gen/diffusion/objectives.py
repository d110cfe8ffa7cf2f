"""The diffusion training objective: sample a time, noise the data, denoise, weighted squared error.

See: xMADD §3.2, Eq. 2 (sigmoid-weighted loss, b = 3); Kingma & Gao 2023, "Understanding Diffusion Objectives
as the ELBO with Simple Data Augmentation" (sigmoid weighting).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.utils import look_up_option, unsqueeze_right
from torch import nn

from monai_gen.networks.precond import PREDICTION_TYPES, make_denoiser

__all__ = ["sigmoid_weight", "WEIGHTINGS", "DiffusionObjective"]


def sigmoid_weight(log_snr: torch.Tensor, bias: float = 3.0) -> torch.Tensor:
    """xMADD Eq. 2 weight of the x-space error: ``exp(-b) * sigmoid(lambda_t - b)``.

    With ``||eps - eps_hat||^2 = exp(lambda) ||x - x_hat||^2`` this equals Kingma & Gao's epsilon-space weight
    ``sigmoid(b - lambda)`` (also what the xMADD authors' ml4h code applies to its epsilon loss) times the constant
    ``exp(-2 b)``: the same weighting over noise levels and the same optimum, only a smaller loss scale (Adam is
    insensitive to it).

    Args:
        log_snr: ``lambda_t`` ``(B,)``.
        bias: ``b`` (paper: 3).
    """
    return torch.exp(torch.as_tensor(-bias, dtype=log_snr.dtype)) * torch.sigmoid(log_snr - bias)


def _epsilon_weight(log_snr: torch.Tensor, bias: float) -> torch.Tensor:
    """``exp(lambda)``: the x-space form of the plain epsilon MSE ``||eps - eps_hat||^2`` (Ho et al. 2020)."""
    return log_snr.exp()


def _v_weight(log_snr: torch.Tensor, bias: float) -> torch.Tensor:
    """``1 + exp(lambda)``: the x-space form of the plain v MSE ``||v - v_hat||^2 = ||x - x_hat||^2 / sigma^2``.

    Unlike the sigmoid weighting it keeps weight 1 at the noisiest levels (``lambda -> -inf``), where a
    zero-terminal-SNR model must learn the conditional mean that sampling from pure noise starts from.
    """
    return 1.0 + log_snr.exp()


def _uniform_weight(log_snr: torch.Tensor, bias: float) -> torch.Tensor:
    """1: plain x-space MSE."""
    return torch.ones_like(log_snr)


WEIGHTINGS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "sigmoid": sigmoid_weight,
    "epsilon": _epsilon_weight,
    "v": _v_weight,
    "uniform": _uniform_weight,
}


class DiffusionObjective:
    """``objective(model, x0, **cond) -> loss``: everything a trainer needs for one diffusion training step.

    Per sample: ``t = 1 - u^p`` with ``u ~ U[0, 1)`` (``p = time_power``; 1 is uniform), ``eps ~ N(0, I)``,
    ``z_t = alpha_t x0 + sigma_t eps``; the network (through the ``prediction_type`` wrapper of
    :mod:`monai_gen.networks.precond`) gives ``x0_hat``; the loss is
    ``mean_b w(lambda_t) * mean(|x0 - x0_hat|^2)``, with the element mean over channels and space.

    Args:
        schedule: a :class:`monai_gen.diffusion.schedules.NoiseSchedule` (e.g. ``CosineSchedule(0.05)``).
        prediction_type: ``"epsilon"``, ``"sample"`` or ``"v_prediction"``.
        weighting: ``"sigmoid"`` (xMADD Eq. 2), ``"epsilon"`` (plain epsilon MSE), ``"v"`` (plain v MSE) or
            ``"uniform"`` (x MSE).
        bias: ``b`` of the sigmoid weighting (paper: 3).
        time_power: ``p >= 1`` draws noisy times more often (``P(t > 0.95) = 0.05^(1/p)``: 5 % for 1, 22 % for
            2), where a model sampled from pure noise decides a sample's global shape.

    Examples:
        >>> objective = DiffusionObjective(CosineSchedule(0.05), prediction_type="v_prediction")
        >>> loss = objective(model, x0, conditions=values, condition_mask=mask)
        >>> loss.backward()

    See: xMADD §3.2, Eq. 1-2; Kingma & Gao 2023.
    """

    def __init__(
        self,
        schedule,
        *,
        prediction_type: str = "v_prediction",
        weighting: str = "sigmoid",
        bias: float = 3.0,
        time_power: float = 1.0,
    ) -> None:
        self.schedule = schedule
        look_up_option(prediction_type, PREDICTION_TYPES)
        self.prediction_type = prediction_type
        self.weight_fn = look_up_option(weighting, WEIGHTINGS)
        self.bias = float(bias)
        if not time_power >= 1.0:
            raise ValueError(f"time_power must be >= 1, got {time_power!r}.")
        self.time_power = float(time_power)

    def __call__(
        self, model: nn.Module, x0: torch.Tensor, *, generator: torch.Generator | None = None, **cond
    ) -> torch.Tensor:
        """The scalar loss of ``model`` on clean data ``x0`` ``(B, C, *spatial)``; ``cond`` goes to the model."""
        if not x0.is_floating_point() or x0.ndim < 3:
            raise ValueError(f"x0 must be a floating-point (B, C, *spatial) tensor, got {x0.dtype} {tuple(x0.shape)}.")
        device = x0.device if generator is None else generator.device
        u = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64, device=device).to(x0.device)
        t = 1.0 - u**self.time_power
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=device).to(x0.device)
        alpha, sigma = self.schedule.alpha_sigma(t)
        z = unsqueeze_right(alpha.to(x0.dtype), x0.ndim) * x0 + unsqueeze_right(sigma.to(x0.dtype), x0.ndim) * eps
        x0_hat = make_denoiser(model, self.schedule, self.prediction_type)(z, t.to(x0.dtype), **cond)
        weight = self.weight_fn(self.schedule.log_snr(t), self.bias).to(x0.dtype)
        return (weight * (x0_hat - x0).square().flatten(1).mean(1)).mean()
