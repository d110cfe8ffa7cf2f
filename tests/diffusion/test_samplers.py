"""Samplers: an oracle denoiser for a known Gaussian target, seeds, batch independence, callback, registry."""

from __future__ import annotations

import pytest
import torch
from monai.networks.schedulers import DDPMScheduler
from monai.utils import unsqueeze_right

from monai_gen.diffusion.samplers import (
    SAMPLERS,
    per_sample_generators,
    sample,
    sample_ddim,
    sample_noise,
    sampler_options,
)
from monai_gen.diffusion.schedules import CosineSchedule, DiscreteSchedule, time_grid
from monai_gen.engines.sampling import DiffusionSamplingInferer

MU = torch.tensor([1.5, -0.5, 0.0], dtype=torch.float64)
STD = torch.tensor([0.5, 1.0, 0.2], dtype=torch.float64)
N = 20000  # samples: standard error of the mean <= 1.0 / sqrt(N) = 0.007, of the std <= 0.5 %


def _gaussian_oracle(schedule):
    """The exact posterior mean E[x0 | z_t] for x0 ~ N(MU, diag(STD^2)) (a linear-Gaussian model)."""

    def denoise(z, t):
        alpha, sigma = (unsqueeze_right(v.double(), z.ndim) for v in schedule.alpha_sigma(t.double()))
        gain = alpha * STD**2 / (alpha**2 * STD**2 + sigma**2)
        return (MU + gain * (z - alpha * MU)).to(z.dtype)

    return denoise


def _marginal_at_one(schedule, generator):
    """Exact samples of z_1 (the shifted schedule does not end at pure noise; shift 0 does)."""
    alpha, sigma = schedule.alpha_sigma(torch.tensor(1.0, dtype=torch.float64))
    noise = sample_noise((N, 3), generator=generator, dtype=torch.float64)
    return alpha * MU + (alpha**2 * STD**2 + sigma**2).sqrt() * noise


# (sampler, steps, mean tolerance, relative std tolerance): measured errors were about half the tolerance
CASES = [
    ("dpmpp_2m", 50, 0.025, 0.03), ("dpmpp_3m", 50, 0.025, 0.03), ("ddim", 100, 0.025, 0.05), ("ddpm", 100, 0.025, 0.07)
]


@pytest.mark.parametrize("name, steps, mean_tol, std_tol", CASES)
@pytest.mark.parametrize(
    "schedule",
    [CosineSchedule(0.05), CosineSchedule(0.0), DiscreteSchedule(DDPMScheduler(1000, schedule="scaled_linear_beta"))],
    ids=["cosine", "cosine_zero_terminal_snr", "monai_ddpm"],
)
def test_oracle_denoiser_reaches_gaussian_target(name, steps, mean_tol, std_tol, schedule):
    generator = torch.Generator().manual_seed(0)
    x_t = _marginal_at_one(schedule, generator)
    out = SAMPLERS[name](
        _gaussian_oracle(schedule), x_t, schedule, time_grid(steps, spacing="quadratic"), generator=generator
    )
    assert out.dtype == torch.float64
    assert (out.mean(0) - MU).abs().max() < mean_tol
    assert (out.std(0) / STD - 1).abs().max() < std_tol


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_seeds_reproduce_and_batch_of_four_equals_four_batches_of_one(name, tiny_denoiser):
    denoise = tiny_denoiser()
    values = torch.tensor([[0.5, 1.0], [-1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    seeds = [11, 12, 13, 14]
    kwargs = {"sampler": name, "num_steps": 4, "options": {"eta": 0.5} if "eta" in sampler_options(name) else {}}
    batch = sample(denoise, CosineSchedule(0.05), (4, 2, 16), seeds=seeds, conditions=values, **kwargs)
    again = sample(denoise, CosineSchedule(0.05), (4, 2, 16), seeds=seeds, conditions=values, **kwargs)
    assert torch.equal(batch, again)
    singles = [
        sample(denoise, CosineSchedule(0.05), (1, 2, 16), seeds=[s], conditions=values[i : i + 1], **kwargs)
        for i, s in enumerate(seeds)
    ]
    torch.testing.assert_close(batch, torch.cat(singles), atol=1e-5, rtol=1e-5)
    other = sample(denoise, CosineSchedule(0.05), (1, 2, 16), seeds=[99], conditions=values[:1], **kwargs)
    assert (other - singles[0]).abs().max() > 1e-2


def test_stochastic_samplers_use_the_generator_each_step():
    schedule = CosineSchedule(0.05)
    denoise = _gaussian_oracle(schedule)
    x = torch.zeros(2, 3, dtype=torch.float64)
    a = SAMPLERS["ddpm"](denoise, x, schedule, time_grid(5), generator=per_sample_generators([1, 2]))
    b = SAMPLERS["ddpm"](denoise, x, schedule, time_grid(5), generator=per_sample_generators([1, 3]))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
    det = [sample_ddim(denoise, x, schedule, time_grid(5), generator=per_sample_generators([s, s])) for s in (1, 2)]
    assert torch.equal(det[0], det[1])  # eta = 0 draws nothing


def test_callback_and_inference_mode(tiny_denoiser):
    seen = []
    denoise = tiny_denoiser()
    out = sample(
        denoise,
        CosineSchedule(),
        (1, 2, 16),
        num_steps=3,
        seeds=[0],
        callback=lambda step, total, x: seen.append((step, total, x.is_inference())),
    )
    assert seen == [(1, 3, True), (2, 3, True), (3, 3, True)]
    assert out.is_inference()


def test_errors(tiny_denoiser):
    denoise = tiny_denoiser()
    with pytest.raises(ValueError, match="dpmpp_2m"):
        sample(denoise, CosineSchedule(), (1, 2, 16), sampler="dpm++")
    with pytest.raises(ValueError, match="seeds has 1 entries"):
        sample(denoise, CosineSchedule(), (2, 2, 16), seeds=[0])
    with pytest.raises(ValueError, match=r"sampler 'dpmpp_2m' takes no option\(s\) \['eta'\]; its options are \[\]"):
        sample(denoise, CosineSchedule(), (1, 2, 16), options={"eta": 1.0})
    with pytest.raises(ValueError, match=r"sampler 'ddim' takes no option\(s\) \['etaa'\]; its options are \['eta'\]"):
        DiffusionSamplingInferer(CosineSchedule(), sampler="ddim", sampler_options={"etaa": 1.0})
    with pytest.raises(ValueError, match="list of 3 generators"):
        sample_noise((2, 4), generator=per_sample_generators([0, 1, 2]))
    with pytest.raises(ValueError, match="strictly descending"):
        sample_ddim(denoise, torch.zeros(1, 2, 16), CosineSchedule(), torch.tensor([0.0, 1.0]))
    with pytest.warns(UserWarning, match="eta = 1.5"):
        sample_ddim(
            _gaussian_oracle(CosineSchedule()),
            torch.zeros(1, 3, dtype=torch.float64),
            CosineSchedule(),
            time_grid(2),
            eta=1.5,
        )


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_cuda_follows_x_and_matches_cpu(name, tiny_denoiser):
    denoise = tiny_denoiser()
    kwargs = {"sampler": name, "num_steps": 3, "seeds": [5, 6], "conditions": torch.tensor([[0.5, 1.0], [0.0, 0.0]])}
    cpu = sample(denoise, CosineSchedule(), (2, 2, 16), **kwargs)
    kwargs["conditions"] = kwargs["conditions"].cuda()
    gpu = sample(denoise.cuda(), CosineSchedule(), (2, 2, 16), device="cuda", **kwargs)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_whole_chain_builds_from_a_bundle_style_config():
    from monai.bundle import ConfigParser

    config = {
        "schedule": {"_target_": "monai_gen.diffusion.schedules.CosineSchedule", "shift": 0.05},
        "network": {
            "_target_": "monai_gen.networks.conditioning.ConditionalDenoiser",
            "backbone": {
                "_target_": "monai_gen.networks.nets.DenoisingUNet",
                "spatial_dims": 1,
                "in_channels": 2,
                "out_channels": 2,
                "channels": [8, 8],
                "attention_levels": [False, True],
                "num_res_blocks": 1,
                "norm_num_groups": 8,
                "num_head_channels": 8,
                "kernel_size": 7,
                "with_conditioning": True,
                "cross_attention_dim": 8,
            },
            "phenotype_encoder": {
                "_target_": "monai_gen.networks.conditioning.PhenotypeEncoder",
                "num_categories": [0, 2],
                "embed_dim": 8,
            },
        },
        "objective": {"_target_": "monai_gen.diffusion.objectives.DiffusionObjective", "schedule": "@schedule"},
        "denoiser": {
            "_target_": "monai_gen.networks.precond.make_denoiser",
            "model": "@network",
            "schedule": "@schedule",
            "prediction_type": "v_prediction",
        },
        "guided": {
            "_target_": "monai_gen.diffusion.guidance.ConditionGuidance",
            "denoise": "@denoiser",
            "scales": {"condition_mask": [2.0, 1.0]},
        },
    }
    parser = ConfigParser(config)
    network, objective = parser.get_parsed_content("network"), parser.get_parsed_content("objective")
    values = torch.tensor([[0.5, 1.0], [-0.5, 0.0]])
    loss = objective(network.train(), torch.randn(2, 2, 32), conditions=values)
    loss.backward()
    assert (
        torch.isfinite(loss) and network.backbone.out[2].conv.weight.grad.abs().sum() > 0
    )  # zero-initialised output conv learns first
    network.eval()
    guided, schedule = parser.get_parsed_content("guided"), parser.get_parsed_content("schedule")
    out = sample(guided, schedule, (2, 2, 32), num_steps=2, seeds=[0, 1], conditions=values)
    assert out.shape == (2, 2, 32) and torch.isfinite(out).all()


def test_sampler_options_pass_through_to_the_sampler(tiny_denoiser):
    denoise = tiny_denoiser()

    def run(**options):
        return sample(denoise, CosineSchedule(), (2, 2, 16), sampler="ddim", num_steps=4, seeds=[0, 1], options=options)

    torch.testing.assert_close(run(), run(eta=0.0))
    ancestral = run(eta=1.0)
    assert not torch.allclose(run(), ancestral)  # eta reaches DDIM: its per-step noise changes the result
    generators = per_sample_generators([0, 1])
    noise = sample_noise((2, 2, 16), generator=generators)
    torch.testing.assert_close(ancestral, sample_ddim(denoise, noise, CosineSchedule(), time_grid(4, spacing="quadratic"), eta=1.0, generator=generators))


def test_ddim_with_eta_one_is_the_ddpm_ancestral_sampler():
    # Song et al. 2021, §4.1: eta = 1 gives the DDPM posterior; two independent implementations must agree
    schedule = CosineSchedule(0.05)
    denoise = _gaussian_oracle(schedule)
    x = sample_noise((64, 3), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ts = time_grid(12, spacing="quadratic")
    ddpm = SAMPLERS["ddpm"](denoise, x, schedule, ts, generator=per_sample_generators(range(64)))
    ddim = sample_ddim(denoise, x, schedule, ts, eta=1.0, generator=per_sample_generators(range(64)))
    torch.testing.assert_close(ddim, ddpm, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name, order", [("ddim", 1), ("dpmpp_2m", 2)])
def test_deterministic_samplers_converge_with_their_order(name, order):
    # for Gaussian data the probability-flow ODE maps z_1 to z_t affinely (quantile to quantile), so the exact
    # solution at t = 0.1 is known; halving the step size must divide the error by about 2 ** order
    schedule = CosineSchedule(0.05)
    z1 = torch.linspace(-3, 3, 7, dtype=torch.float64).unsqueeze(1).expand(7, 3).clone()
    (a1, s1), (ae, se) = (schedule.alpha_sigma(torch.tensor(t, dtype=torch.float64)) for t in (1.0, 0.1))
    exact = ae * MU + (ae**2 * STD**2 + se**2).sqrt() * (z1 - a1 * MU) / (a1**2 * STD**2 + s1**2).sqrt()
    errors = [
        (SAMPLERS[name](_gaussian_oracle(schedule), z1, schedule, time_grid(n, t_min=0.1)) - exact).abs().max()
        for n in (32, 64)
    ]
    assert errors[0] / errors[1] == pytest.approx(2**order, rel=0.12)  # measured: 1.99 and 3.85


@pytest.mark.parametrize("name, order", [("dpmpp_2m", 2), ("dpmpp_3m", 3)])
def test_multistep_solvers_reach_their_order_past_the_start_up(name, order):
    # the first steps of a multistep solver are of lower order; two 1e-4 start-up steps make their error negligible,
    # so halving the remaining steps must divide the error by 2 ** order (measured: 4.12 and 7.79; 3M with half its
    # D2 term, as a Taylor slip would write it, measured 3.96: second order)
    schedule = CosineSchedule(0.05)
    u = torch.linspace(-3, 3, 7, dtype=torch.float64).unsqueeze(1).expand(7, 3).clone()
    (a0, s0), (ae, se) = (schedule.alpha_sigma(torch.tensor(t, dtype=torch.float64)) for t in (0.9, 0.1))
    z0, exact = (a * MU + (a**2 * STD**2 + s**2).sqrt() * u for a, s in ((a0, s0), (ae, se)))
    start = torch.tensor([0.9, 0.9 - 1e-4], dtype=torch.float64)
    grids = [torch.cat([start, torch.linspace(0.9 - 2e-4, 0.1, n + 1, dtype=torch.float64)]) for n in (32, 64)]
    errors = [(SAMPLERS[name](_gaussian_oracle(schedule), z0, schedule, ts) - exact).abs().max() for ts in grids]
    assert errors[0] / errors[1] == pytest.approx(2**order, rel=0.12)
