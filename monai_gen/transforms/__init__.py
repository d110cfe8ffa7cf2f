"""monai_gen.transforms"""

from __future__ import annotations

__all__: list[str] = []
