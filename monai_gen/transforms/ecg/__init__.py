"""monai_gen.transforms.ecg"""

from __future__ import annotations

__all__: list[str] = []
