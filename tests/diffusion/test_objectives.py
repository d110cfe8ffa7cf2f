"""DiffusionObjective: zero loss for an oracle, closed form for a zero network, the sigmoid weighting identity."""

from __future__ import annotations

import math

import pytest
import torch
from monai.utils import unsqueeze_right
from torch import nn

from monai_gen.diffusion.objectives import WEIGHTINGS, DiffusionObjective, sigmoid_weight
from monai_gen.diffusion.schedules import CosineSchedule


class _Oracle(nn.Module):
    def __init__(self, x0: torch.Tensor, schedule, kind: str) -> None:
        super().__init__()
        self.x0, self.schedule, self.kind = x0, schedule, kind

    def forward(self, z, t):
        alpha, sigma = (unsqueeze_right(v, z.ndim) for v in self.schedule.alpha_sigma(t.double()))
        eps = (z.double() - alpha * self.x0) / sigma
        return {"epsilon": eps, "sample": self.x0, "v_prediction": alpha * eps - sigma * self.x0}[self.kind].to(z.dtype)


class _Zero(nn.Module):
    def forward(self, z, t, **cond):
        return torch.zeros_like(z)


def test_sigmoid_weight_is_kingma_gao_in_epsilon_space():
    log_snr, b = torch.linspace(-10, 10, 41, dtype=torch.float64), 3.0
    # ||eps - eps_hat||^2 = exp(lambda) ||x - x_hat||^2, so the x-space weight / exp(lambda) is the eps-space weight
    torch.testing.assert_close(
        sigmoid_weight(log_snr, b) / log_snr.exp(), math.exp(-2 * b) * torch.sigmoid(b - log_snr)
    )


@pytest.mark.parametrize("kind", ["epsilon", "sample", "v_prediction"])
def test_oracle_network_has_zero_loss(kind):
    schedule = CosineSchedule(0.05)
    x0 = torch.randn(4, 3, 16, dtype=torch.float64)
    loss = DiffusionObjective(schedule, prediction_type=kind)(_Oracle(x0, schedule, kind), x0)
    assert loss.item() == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize("time_power", [1.0, 2.0])
def test_zero_network_loss_has_closed_form(time_power):
    schedule = CosineSchedule(0.05)
    x0 = torch.randn(5, 2, 8)
    loss = DiffusionObjective(schedule, prediction_type="sample", bias=3.0, time_power=time_power)(
        _Zero(), x0, generator=torch.Generator().manual_seed(0)
    )
    t = 1 - torch.rand(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) ** time_power
    expected = (sigmoid_weight(schedule.log_snr(t), 3.0) * x0.double().square().mean(dim=(1, 2))).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.ndim == 0 and loss.dtype == x0.dtype


def test_v_weighting_is_the_v_space_mse_and_trains_pure_noise():
    schedule = CosineSchedule(0.0)  # zero terminal SNR: t = 1 is pure noise
    x0 = torch.randn(6, 2, 8, dtype=torch.float64)
    objective = DiffusionObjective(schedule, prediction_type="v_prediction", weighting="v")
    loss = objective(_Zero(), x0, generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(1)
    t = 1 - torch.rand(6, generator=generator, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    alpha, sigma = (v[:, None, None] for v in schedule.alpha_sigma(t))
    v_target = alpha * eps - sigma * x0  # the zero network predicts v_hat = 0
    assert loss.item() == pytest.approx(v_target.square().mean(dim=(1, 2)).mean().item(), rel=1e-9)
    pure_noise = torch.tensor([-math.inf], dtype=torch.float64)  # lambda at t = 1
    assert WEIGHTINGS["v"](pure_noise, 0.0).item() == 1.0 and sigmoid_weight(pure_noise, -1.0).item() == 0.0


def test_conditions_reach_the_model_and_bad_arguments_fail():
    class _Needs(nn.Module):
        def forward(self, z, t, *, conditions):
            return conditions.sum() * z

    objective = DiffusionObjective(CosineSchedule(), weighting="uniform")
    assert objective(_Needs(), torch.ones(2, 1, 4), conditions=torch.zeros(2, 1)).item() > 0
    with pytest.raises(ValueError, match="sigmoid"):
        DiffusionObjective(CosineSchedule(), weighting="sigmoidal")
    with pytest.raises(ValueError, match="time_power must be >= 1"):
        DiffusionObjective(CosineSchedule(), time_power=0.5)
    with pytest.raises(ValueError, match=r"x0 must be a floating-point \(B, C, \*spatial\)"):
        objective(_Zero(), torch.ones(2, 4))
