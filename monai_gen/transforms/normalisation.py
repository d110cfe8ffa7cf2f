"""The invertible normalisation between physical units and a model's space, one object both ways.

A bundle trains on ``(x - offset) / scale`` and generates ``inverse(z) = z * scale + offset``, with the same config
id in its training and inference configs, so the two can never disagree: the ECG bundle's amplitude scale (mV per
model unit) and mean beat (``offset``, ``(12, 576)`` mV), an image bundle's intensity window.
"""

from __future__ import annotations

import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.transforms.traits import InvertibleTrait
from monai.utils import TransformBackends, convert_to_dst_type

__all__ = ["LinearNormalisation"]


class LinearNormalisation(Transform, InvertibleTrait):
    """``x -> (x - offset) / scale`` and its :meth:`inverse` ``z -> z * scale + offset``.

    Args:
        scale: physical units per model unit (> 0), e.g. 0.25 mV.
        offset: subtracted first, in physical units: a number or a tensor that broadcasts to a sample (e.g. a mean
            beat ``(12, 576)``); 0 by default.

    Raises:
        ValueError: a scale that is not a positive finite number.

    Examples:
        >>> norm = LinearNormalisation(0.25, offset=torch.zeros(12, 576))
        >>> torch.allclose(norm.inverse(norm(torch.ones(2, 12, 576))), torch.ones(2, 12, 576))
        True
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, scale: float, offset: float | torch.Tensor = 0.0) -> None:
        if not (float(scale) > 0 and torch.isfinite(torch.tensor(float(scale)))):
            raise ValueError(f"LinearNormalisation: scale must be a positive number, got {scale!r}.")
        self.scale = float(scale)
        self.offset = torch.as_tensor(offset, dtype=torch.float32)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Physical units -> model space."""
        data = torch.as_tensor(img, dtype=torch.float32)
        return convert_to_dst_type((data - self.offset.to(data.device)) / self.scale, img, dtype=torch.float32)[0]

    def inverse(self, data: NdarrayOrTensor) -> NdarrayOrTensor:
        """Model space -> physical units."""
        z = torch.as_tensor(data, dtype=torch.float32)
        return convert_to_dst_type(z * self.scale + self.offset.to(z.device), data, dtype=torch.float32)[0]
