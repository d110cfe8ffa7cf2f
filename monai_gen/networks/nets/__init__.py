"""monai_gen.networks.nets"""

from __future__ import annotations

__all__: list[str] = []
