"""The one figure a plain generation job draws: ``contact_sheet.png``, its first samples in a grid.

Bundles' preview callbacks (:func:`monai_gen.bundle.ecg_generation.ecg_preview`,
:func:`monai_gen.bundle.image_generation.image_preview`) draw it from the written files once the job's first
``size`` samples exist, so a resumed or sharded job draws it too (whichever rank writes the last of them); after
that, batches of later samples cost no figure. A PNG per sample is drawn only when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from monai_gen.engines.requests import SampleRequest

__all__ = ["CONTACT_SHEET_NAME", "CONTACT_SHEET_SIZE", "contact_sheet_due", "contact_sheet_title"]

CONTACT_SHEET_NAME = "contact_sheet.png"
CONTACT_SHEET_SIZE = 16


def contact_sheet_due(batch: Sequence[SampleRequest], first: Sequence[SampleRequest], output_dir: Path) -> bool:
    """Whether the sheet of ``first`` needs drawing after ``batch``: it holds one of them, or there is no sheet yet."""
    names = {r.name for r in first}
    drawn = (Path(output_dir) / CONTACT_SHEET_NAME).is_file()
    return bool(names) and (any(r.name in names for r in batch) or not drawn)


def contact_sheet_title(request: SampleRequest) -> str:
    """A cell's title: the sample's name, seed and requested conditions (``unconditioned`` when none)."""
    conditions = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in request.conditions.items())
    return f"{request.name} · seed {request.seed}\n{conditions or 'unconditioned'}"
