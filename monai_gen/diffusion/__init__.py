"""monai_gen.diffusion"""

from __future__ import annotations

from .autoencoder_objectives import AutoencoderDiscriminatorLoss, AutoencoderGeneratorLoss
from .guidance import ConditionGuidance
from .latent import LatentScaler, LatentSpace
from .objectives import DiffusionObjective, sigmoid_weight
from .posthoc import LinearProbe
from .samplers import (
    SAMPLERS,
    per_sample_generators,
    sample,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_dpmpp_3m,
    sample_noise,
)
from .schedules import CosineSchedule, DiscreteSchedule, time_grid

__all__: list[str] = [
    "AutoencoderDiscriminatorLoss",
    "AutoencoderGeneratorLoss",
    "ConditionGuidance",
    "CosineSchedule",
    "DiffusionObjective",
    "DiscreteSchedule",
    "LatentScaler",
    "LatentSpace",
    "LinearProbe",
    "SAMPLERS",
    "per_sample_generators",
    "sample",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "sample_dpmpp_3m",
    "sample_noise",
    "sigmoid_weight",
    "time_grid",
]
