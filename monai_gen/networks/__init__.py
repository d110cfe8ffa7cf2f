"""monai_gen.networks"""

from __future__ import annotations

from .conditioning import ConditionalDenoiser, EmbeddingEncoder, PhenotypeEncoder

__all__: list[str] = ["ConditionalDenoiser", "EmbeddingEncoder", "PhenotypeEncoder"]
