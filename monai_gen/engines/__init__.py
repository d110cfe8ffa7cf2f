"""monai_gen.engines"""

from __future__ import annotations

from .checkpointing import (
    AtomicCheckpointSaver,
    RandomStates,
    ResumeFromLatest,
    TransformRandomStates,
    find_latest_checkpoint,
    list_checkpoints,
)
from .distributed import ResumableShardSampler, init_distributed, seeded_sampler, wrap_distributed
from .latent_cache import LatentCacheDataset, build_latent_cache, encoder_fingerprint
from .training import AutoencoderIteration, TrainingSetup, build_autoencoder_trainer, build_diffusion_trainer
from .validation import DiffusionValidation

__all__: list[str] = [
    "AtomicCheckpointSaver",
    "AutoencoderIteration",
    "DiffusionValidation",
    "LatentCacheDataset",
    "RandomStates",
    "ResumableShardSampler",
    "ResumeFromLatest",
    "TrainingSetup",
    "TransformRandomStates",
    "build_autoencoder_trainer",
    "build_diffusion_trainer",
    "build_latent_cache",
    "encoder_fingerprint",
    "find_latest_checkpoint",
    "init_distributed",
    "list_checkpoints",
    "seeded_sampler",
    "wrap_distributed",
]
