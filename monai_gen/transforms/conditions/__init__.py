"""monai_gen.transforms.conditions"""

from __future__ import annotations

__all__: list[str] = []
