"""monai_gen.metrics"""

from __future__ import annotations

__all__: list[str] = []
