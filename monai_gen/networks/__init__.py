"""monai_gen.networks"""

from __future__ import annotations

from .autoencoders import kl_autoencoder, vq_autoencoder
from .conditioning import ConditionalDenoiser, EmbeddingEncoder, PhenotypeEncoder

__all__: list[str] = [
    "ConditionalDenoiser",
    "EmbeddingEncoder",
    "PhenotypeEncoder",
    "kl_autoencoder",
    "vq_autoencoder",
]
