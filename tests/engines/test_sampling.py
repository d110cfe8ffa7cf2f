"""DiffusionSamplingInferer's precision option on the shipped ECG network: bf16 autocast forward, float32 sampler."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from monai_gen.bundle.registry import bundle_component, find_bundle
from monai_gen.engines.requests import SampleRequest
from monai_gen.engines.sampling import PRECISIONS, ConditionalSampleGenerator, DiffusionSamplingInferer, native_bfloat16
from monai_gen.engines.weights import load_weights
from monai_gen.transforms.conditions import ConditionSet
from monai_gen.transforms.normalisation import LinearNormalisation

REQUESTS = [SampleRequest("a", 0, {"heart_rate": 90, "qrs": 110}), SampleRequest("b", 1, {"qt": 400, "sex": "F"})]


@pytest.fixture(scope="module")
def ecg_parts():
    bundle = find_bundle("ecg_generative_diffusion")
    conditions = ConditionSet.load(bundle / "models/conditions.json")
    network = load_weights(bundle_component(bundle, "network_def"), bundle / "models/model.safetensors")
    return bundle_component(bundle, "schedule"), conditions, network


def _generate(ecg_parts, **options) -> torch.Tensor:
    """Two beats (mV) at 3 DPM-Solver++ steps and guidance 3 (the bundle's: two passes per step)."""
    schedule, conditions, network = ecg_parts
    inferer = DiffusionSamplingInferer(
        schedule, num_steps=3, guidance_scale=3.0, condition_names=conditions.names, **options
    )
    generate = ConditionalSampleGenerator(
        network, inferer, conditions, (12, 640), normalisation=LinearNormalisation(0.25)
    )
    return generate(REQUESTS)


def test_float32_is_the_default_and_bfloat16_runs_the_network_in_bf16(ecg_parts):
    default, fp32 = _generate(ecg_parts), _generate(ecg_parts, precision="float32")
    torch.testing.assert_close(fp32, default, rtol=0, atol=0)
    seen = []
    handle = ecg_parts[2].backbone.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    try:
        bf16 = _generate(ecg_parts, precision="bfloat16")
    finally:
        handle.remove()
    assert set(seen) == {torch.bfloat16}  # every backbone forward ran under autocast
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    # bf16 keeps 8 bits of mantissa (one forward: 1.1 % mean relative error here); the beats differ by a few uV
    # (measured 0.0032 mV mean absolute, the beats' own mean |x| 0.026 mV; 12 vs 25 float32 steps differ by 0.0095 mV)
    assert 0 < (bf16 - fp32).abs().mean() < 0.01


def test_unknown_precision_is_refused_at_config_time(ecg_parts):
    with pytest.raises(ValueError, match="bfloat16"):
        DiffusionSamplingInferer(ecg_parts[0], precision="float8")
    assert set(PRECISIONS) == {"float32", "bfloat16"}


def test_native_bfloat16_reads_the_cpu_flags():
    flags = (
        next(
            (
                line.split(":", 1)[1].split()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("flags")
            ),
            None,
        )
        if Path("/proc/cpuinfo").is_file()
        else None
    )
    if flags is None:
        pytest.skip("no /proc/cpuinfo flags on this system")
    assert native_bfloat16(torch.device("cpu")) == bool({"amx_tile", "avx512_bf16"} & set(flags))
