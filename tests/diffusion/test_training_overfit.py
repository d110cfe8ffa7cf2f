"""A tiny conditional 1D model overfits four real ECG median beats with the xMADD objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import wfdb

from monai_gen.diffusion.objectives import DiffusionObjective
from monai_gen.diffusion.schedules import CosineSchedule
from monai_gen.networks import ConditionalDenoiser, PhenotypeEncoder
from monai_gen.networks.nets import DenoisingUNet
from monai_gen.transforms.ecg.functional import median_beat

RECORDS = ["E07500", "E07501", "E07502", "E07503"]


def _median_beats(folder) -> torch.Tensor:
    beats = []
    for name in RECORDS:
        record = wfdb.rdrecord(str(folder / name))
        beat, _, _ = median_beat(record.p_signal.T, record.fs)
        beats.append(beat)
    beats = torch.tensor(np.stack(beats), dtype=torch.float32)
    return beats / beats.std()  # unit scale, as a bundle's normalisation would give


@pytest.mark.slow
def test_loss_falls_tenfold_on_real_median_beats(shared_data):
    x0 = _median_beats(shared_data / "ecg" / "cinc2021")
    assert x0.shape == (4, 12, 576)
    torch.manual_seed(0)
    backbone = DenoisingUNet(
        1,
        12,
        12,
        channels=(16, 16),
        attention_levels=(False, True),
        num_res_blocks=1,
        norm_num_groups=8,
        num_head_channels=16,
        kernel_size=7,
        with_conditioning=True,
        cross_attention_dim=16,
    )
    # the beat's identity as a categorical phenotype: memorising four beats is then a well-posed regression
    model = ConditionalDenoiser(
        backbone, phenotype_encoder=PhenotypeEncoder([4], 16), condition_dropout=0.0, drop_all_prob=0.0
    )
    cond = {"conditions": torch.arange(4.0).unsqueeze(1)}
    objective = DiffusionObjective(CosineSchedule(0.05), prediction_type="sample", weighting="sigmoid", bias=3.0)

    def fixed_loss() -> float:  # same t and noise draws before and after training
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            return float(np.mean([objective(model, x0, generator=generator, **cond).item() for _ in range(8)]))

    before = fixed_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(2)
    for _ in range(80):
        optimizer.zero_grad()
        objective(model, x0, generator=generator, **cond).backward()
        optimizer.step()
    assert fixed_loss() < before / 10
