"""monai_gen.diffusion"""

from __future__ import annotations

from .objectives import DiffusionObjective, sigmoid_weight
from .schedules import CosineSchedule, DiscreteSchedule, time_grid

__all__: list[str] = ["CosineSchedule", "DiffusionObjective", "DiscreteSchedule", "sigmoid_weight", "time_grid"]
