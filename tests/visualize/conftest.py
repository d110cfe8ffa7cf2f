"""A real heart-rate sweep from the shipped ECG bundle, shared by the sweep tests."""

from __future__ import annotations

import pytest

HEART_RATES = (50.0, 70.0)


@pytest.fixture(scope="session")
def heart_rate_sweep(tmp_path_factory):
    """Folder of a bundle sweep: heart rate 50 and 70 bpm, seed 0, 4 sampler steps, its strip drawn.

    Holds ``sweep_heart_rate_00{0,1}_seed0.{hea,dat,json}`` and ``sweep_heart_rate.png``; a few seconds on CPU.
    """
    from monai_gen.bundle.registry import find_bundle, run_bundle_workflow

    folder = tmp_path_factory.mktemp("heart_rate_sweep")
    run_bundle_workflow(find_bundle("ecg_generative_diffusion"), "inference", {
        "output_dir": str(folder), "sweep": "heart_rate", "sweep_start": HEART_RATES[0],
        "sweep_stop": HEART_RATES[1], "sweep_num_values": 2, "sweep_num_seeds": 1, "num_inference_steps": 4,
        "progress": False,
    })
    return folder
