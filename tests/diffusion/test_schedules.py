"""Schedules: endpoints, monotonicity, the mapping to xMADD Eq. 1, MONAI discrete schedules, the time grid."""

from __future__ import annotations

import math

import pytest
import torch
from monai.networks.schedulers import DDPMScheduler

from monai_gen.diffusion.schedules import CosineSchedule, DiscreteSchedule, time_grid

T = torch.linspace(0, 1, 1001, dtype=torch.float64)


def test_cosine_endpoints_and_shift():
    alpha, sigma = CosineSchedule(0.05).alpha_sigma(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert alpha[0] == 1.0 and sigma[0] == 0.0  # clean at t = 0
    assert alpha[1].item() == pytest.approx(math.sin(0.05 / 1.05 * math.pi / 2), abs=1e-15)  # not pure noise
    assert alpha[1].item() == pytest.approx(0.0747, abs=1e-4)
    alpha, sigma = CosineSchedule(0.0).alpha_sigma(torch.tensor([1.0], dtype=torch.float64))
    assert alpha.item() == pytest.approx(0.0, abs=1e-15) and sigma.item() == pytest.approx(1.0)


def test_cosine_matches_xmadd_eq1_with_reversed_time():
    s, big_t = 0.05, 50
    tau = torch.arange(big_t + 1, dtype=torch.float64)  # paper time: 0 noisiest ... T clean
    alpha, sigma = CosineSchedule(s).alpha_sigma(1 - tau / big_t)
    phi = (tau / big_t + s) / (1 + s) * math.pi / 2
    torch.testing.assert_close(alpha, phi.sin())
    torch.testing.assert_close(sigma, phi.cos(), atol=1e-15, rtol=0)


@pytest.mark.parametrize("schedule", [CosineSchedule(0.05), DiscreteSchedule(DDPMScheduler(1000))])
def test_variance_preserving_and_monotone(schedule):
    alpha, sigma = schedule.alpha_sigma(T)
    torch.testing.assert_close(alpha.square() + sigma.square(), torch.ones_like(T))
    assert (alpha.diff() < 0).all() and (sigma.diff() > 0).all()
    log_snr = schedule.log_snr(T)
    assert log_snr[0] == math.inf and (log_snr.diff() < 0).all()
    torch.testing.assert_close(log_snr[1:], (alpha[1:] / sigma[1:]).square().log())


def test_dtype_follows_t():
    schedule = CosineSchedule()
    for dtype in (torch.float32, torch.float64):
        alpha, sigma = schedule.alpha_sigma(torch.rand(3, dtype=dtype))
        assert alpha.dtype == sigma.dtype == schedule.log_snr(torch.rand(3, dtype=dtype)).dtype == dtype


def test_discrete_schedule_hits_monai_levels():
    scheduler = DDPMScheduler(num_train_timesteps=100, schedule="scaled_linear_beta")
    k = torch.tensor([0, 17, 99])
    alpha, sigma = DiscreteSchedule(scheduler).alpha_sigma((k + 1).double() / 100)
    torch.testing.assert_close(alpha.square(), scheduler.alphas_cumprod[k].double())
    assert DiscreteSchedule(scheduler).alpha_sigma(torch.tensor([0.0]))[1].item() == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        CosineSchedule().alpha_sigma(torch.tensor([1.5]))
    with pytest.raises(TypeError, match="floating-point"):
        CosineSchedule().alpha_sigma(torch.tensor([1]))
    with pytest.raises(ValueError, match="shift must be >= 0"):
        CosineSchedule(-0.1)
    with pytest.raises(TypeError, match="alphas_cumprod"):
        DiscreteSchedule(CosineSchedule())


def test_time_grid():
    grid = time_grid(50)
    assert grid.dtype == torch.float64 and len(grid) == 51 and grid[0] == 1.0 and grid[-1] == 0.0
    assert (grid.diff() < 0).all()
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        time_grid(0)
    with pytest.raises(ValueError, match="t_min < t_max"):
        time_grid(5, t_min=0.5, t_max=0.2)


def test_quadratic_spacing_is_finer_near_clean_data():
    grid = time_grid(10, spacing="quadratic")
    assert grid[0] == 1.0 and grid[-1] == 0.0 and (grid.diff() < 0).all()
    torch.testing.assert_close(grid, torch.linspace(1, 0, 11, dtype=torch.float64).square())
    steps = -grid.diff()
    assert (steps.diff() < 0).all()  # each step smaller than the one before
    shifted = time_grid(4, spacing="quadratic", t_min=0.2, t_max=0.6)
    assert shifted[0].item() == pytest.approx(0.6) and shifted[-1].item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="quadratic"):
        time_grid(4, spacing="quadratc")
