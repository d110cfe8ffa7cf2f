"""Trainer factories on real data: diffusion loss falls (TensorBoard), EMA closed form, stage-1 autoencoder + GAN."""

from __future__ import annotations

import importlib.util
import os
import signal
import time

import numpy as np
import pytest
import torch
import wfdb
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset
from monai.networks.nets import PatchDiscriminator

from monai_gen.diffusion.autoencoder_objectives import AutoencoderDiscriminatorLoss, AutoencoderGeneratorLoss
from monai_gen.diffusion.objectives import DiffusionObjective
from monai_gen.diffusion.schedules import CosineSchedule
from monai_gen.engines.checkpointing import find_latest_checkpoint
from monai_gen.engines.training import (
    AutoencoderIteration,
    DistributedTimeLimit,
    TrainingInterrupted,
    build_autoencoder_trainer,
    build_diffusion_trainer,
    run_interruptible,
)
from monai_gen.networks.autoencoders import kl_autoencoder
from monai_gen.networks.nets import DenoisingUNet
from monai_gen.visualize.curves import read_scalars


@pytest.fixture
def ecg_loader(shared_data):
    signal = wfdb.rdrecord(str(shared_data / "ecg/cinc2021/E07503")).p_signal.T.astype(np.float32)
    items = [{"image": torch.from_numpy(signal[:, i * 128:(i + 1) * 128] / 0.25)} for i in range(4)]  # ~unit scale
    return DataLoader(Dataset(items), batch_size=4, shuffle=False)


def _denoiser() -> torch.nn.Module:
    torch.manual_seed(0)
    return DenoisingUNet(1, 12, 12, channels=(8, 8), attention_levels=(False, False), num_res_blocks=1,
                         norm_num_groups=4)


def test_diffusion_loss_falls_and_is_logged_to_tensorboard(ecg_loader, tmp_path):
    network = _denoiser()
    objective = DiffusionObjective(CosineSchedule(0.05), prediction_type="sample", weighting="uniform")
    setup = build_diffusion_trainer(
        network, objective, ecg_loader, optimizer=torch.optim.Adam(network.parameters(), 3e-3), max_epochs=40,
        log_dir=tmp_path / "tb", seed=2,
    )
    setup.trainer.run()
    steps, losses = read_scalars(tmp_path / "tb", tags=["train_loss"])["train_loss"]
    assert steps.tolist() == list(range(1, 41))
    first, last = losses[:5].mean(), losses[-5:].mean()
    assert last < first / 3, (first, last)
    assert setup.ema is None and setup.saver is None and setup.resume is None


def test_ema_weights_follow_the_closed_form(ecg_loader):
    network = _denoiser()
    online = [{k: v.clone() for k, v in network.state_dict().items()}]
    setup = build_diffusion_trainer(
        network, DiffusionObjective(CosineSchedule(0.05)), ecg_loader,
        optimizer=torch.optim.SGD(network.parameters(), 0.1), max_epochs=2, ema_momentum=0.3,
    )
    setup.trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: online.append({k: v.clone() for k, v in network.state_dict().items()})
    )
    setup.trainer.run()
    ema = setup.ema.ema_model.state_dict()
    changed = 0
    for name, _ in network.named_parameters():
        expected = 0.7 * (0.7 * online[0][name] + 0.3 * online[1][name]) + 0.3 * online[2][name]
        torch.testing.assert_close(ema[name], expected, rtol=0, atol=1e-6)
        changed += not torch.equal(ema[name], online[2][name])
    assert changed > 0 and setup.checkpoint_dict["ema"] is setup.ema.ema_model


def test_autoencoder_with_delayed_discriminator_learns_and_checkpoints_both(ecg_loader, tmp_path):
    torch.manual_seed(0)
    autoencoder = kl_autoencoder(1, 12, channels=(8, 8), latent_channels=4, norm_num_groups=4)
    discriminator = PatchDiscriminator(spatial_dims=1, num_layers_d=2, channels=8, in_channels=12, out_channels=1)
    key = next(name for name, _ in discriminator.named_parameters())
    before = discriminator.state_dict()[key].clone()
    d_states = []
    setup = build_autoencoder_trainer(
        autoencoder, AutoencoderGeneratorLoss(adversarial_weight=0.01, adversarial_start=20), ecg_loader,
        optimizer=torch.optim.Adam(autoencoder.parameters(), 3e-3), max_epochs=30, discriminator=discriminator,
        discriminator_loss=AutoencoderDiscriminatorLoss(start=20),
        discriminator_optimizer=torch.optim.Adam(discriminator.parameters(), 1e-3),
        checkpoint_dir=tmp_path, checkpoint_every=10, ema_momentum=0.1,
    )
    losses = []
    setup.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    setup.trainer.add_event_handler(
        Events.ITERATION_COMPLETED(once=19), lambda e: d_states.append(discriminator.state_dict()[key].clone())
    )
    setup.trainer.run()
    assert torch.equal(d_states[0], before)  # untouched before the adversarial start
    assert not torch.equal(discriminator.state_dict()[key], before)
    assert "discriminator_loss" in setup.trainer.state.output
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) / 2, (losses[:5], losses[-5:])
    checkpoint = torch.load(find_latest_checkpoint(tmp_path), weights_only=True)
    assert {"network", "ema", "optimizer", "discriminator", "d_optimizer", "trainer", "rng"} <= set(checkpoint)
    assert checkpoint["trainer"]["iteration"] == 30


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_epochs": 0}, "max_epochs must be >= 1, got 0"),
     ({"checkpoint_every": -1}, "checkpoint_every must be >= 0 iterations, got -1"),
     ({"ema_momentum": 1.5}, r"ema_momentum must be in \(0, 1\], got 1.5")],
)
def test_diffusion_builder_rejects_bad_arguments(ecg_loader, kwargs, match):
    network = torch.nn.Conv1d(12, 12, 3, padding=1)
    arguments = {"optimizer": torch.optim.SGD(network.parameters(), 0.1), "max_epochs": 1} | kwargs
    with pytest.raises(ValueError, match=match):
        build_diffusion_trainer(network, DiffusionObjective(CosineSchedule(0.05)), ecg_loader, **arguments)


def test_autoencoder_arguments_are_checked(ecg_loader):
    with pytest.raises(ValueError, match=r"or none; got \['discriminator'\]"):
        AutoencoderIteration(AutoencoderGeneratorLoss(), discriminator=torch.nn.Identity())
    network = torch.nn.Conv1d(12, 12, 3, padding=1)
    with pytest.raises(TypeError, match=r"unknown options \['ema'\]"):
        build_autoencoder_trainer(network, AutoencoderGeneratorLoss(), ecg_loader,
                                  optimizer=torch.optim.SGD(network.parameters(), 0.1), max_epochs=1, ema=0.1)


def test_mlflow_without_mlflow_installed_is_named(ecg_loader):
    if importlib.util.find_spec("mlflow") is not None:
        pytest.skip("mlflow is installed")
    network = torch.nn.Conv1d(12, 12, 3, padding=1)
    with pytest.raises(ValueError, match="mlflow_tracking_uri='file:/tmp/x' given, but mlflow is not installed"):
        build_diffusion_trainer(network, DiffusionObjective(CosineSchedule(0.05)), ecg_loader, max_epochs=1,
                                optimizer=torch.optim.SGD(network.parameters(), 0.1), mlflow_tracking_uri="file:/tmp/x")


def test_trainer_and_resume_build_from_a_bundle_style_config(shared_data, tmp_path):
    config = {
        "imports": ["$import torch", "$import numpy as np", "$import wfdb", "$import monai_gen"],
        "signal": f"$wfdb.rdrecord('{shared_data / 'ecg/cinc2021/E07503'}').p_signal.T.astype(np.float32) / 0.25",
        "dataset": {"_target_": "monai.data.Dataset",
                    "data": "$[{'image': torch.from_numpy(@signal[:, i * 128:(i + 1) * 128])} for i in range(4)]"},
        "loader": {"_target_": "monai.data.DataLoader", "dataset": "@dataset", "batch_size": 2,
                   "sampler": "$monai_gen.engines.distributed.seeded_sampler(@dataset, seed=0)"},
        "network": {"_target_": "monai_gen.networks.nets.DenoisingUNet", "spatial_dims": 1, "in_channels": 12,
                    "out_channels": 12, "channels": [8, 8], "attention_levels": [False, False], "num_res_blocks": 1,
                    "norm_num_groups": 4},
        "setup": {"_target_": "monai_gen.engines.training.build_diffusion_trainer", "network": "@network",
                  "objective": {"_target_": "monai_gen.diffusion.objectives.DiffusionObjective",
                                "schedule": {"_target_": "monai_gen.diffusion.schedules.CosineSchedule", "shift": 0.05}},
                  "train_loader": "@loader", "max_epochs": "@epochs", "ema_momentum": 0.1,
                  "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 1e-3},
                  "checkpoint_dir": str(tmp_path), "checkpoint_every": 2},
        "run": "$@setup.trainer.run()",
    }
    for epochs, resumed_from in ((1, None), (3, "checkpoint_2.pt")):
        parser = ConfigParser({**config, "epochs": epochs})
        parser.get_parsed_content("imports")
        parser.get_parsed_content("run")
        setup = parser.get_parsed_content("setup")
        assert setup.trainer.state.iteration == 2 * epochs
        assert (setup.resume.loaded_from and setup.resume.loaded_from.name) == resumed_from
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_4.pt", "checkpoint_6.pt"]



def _tiny_trainer(loader, tmp_path, max_epochs):
    network = _denoiser()
    return build_diffusion_trainer(
        network, DiffusionObjective(CosineSchedule(0.05)), loader, max_epochs=max_epochs,
        optimizer=torch.optim.SGD(network.parameters(), 0.01), checkpoint_dir=tmp_path / "ckpt", checkpoint_every=100,
    )


def test_ctrl_c_ends_the_run_after_the_current_iteration_then_raises(ecg_loader, tmp_path):
    setup = _tiny_trainer(ecg_loader, tmp_path, max_epochs=1000)
    setup.trainer.add_event_handler(  # a real Ctrl-C, delivered during iteration 3
        Events.ITERATION_COMPLETED(once=3), lambda engine: os.kill(os.getpid(), signal.SIGINT)
    )
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match="after iteration 3") as caught:
        run_interruptible(setup.trainer)
    assert caught.value.iteration == 3 and isinstance(caught.value, KeyboardInterrupt)
    assert find_latest_checkpoint(tmp_path / "ckpt").name == "checkpoint_3.pt"  # COMPLETED handlers ran: resumable
    assert signal.getsignal(signal.SIGINT) is before  # the handler is removed again
    setup = _tiny_trainer(ecg_loader, tmp_path, max_epochs=4)
    run_interruptible(setup.trainer)  # no Ctrl-C: an ordinary run (resumed at iteration 3)
    assert setup.trainer.state.iteration == 4 and setup.resume.loaded_from.name == "checkpoint_3.pt"


def test_time_limit_stops_training_and_is_checked(ecg_loader, tmp_path):
    setup = _tiny_trainer(ecg_loader, tmp_path, max_epochs=100000)
    setup.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: time.sleep(0.05))
    DistributedTimeLimit(0.5).attach(setup.trainer)
    started = time.monotonic()
    setup.trainer.run()
    assert 2 <= setup.trainer.state.iteration < 100 and time.monotonic() - started < 30
    assert find_latest_checkpoint(tmp_path / "ckpt").name == f"checkpoint_{setup.trainer.state.iteration}.pt"
    with pytest.raises(ValueError, match="max_train_seconds must be > 0"):
        DistributedTimeLimit(0)
