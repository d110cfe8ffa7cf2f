"""monai_gen.networks"""

from __future__ import annotations

from .autoencoders import kl_autoencoder, vq_autoencoder
from .conditioning import ConditionalDenoiser, EmbeddingEncoder, PhenotypeEncoder
from .precond import EpsilonDenoiser, SampleDenoiser, VDenoiser, make_denoiser

__all__: list[str] = [
    "ConditionalDenoiser",
    "EmbeddingEncoder",
    "EpsilonDenoiser",
    "PhenotypeEncoder",
    "SampleDenoiser",
    "VDenoiser",
    "kl_autoencoder",
    "make_denoiser",
    "vq_autoencoder",
]
