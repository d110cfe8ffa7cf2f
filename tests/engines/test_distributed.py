"""DDP on CPU: ``torchrun --nproc_per_node 2`` (gloo) trains real ECG windows; ranks agree; only rank 0 writes."""

from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys

import pytest
import torch

from monai_gen.engines.checkpointing import list_checkpoints
from monai_gen.engines.distributed import init_distributed, seeded_sampler, wrap_distributed

SCRIPT = '''
import sys
import ignite.distributed as idist
import numpy as np, torch, wfdb
from monai.data import DataLoader, Dataset
from monai_gen.diffusion.objectives import DiffusionObjective
from monai_gen.diffusion.schedules import CosineSchedule
from monai_gen.engines.distributed import init_distributed, seeded_sampler, wrap_distributed
from monai_gen.engines.training import build_diffusion_trainer
from monai_gen.networks.nets import DenoisingUNet


def train(data_dir, out_dir, global_batch=4):
    torch.set_num_threads(1)
    device = init_distributed()
    rank, world = idist.get_rank(), idist.get_world_size()
    torch.manual_seed(rank)  # different initial weights per rank: DDP must broadcast rank 0's
    signal = wfdb.rdrecord(f"{data_dir}/ecg/cinc2021/E07502").p_signal.T.astype(np.float32)
    dataset = Dataset([{"image": torch.from_numpy(signal[:, i * 128:(i + 1) * 128].copy())} for i in range(8)])
    loader = DataLoader(dataset, batch_size=global_batch // world, sampler=seeded_sampler(dataset, seed=1))
    network = wrap_distributed(
        DenoisingUNet(1, 12, 12, channels=(8, 8), attention_levels=(False, False), num_res_blocks=1,
                      norm_num_groups=4).to(device), device)
    setup = build_diffusion_trainer(
        network, DiffusionObjective(CosineSchedule(0.05)), loader, optimizer=torch.optim.Adam(network.parameters(), 1e-3),
        max_epochs=2, ema_momentum=0.2, checkpoint_dir=f"{out_dir}/ckpt_rank{rank}", checkpoint_every=2,
        log_dir=f"{out_dir}/tb_rank{rank}",
    )
    setup.trainer.run()
    module = network.module if hasattr(network, "module") else network
    torch.save({"network": module.state_dict(), "ema": setup.ema.ema_model.state_dict(),
                "iteration": setup.trainer.state.iteration, "samples": len(loader.sampler)},
               f"{out_dir}/final_rank{rank}.pt")
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    train(sys.argv[1], sys.argv[2])
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_run_matches_one_process_structure(shared_data, tmp_path):
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT)
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    ddp.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(script), str(shared_data), str(ddp)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(ddp / f"final_rank{r}.pt", weights_only=True) for r in (0, 1)]
    for part in ("network", "ema"):
        for key, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][key]), (part, key)
    assert ranks[0]["samples"] == ranks[1]["samples"] == 4  # each rank saw its half of the 8 windows
    assert not (ddp / "ckpt_rank1").exists() and not (ddp / "tb_rank1").exists()  # only rank 0 writes
    assert [i for i, _ in list_checkpoints(ddp / "ckpt_rank0")] == [2, 4]
    assert any((ddp / "tb_rank0").iterdir())
    # restarting resumes rank 0 from its checkpoint while rank 1 has none: refused, not silently diverged
    cmd[cmd.index("--master_port") + 1] = str(_free_port())
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode != 0 and "ranks resumed from different checkpoints" in rerun.stderr, rerun.stderr[-3000:]
    assert "[4, -1]" in rerun.stderr

    single.mkdir()
    runpy.run_path(str(script), run_name="single")["train"](str(shared_data), str(single))
    one = torch.load(single / "final_rank0.pt", weights_only=True)
    assert one["iteration"] == ranks[0]["iteration"] == 4 and one["samples"] == 8
    assert [i for i, _ in list_checkpoints(single / "ckpt_rank0")] == [2, 4]
    two_ckpt = torch.load(ddp / "ckpt_rank0" / "checkpoint_4.pt", weights_only=True)
    one_ckpt = torch.load(single / "ckpt_rank0" / "checkpoint_4.pt", weights_only=True)
    assert two_ckpt.keys() == one_ckpt.keys()
    assert {k: v.shape for k, v in two_ckpt["network"].items()} == {k: v.shape for k, v in one_ckpt["network"].items()}
    assert not any(torch.equal(v, ranks[0]["network"][k]) for k, v in one["network"].items() if v.numel() > 8)


def test_single_process_helpers_are_no_ops(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed() == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    layer = torch.nn.Linear(2, 2)
    assert wrap_distributed(layer, torch.device("cpu")) is layer
    sampler = seeded_sampler(range(10), seed=4)
    sampler.set_epoch(3)
    first = list(sampler)
    sampler.set_epoch(3)
    assert list(sampler) == first and sorted(first) == list(range(10))
    sampler.set_epoch(4)
    assert list(sampler) != first


def test_resumable_sampler_skips_once():
    sampler = seeded_sampler(range(10), seed=4)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.skip_next(4)
    assert list(sampler) == full[4:]
    assert list(sampler) == full  # the skip applies to one pass only
    with pytest.raises(ValueError, match="cannot skip 11 samples of a shard of 10"):
        sampler.skip_next(11)


def test_bad_torchrun_environment_is_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="must be integers.*'two'"):
        init_distributed()


def test_unknown_backend_is_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="nccll"):
        init_distributed(backend="nccll")


# One torchrun launch, two bundle workflows: train 2 epochs; rank 0 keeps only checkpoint 4 (what a kill in iteration
# 5, mid epoch 2, leaves) and sets the rest aside; the second workflow resumes from it on both ranks.
BUNDLE_SCRIPT = '''
import json, sys
from pathlib import Path
import torch, torch.distributed as dist
from monai.bundle import ConfigWorkflow
from monai_gen.bundle.registry import find_bundle
from monai_gen.engines.checkpointing import list_checkpoints

BUNDLE = find_bundle("ecg_generative_diffusion")
records, out, overrides = sys.argv[1], Path(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text())


def run():
    workflow = ConfigWorkflow(
        config_file=[str(BUNDLE / "configs" / name) for name in ("common.json", "train.json", "multi_gpu_train.json")],
        meta_file=str(BUNDLE / "configs" / "metadata.json"), workflow_type="train", bundle_root=str(BUNDLE),
        dataset_dir=records, output_dir=str(out), max_epochs=2, batch_size=2,  # models/ go to out/models
        max_beats_per_record=4, **overrides)
    workflow.initialize()
    workflow.run()
    return workflow


run()
rank = dist.get_rank()
if rank == 0:
    (out / "first").mkdir()
    for iteration, path in list_checkpoints(out):
        if iteration > 4:
            path.rename(out / "first" / path.name)
        elif iteration < 4:
            path.unlink()
    (out / "models" / "model.safetensors").rename(out / "first" / "model.safetensors")
dist.barrier()
second = run()
network = second.parser.get_parsed_content("network").module
loaded = str(second.parser.get_parsed_content("train#resume_handler").loaded_from)
torch.save({"loaded_from": loaded, "network": network.state_dict()}, out / f"second_rank{rank}.pt")
dist.destroy_process_group()
'''


@pytest.mark.slow
def test_bundle_multi_gpu_config_resumes_mid_epoch_exactly_under_torchrun(shared_data, tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    for name in ("E07500", "E07501", "JS20000", "HR06003"):
        for suffix in (".hea", ".mat"):
            (records / f"{name}{suffix}").symlink_to(shared_data / "ecg" / "cinc2021" / f"{name}{suffix}")
    script, overrides, out = tmp_path / "ddp_bundle.py", tmp_path / "resumable.json", tmp_path / "train"
    script.write_text(BUNDLE_SCRIPT)
    overrides.write_text(json.dumps({"checkpoint_every_iterations": 1, "train#checkpoint_saver#n_saved": None}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(script), str(records), str(out), str(overrides)]
    result = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # 12 beats, 2 ranks x batch 2: 3 iterations per epoch; iterations 1-3 were not trained (nor saved) again
    assert [i for i, _ in list_checkpoints(out)] == [4, 5, 6]
    ranks = [torch.load(out / f"second_rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["loaded_from"] == ranks[1]["loaded_from"] == str(out / "checkpoint_4.pt")
    assert all(torch.equal(v, ranks[1]["network"][k]) for k, v in ranks[0]["network"].items())
    reference = torch.load(out / "first" / "checkpoint_6.pt", weights_only=True)
    resumed = torch.load(out / "checkpoint_6.pt", weights_only=True)
    assert resumed["trainer"] == reference["trainer"] and {"model", "ema", "optimizer"} <= resumed.keys()
    for part in ("model", "ema"):
        assert all(torch.equal(resumed[part][k], v) for k, v in reference[part].items()), part
    assert all(torch.equal(resumed["model"][k], v) for k, v in ranks[0]["network"].items())
    assert (out / "models" / "model.safetensors").read_bytes() == (out / "first" / "model.safetensors").read_bytes()
