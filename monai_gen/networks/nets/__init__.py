"""monai_gen.networks.nets"""

from __future__ import annotations

from .denoising_unet import DenoisingUNet

__all__: list[str] = ["DenoisingUNet"]
