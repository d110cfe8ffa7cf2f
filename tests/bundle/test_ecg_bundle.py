"""The ECG bundle through MONAI's own tooling: metadata schema, net in/out, train -> infer -> evaluate, weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import wfdb
from monai.bundle import verify_metadata, verify_net_in_out
from safetensors.torch import load_file

from monai_gen.bundle.registry import bundle_component, find_bundle, run_bundle_workflow
from monai_gen.engines.generation import read_manifest
from monai_gen.metrics.ecg import limb_lead_residual

BUNDLE = find_bundle("ecg_generative_diffusion")
SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "meta_schema_20240725.json"


def test_metadata_passes_the_model_zoo_schema():
    if not SCHEMA.is_file():
        pytest.skip(f"offline schema copy {SCHEMA} is absent")
    verify_metadata(meta_file=str(BUNDLE / "configs/metadata.json"), filepath=str(SCHEMA))


def test_network_input_output_as_declared_in_metadata():
    verify_net_in_out(
        net_id="network_def", meta_file=str(BUNDLE / "configs/metadata.json"),
        config_file=str(BUNDLE / "configs/common.json"), device="cpu", bundle_root=str(BUNDLE),
    )  # no extra_forward_args: the time input, timesteps, defaults to 1 (model-zoo's CI passes only x)


def test_shipped_weights_generate_finite_beats_for_conditions():
    from monai_gen.engines.requests import requests_from_rows
    from monai_gen.metrics.ecg import qrs_alignment

    generate = bundle_component(BUNDLE, "sample_generator")  # the configs' own: window, mean, margin crop, leads
    conditions = generate.conditions
    assert conditions.names == ["heart_rate", "qrs", "qt", "age", "sex", "lvh", "left_axis_deviation",
                                "atrial_fibrillation"]
    assert all(conditions[n].observed_range is not None for n in ("heart_rate", "qrs", "qt", "age"))
    rows = [{"heart_rate": 60, "sex": "female"}, {"heart_rate": 110, "qt": 320}, {"lvh": "yes"},
            {"age": 40, "atrial_fibrillation": "yes"}]
    beats = generate(requests_from_rows(rows))
    assert beats.shape == (4, 12, 576) and torch.isfinite(beats).all()  # the 32-sample margins cropped off
    assert 0.2 < float(beats.abs().amax(dim=(1, 2)).min()) < 8.0  # QRS of a plausible size in mV
    aligned = qrs_alignment(beats.numpy(), 500.0, r_index=200) >= 0.5  # the QRS at sample 200, like the training beats
    assert aligned.sum() >= 3, aligned


@pytest.fixture(scope="module")
def small_ecg_folder(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ecg_records")
    for name in ("E07500", "E07501", "JS20000", "HR06003"):
        for suffix in (".hea", ".mat"):
            (folder / f"{name}{suffix}").symlink_to(shared_data / "ecg" / "cinc2021" / f"{name}{suffix}")
    return folder


@pytest.mark.slow
def test_train_infer_evaluate_smoke(small_ecg_folder, tmp_path):
    models = tmp_path / "train" / "models"  # training writes its models/ inside its output folder
    run_bundle_workflow(BUNDLE, "train", {
        "dataset_dir": str(small_ecg_folder), "output_dir": str(tmp_path / "train"),
        "max_epochs": 1, "batch_size": 8, "max_beats_per_record": 6,
    })
    assert all((models / f).is_file() for f in ("model.safetensors", "conditions.json", "mean_beat.safetensors"))
    assert [p.name for p in (tmp_path / "train").glob("checkpoint_*.pt")] == ["checkpoint_2.pt"]
    run_bundle_workflow(BUNDLE, "train", {  # the same command with more epochs resumes from checkpoint_2
        "dataset_dir": str(small_ecg_folder), "output_dir": str(tmp_path / "train"),
        "max_epochs": 2, "batch_size": 8, "max_beats_per_record": 6,
    })
    assert sorted(p.name for p in (tmp_path / "train").glob("checkpoint_*.pt")) == ["checkpoint_2.pt", "checkpoint_4.pt"]

    out = tmp_path / "generated"
    run_bundle_workflow(BUNDLE, "inference", {
        "dataset_dir": str(models), "output_dir": str(out), "num_samples": 2, "num_inference_steps": 2,
        "heart_rate": 70, "preview": False, "progress": False,
    })
    rows = read_manifest(out / "manifest.csv")
    assert [r["name"] for r in rows] == ["ecg_0", "ecg_1"] and float(rows[0]["heart_rate"]) == 70
    record = wfdb.rdrecord(str(out / "ecg_0"))
    assert record.p_signal.shape == (576, 12) and record.fs == 500
    assert limb_lead_residual(record.p_signal.T)[0] < 0.01  # III, aVR, aVL, aVF derived (up to WFDB quantisation)

    run_bundle_workflow(BUNDLE, "evaluate", {
        "dataset_dir": str(small_ecg_folder), "models_dir": str(models), "output_dir": str(tmp_path / "eval"),
        "max_samples": 4, "num_inference_steps": 2, "max_beats_per_record": 6,
    })
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    fidelity = {**report["measured_fidelity"]["conditions"], **report["probe_fidelity"]["conditions"]}
    assert report["n_synthetic"] == 4 and set(fidelity) == {
        "qrs", "qt", "heart_rate", "age", "sex", "lvh", "left_axis_deviation", "atrial_fibrillation"}
    assert report["limb_lead_residual"]["synthetic_median"] < 1e-6


@pytest.mark.slow
def test_two_process_gloo_training_with_multi_gpu_config_keeps_time_limit_and_initial_weights(small_ecg_folder, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from monai_gen.engines.checkpointing import list_checkpoints

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    initial = BUNDLE / "models" / "model.safetensors"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
        "-m", "monai.bundle", "run", "--bundle_root", str(BUNDLE),
        "--config_file", str([str(BUNDLE / "configs" / f) for f in ("common.json", "train.json", "multi_gpu_train.json")]),
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--dataset_dir", str(small_ecg_folder), "--output_dir", str(tmp_path / "ddp"), "--batch_size", "4",
        "--max_beats_per_record", "6", "--max_epochs", "100000", "--max_train_seconds", "3",
        "--initial_weights", str(initial), "--learning_rate", "0.0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # the time limit stopped both ranks at the same iteration, long before 100000 epochs; only rank 0 wrote
    (iteration, _), *_ = list_checkpoints(tmp_path / "ddp")
    assert 1 <= iteration < 1000 and len(list_checkpoints(tmp_path / "ddp")) <= 2
    exported = tmp_path / "ddp" / "models" / "model.safetensors"
    # learning rate 0: the exported EMA weights are the initial weights (a fresh network would be far from them)
    torch.testing.assert_close(load_file(exported), load_file(initial), rtol=1e-4, atol=1e-5)
