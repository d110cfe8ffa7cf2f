"""monai_gen.bundle"""

from __future__ import annotations

__all__: list[str] = []
