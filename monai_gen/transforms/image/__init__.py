"""monai_gen.transforms.image"""

from __future__ import annotations

__all__: list[str] = []
