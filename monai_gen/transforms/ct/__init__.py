"""monai_gen.transforms.ct: 3D CT patches with their craniocaudal position, organ label maps as a spatial condition.

The Hounsfield window (``HounsfieldWindow(d)``, invertible) and the CT input checks (``CheckHounsfieldUnits(d)``, with
the label-map grid check) live in :mod:`monai_gen.transforms.image`.
"""

from __future__ import annotations

from monai_gen.transforms.ct.array import (
    CRANIOCAUDAL_POSITION,
    LABEL_FILE,
    LABEL_VALUES,
    PATCH_START,
    craniocaudal_position,
    patch_start,
)
from monai_gen.transforms.ct.dictionary import CraniocaudalPatchesd
from monai_gen.transforms.ct.organs import OrganLabelMaps

__all__ = [
    "CRANIOCAUDAL_POSITION",
    "LABEL_FILE",
    "LABEL_VALUES",
    "PATCH_START",
    "CraniocaudalPatchesd",
    "OrganLabelMaps",
    "craniocaudal_position",
    "patch_start",
]
