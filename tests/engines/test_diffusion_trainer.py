"""A MONAI SupervisedTrainer with DiffusionIteration learns real ECG beats; iterations are reproducible."""

from __future__ import annotations

import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer

from monai_gen.bundle.ecg_cohort import build_beat_cohort
from monai_gen.diffusion.objectives import DiffusionObjective
from monai_gen.diffusion.schedules import CosineSchedule
from monai_gen.engines.diffusion_trainer import DiffusionIteration
from monai_gen.networks.nets import DenoisingUNet


def make_trainer(items, seed=0, epochs=1):
    torch.manual_seed(0)
    network = DenoisingUNet(1, 12, 12, channels=(16, 16), attention_levels=(False, False), num_res_blocks=1, norm_num_groups=8)
    objective = DiffusionObjective(CosineSchedule(0.05), prediction_type="sample", weighting="uniform")
    loader = DataLoader(Dataset(items), batch_size=4, shuffle=False)
    losses = []
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=epochs, train_data_loader=loader, network=network,
        optimizer=torch.optim.Adam(network.parameters(), 2e-3), loss_function=torch.nn.MSELoss(),
        iteration_update=DiffusionIteration(objective, seed=seed),
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    return trainer, network, losses


def test_loss_falls_on_real_beats_and_runs_are_reproducible(shared_data, ecg_preparation):
    cohort = build_beat_cohort([shared_data / "ecg/cinc2021/E07501.hea"], **ecg_preparation, max_beats_per_record=8)
    items = [{"image": beat / 0.25} for beat in cohort.items]
    trainer, network, losses = make_trainer(items, epochs=15)
    trainer.run()
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < first / 3, (first, last)
    again, network2, losses2 = make_trainer(items, epochs=15)
    again.run()
    assert losses2 == losses
    for a, b in zip(network.parameters(), network2.parameters(), strict=True):
        torch.testing.assert_close(a, b)
