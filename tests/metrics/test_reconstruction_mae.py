"""reconstruction_scores / AutoencoderReconstruction report the mean absolute error in physical units (HU for CT)."""

from __future__ import annotations

import pytest
import torch

from monai_gen.metrics.image import AutoencoderReconstruction, reconstruction_scores


def test_mae_is_the_mean_absolute_difference_per_image_in_physical_units():
    images = torch.linspace(-1000, 1000, 2 * 32**3).reshape(2, 1, 32, 32, 32)
    shifted = images + torch.tensor([10.0, -30.0]).reshape(2, 1, 1, 1, 1)
    scores = reconstruction_scores(images, shifted, data_range=2000.0)
    assert scores["mae"]["mean"] == pytest.approx(20.0) and scores["mae"]["std"] == pytest.approx(14.142, abs=1e-2)
    assert reconstruction_scores(images, images, data_range=2000.0)["mae"]["mean"] == 0.0


def test_the_measure_names_its_unit():
    class Data:  # the measure reads data.test.items only
        class test:  # noqa: N801
            items = torch.linspace(-1000, 1000, 2 * 32**3).reshape(2, 1, 32, 32, 32)

    measure = AutoencoderReconstruction(lambda x: x, lambda z: z + 5.0, data_range=2000.0, unit="HU")
    section = measure(Data())
    assert section["mae"]["mean"] == pytest.approx(5.0) and section["unit"] == "HU"
    assert section["summary"].endswith("MAE 5 HU")
    assert "| MAE (HU) |" in measure.markdown(section)[4]
