"""Parameterisation wrappers: an oracle network of each kind recovers x0 exactly."""

from __future__ import annotations

import pytest
import torch
from monai.utils import unsqueeze_right
from torch import nn

from monai_gen.diffusion.schedules import CosineSchedule
from monai_gen.networks.precond import EpsilonDenoiser, SampleDenoiser, VDenoiser, make_denoiser


class _Oracle(nn.Module):
    """Returns the exact target of a parameterisation for known clean data ``x0``."""

    def __init__(self, x0: torch.Tensor, schedule, kind: str) -> None:
        super().__init__()
        self.x0, self.schedule, self.kind = x0, schedule, kind

    def forward(self, z, t, **cond):
        alpha, sigma = (unsqueeze_right(v, z.ndim) for v in self.schedule.alpha_sigma(t.double()))
        x0 = self.x0.double()
        eps = (z.double() - alpha * x0) / sigma
        target = {"epsilon": eps, "sample": x0, "v_prediction": alpha * eps - sigma * x0}[self.kind]
        return target.to(z.dtype) + cond.get("offset", 0.0)


@pytest.mark.parametrize(
    "kind, cls", [("epsilon", EpsilonDenoiser), ("sample", SampleDenoiser), ("v_prediction", VDenoiser)]
)
def test_oracle_recovers_x0(kind, cls):
    schedule = CosineSchedule(0.05)
    x0 = torch.randn(3, 2, 8, dtype=torch.float64)
    t = torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)
    alpha, sigma = (unsqueeze_right(v, 3) for v in schedule.alpha_sigma(t))
    z = alpha * x0 + sigma * torch.randn_like(x0)
    denoise = make_denoiser(_Oracle(x0, schedule, kind), schedule, kind)
    assert isinstance(denoise, cls)
    torch.testing.assert_close(denoise(z, t), x0)
    # conditions are passed through to the network
    assert (denoise(z, t, offset=1.0) - x0).abs().min() > 1e-3


def test_unknown_prediction_type_gets_a_hint():
    with pytest.raises(ValueError, match="v_prediction"):
        make_denoiser(nn.Identity(), CosineSchedule(), "v_predicton")
