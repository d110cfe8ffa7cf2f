"""monai_gen.engines"""

from __future__ import annotations

__all__: list[str] = []
