"""Validation handler: seeded (repeatable) loss on held-out real ECG, logged per epoch; samples reach TensorBoard."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import wfdb
from monai.data import DataLoader, Dataset
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from monai_gen.diffusion.objectives import DiffusionObjective
from monai_gen.diffusion.schedules import CosineSchedule
from monai_gen.engines.training import build_diffusion_trainer
from monai_gen.engines.validation import DiffusionValidation
from monai_gen.networks.nets import DenoisingUNet


@pytest.fixture
def loaders(shared_data):
    signal = wfdb.rdrecord(str(shared_data / "ecg/cinc2021/E07504")).p_signal.T.astype(np.float32) / 0.25
    windows = [{"image": torch.from_numpy(signal[:, i * 128:(i + 1) * 128])} for i in range(6)]
    return DataLoader(Dataset(windows[:4]), batch_size=4), DataLoader(Dataset(windows[4:]), batch_size=1)


def test_validation_loss_is_seeded_logged_and_falls(loaders, tmp_path):
    train, val = loaders
    torch.manual_seed(0)
    network = DenoisingUNet(1, 12, 12, channels=(8, 8), attention_levels=(False, False), num_res_blocks=1,
                            norm_num_groups=4)
    objective = DiffusionObjective(CosineSchedule(0.05), prediction_type="sample", weighting="uniform")
    writer = SummaryWriter(str(tmp_path))
    seen = []
    validation = DiffusionValidation(
        objective, val, every=10, summary_writer=writer,
        sample_fn=lambda net, gen: torch.rand(2, 1, 8, 8, generator=gen),
        on_samples=lambda samples, engine: seen.append((engine.state.epoch, samples)),
    )
    setup = build_diffusion_trainer(network, objective, train, optimizer=torch.optim.Adam(network.parameters(), 3e-3),
                                    max_epochs=30, handlers=[validation])
    setup.trainer.run()
    assert [step for step, _ in validation.history] == [10, 20, 30]
    losses = [loss for _, loss in validation.history]
    assert losses[-1] < losses[0] / 2, losses
    assert setup.trainer.state.metrics["val_loss"] == losses[-1]
    # the same seed gives the same number; it is the sample-weighted mean of the objective over the loader
    assert validation.validation_loss(network, torch.device("cpu")) == losses[-1]
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        manual = np.mean([float(objective(network.eval(), b["image"], generator=generator)) for b in val])
    assert manual == pytest.approx(losses[-1], rel=1e-6)
    assert [epoch for epoch, _ in seen] == [10, 20, 30] and torch.equal(seen[0][1], seen[1][1])
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    assert [s.step for s in events.Scalars("val_loss")] == [10, 20, 30]
    assert {"samples/0", "samples/1"} <= {tag.split("_HW")[0] for tag in events.Tags()["images"]}


def test_bad_arguments_are_named(loaders):
    with pytest.raises(ValueError, match="'every' must be >= 1 epochs, got 0"):
        DiffusionValidation(lambda *a, **k: 0, loaders[1], every=0)
    empty = DiffusionValidation(lambda *a, **k: 0, [])
    with pytest.raises(ValueError, match="yielded no samples"):
        empty.validation_loss(torch.nn.Identity(), torch.device("cpu"))
    keyless = DiffusionValidation(lambda *a, **k: 0, [{"signal": torch.zeros(1, 2, 3)}])
    with pytest.raises(KeyError, match=r"no 'image'; keys: \['signal'\]"):
        keyless.validation_loss(torch.nn.Identity(), torch.device("cpu"))
