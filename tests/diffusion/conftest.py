"""Fixtures of the diffusion tests: a seconds-fast conditional 1D denoiser (sampler and guidance tests)."""

from __future__ import annotations

import pytest
import torch

from monai_gen.diffusion.schedules import CosineSchedule
from monai_gen.networks import ConditionalDenoiser, EmbeddingEncoder, PhenotypeEncoder, make_denoiser
from monai_gen.networks.nets import DenoisingUNet


def _tiny_denoiser(prediction_type: str = "v_prediction", *, embedding_dim: int | None = None):
    """``denoise(x (B, 2, L), t, conditions=(B, 2), condition_mask=(B, 2)[, embedding=(B, embedding_dim)])``.

    One level of 8 channels with attention; phenotypes: one continuous, one with 2 categories. MONAI zero-initialises
    some output layers, so those get small random weights: the conditions must change the output.
    """
    torch.manual_seed(0)
    backbone = DenoisingUNet(
        1, 2, 2, channels=(8,), attention_levels=(True,), num_res_blocks=1, norm_num_groups=8, num_head_channels=8,
        with_conditioning=True, cross_attention_dim=8,
    )
    for p in backbone.parameters():
        if not p.any():
            torch.nn.init.normal_(p, std=0.1)
    embedding = None if embedding_dim is None else EmbeddingEncoder(embedding_dim, 8)
    model = ConditionalDenoiser(backbone, phenotype_encoder=PhenotypeEncoder([0, 2], 8), embedding_encoder=embedding)
    return make_denoiser(model.eval(), CosineSchedule(0.05), prediction_type)


@pytest.fixture
def tiny_denoiser():
    """The factory ``tiny_denoiser(prediction_type="v_prediction", *, embedding_dim=None)``."""
    return _tiny_denoiser
